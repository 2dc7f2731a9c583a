"""Dashboard sign-in and the Admin/Audit pages: a trusted proxy header is believed only from a
configured address; identities map onto the vault's roles; every role sees the Admin and Audit
pages within its boundary (AppTest, signing in with each role's admin credential), a team admin
creates, rotates and revokes a key there (shown once, audited), and an out-of-bounds action is a
403 that is audited too."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from codexgate.admin.audit import AuditLog, read_entries, verify
from codexgate.admin.store import EditContext, VaultStore
from codexgate.core.vault import Vault, generate_secret
from dashboard.auth import LoginError, trusted_proxy_identity, viewer_for_identity

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "pages"
ENV_KEYS = (
    "CODEXGATE_TRACES",
    "CODEXGATE_DASHBOARD_AUTH",
    "CODEXGATE_ADMIN_TOKEN",
    "CODEXGATE_VAULT",
    "CODEXGATE_VAULT_KEY",
    "CODEXGATE_VAULT_KEY_FILE",
    "CODEXGATE_AUDIT_DIR",
    "CODEXGATE_AUDIT_ANCHOR",
    "CODEXGATE_DASHBOARD_TRUSTED_PROXIES",
    "CODEXGATE_DASHBOARD_PROXY_HEADER",
    "CODEXGATE_DASHBOARD_OIDC",
)


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    for k in ENV_KEYS:
        os.environ.pop(k, None)
    try:
        yield os.environ  # type: ignore[misc]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def make_vault(tmp: Path) -> tuple[dict[str, str], dict[str, str], VaultStore]:
    """acme/platform + acme/mobile, keys for both, one admin credential per role.
    Returns (environment, role -> credential, store)."""
    secret = generate_secret()
    path = tmp / "vault" / "vault.enc"
    path.parent.mkdir(parents=True)
    Vault().save(path, secret)
    store = VaultStore(path, secret, AuditLog(tmp / "vault" / "audit"))
    creds: dict[str, str] = {}
    with store.edit(EditContext(actor="setup", role="break_glass", action="test.setup")) as v:
        v.add_team("acme", "platform", admins=["lead@acme.example"])
        v.add_team("acme", "mobile")
        v.create_key(org="acme", team="platform", project="p", developer="dev@acme.example")
        v.create_key(org="acme", team="mobile", project="p", developer="other@acme.example")
        creds["org_admin"] = v.create_admin(name="root@acme.example", role="org_admin", org="acme")[1]
        creds["team_admin"] = v.create_admin(
            name="lead@acme.example", role="team_admin", org="acme", teams=["acme/platform"]
        )[1]
        creds["developer"] = v.create_admin(
            name="dev@acme.example", role="developer", org="acme", developer="dev@acme.example"
        )[1]
        creds["auditor"] = v.create_admin(name="audit@acme.example", role="auditor", org="acme")[1]
    return {"CODEXGATE_VAULT": str(path), "CODEXGATE_VAULT_KEY": secret.decode()}, creds, store


# ---------------------------------------------------------------------------- the proxy header


def test_proxy_header_only_from_trusted_addresses() -> None:
    headers = {"X-Forwarded-Email": "lead@acme.example"}
    trusted = {"CODEXGATE_DASHBOARD_TRUSTED_PROXIES": "127.0.0.2, 10.1.0.0/16"}
    assert trusted_proxy_identity(headers, "127.0.0.2", trusted) == "lead@acme.example"
    assert trusted_proxy_identity(headers, "10.1.44.5", trusted) == "lead@acme.example"
    # a spoofed header from anywhere else is ignored (None is how Streamlit reports loopback)
    for peer in (None, "127.0.0.1", "10.2.0.1", "::1", "garbage"):
        assert trusted_proxy_identity(headers, peer, trusted) is None
    assert trusted_proxy_identity(headers, "127.0.0.2", {}) is None  # no trusted proxy configured
    assert (
        trusted_proxy_identity(
            {"x-forwarded-email": "a@b"}, None, {"CODEXGATE_DASHBOARD_TRUSTED_PROXIES": "127.0.0.1"}
        )
        == "a@b"
    )
    custom = {**trusted, "CODEXGATE_DASHBOARD_PROXY_HEADER": "X-Auth-Request-Email"}
    assert trusted_proxy_identity(headers, "127.0.0.2", custom) is None
    assert trusted_proxy_identity({"X-Auth-Request-Email": "x@y"}, "127.0.0.2", custom) == "x@y"


def test_identities_map_onto_vault_roles(env: dict[str, str], tmp_path: Path) -> None:
    vault_env, _, store = make_vault(tmp_path)
    with store.edit(EditContext(actor="setup", role="break_glass", action="test.setup")) as v:
        v.add_team("acme", "ops", admins=["ops-lead@acme.example"])
    seen = {
        identity: viewer_for_identity(identity, "proxy", vault_env)
        for identity in (
            "root@acme.example",
            "audit@acme.example",
            "lead@acme.example",
            "dev@acme.example",
            "ops-lead@acme.example",  # team admin by the team's admins list, no credential
            "other@acme.example",  # developer by their gateway key, no credential
        )
    }
    roles = {i: (v.role, v.scope.org, v.scope.team, v.scope.developer) for i, v in seen.items()}
    assert roles == {
        "root@acme.example": ("org_admin", "acme", None, None),
        "audit@acme.example": ("auditor", "acme", None, None),
        "lead@acme.example": ("team_admin", "acme", "platform", None),
        "dev@acme.example": ("developer", "acme", None, "dev@acme.example"),
        "ops-lead@acme.example": ("team_admin", "acme", "ops", None),
        "other@acme.example": ("developer", "acme", None, "other@acme.example"),
    }
    assert all(v.principal is not None and v.source == "proxy" for v in seen.values())
    with pytest.raises(LoginError, match="not known"):
        viewer_for_identity("stranger@evil.example", "proxy", vault_env)


# ---------------------------------------------------------------------------- pages per role


def signed_in(page: str, credential: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{page}.py"), default_timeout=30).run()
    at.text_input[0].input(credential)
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    parts = [e.value for e in (*at.error, *at.success, *at.info, *at.markdown, *at.caption, *at.code)]
    return "\n".join(str(p) for p in parts)


def test_admin_page_scoping_per_role(env: dict[str, str], tmp_path: Path) -> None:
    vault_env, creds, store = make_vault(tmp_path)
    os.environ.update(vault_env)
    for role in ("developer", "auditor"):
        at = signed_in("admin", creds[role])
        assert at.error and "403" in at.error[0].value and role in at.error[0].value
        assert not at.dataframe
    lead = signed_in("admin", creds["team_admin"])
    assert lead.selectbox[0].options == ["acme/platform"]  # only its own team
    keys = lead.dataframe[0].value
    assert set(keys["developer"].to_list()) == {"dev@acme.example"}
    root = signed_in("admin", creds["org_admin"])
    assert root.selectbox[0].options == ["acme/mobile", "acme/platform"]


def test_team_admin_creates_rotates_revokes_on_the_admin_page(env: dict[str, str], tmp_path: Path) -> None:
    vault_env, creds, store = make_vault(tmp_path)
    os.environ.update(vault_env)
    before = len(read_entries(store.audit.directory))
    at = signed_in("admin", creds["team_admin"])
    at.text_input(key="admin_developer").input("newdev@acme.example")
    at.text_input(key="admin_project").input("web")
    at.button(key="admin_create").click().run()
    assert not at.exception and at.code, texts(at)
    plain = at.code[0].value
    vault = store.read()
    (entry,) = [k for k in vault.keys.values() if k.developer == "newdev@acme.example"]
    assert vault.authenticate(plain, __import__("datetime").datetime.now()).key_id == entry.key_id
    at.run()  # the next run: the key is not shown again
    assert not at.code and plain not in texts(at)

    at.selectbox(key="admin_key").select(entry.key_id).run()
    at.button(key="admin_rotate").click().run()
    rotated = at.code[0].value
    assert rotated.startswith(f"cgk_{entry.key_id}_") and rotated != plain
    at.selectbox(key="admin_key").select(entry.key_id).run()
    at.button(key="admin_revoke").click().run()
    assert store.read().key(entry.key_id).status(__import__("datetime").datetime.now()) == "revoked"

    added = read_entries(store.audit.directory)[before:]
    assert [(e["action"], e["actor"], e["role"], e["source"]) for e in added] == [
        ("key.create", "lead@acme.example", "team_admin", "dashboard"),
        ("key.rotate", "lead@acme.example", "team_admin", "dashboard"),
        ("key.revoke", "lead@acme.example", "team_admin", "dashboard"),
    ]
    log_text = "".join(p.read_text() for p in store.audit.directory.glob("audit-*.jsonl"))
    assert plain not in log_text and rotated not in log_text
    assert verify(store.audit.directory).ok


def test_audit_page_for_auditors_and_org_admins_only(env: dict[str, str], tmp_path: Path) -> None:
    vault_env, creds, store = make_vault(tmp_path)
    os.environ.update(vault_env)
    for role in ("auditor", "org_admin"):
        at = signed_in("audit", creds[role])
        assert at.success and "Chain intact" in at.success[0].value
        frame = at.dataframe[0].value
        assert "admin.credential.create" not in frame["action"].to_list()  # actions of this vault
        assert "test.setup" in frame["action"].to_list()
    for role in ("team_admin", "developer"):
        at = signed_in("audit", creds[role])
        assert at.error and "403" in at.error[0].value and not at.dataframe
