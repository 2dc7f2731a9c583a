"""The admin API as a real process (``codexgate admin serve`` through the console script, on a free
loopback port): the role matrix (every endpoint x every role, allowed or 403 naming the role and
the boundary), exactly one audit entry per admin action (and per refusal), a chain that verifies,
the CLI through ``--admin-url``, and no secret in any response, audit entry or log line."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from analytics.synth import write_dataset
from codexgate.admin.audit import AuditLog, read_entries, verify
from codexgate.admin.store import EditContext, VaultStore
from codexgate.core.vault import ProviderCredential, Vault, generate_secret

REPO = Path(__file__).resolve().parents[1]
CODEXGATE = str(REPO / ".venv" / "bin" / "codexgate")
PROVIDER_SECRET = "sk-admin-api-provider-9c1e77d0aa"
ROTATED_PROVIDER_SECRET = "sk-admin-api-rotated-51be03f2cc"
ROLES = ("org_admin", "team_admin", "developer", "auditor")
ALICE = "chen@acme.example"  # acme/platform in the synthetic world (has calls with seed 5)
FATIMA = "fatima@acme.example"  # acme/payments


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
    env.update(extra or {})
    return env


@dataclass
class AdminServer:
    """A running ``codexgate admin serve`` over a vault with one credential per role."""

    proc: subprocess.Popen
    url: str
    store: VaultStore
    vault_path: Path
    key_file: Path
    audit_dir: Path
    anchor: Path
    log_path: Path
    creds: dict[str, str] = field(default_factory=dict)  # role -> plaintext cga_ credential
    secrets: list[str] = field(default_factory=list)  # every plaintext that must never leak

    def call(self, role: str, method: str, path: str, body: Any = None) -> httpx.Response:
        headers = {"authorization": f"Bearer {self.creds[role]}"}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=30, trust_env=False)

    def audit_count(self) -> int:
        return len(read_entries(self.audit_dir))

    def edit(self) -> Any:
        return self.store.edit(EditContext(actor="test-setup", role="break_glass", action="test.setup"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_vault(tmp: Path) -> tuple[Path, Path, bytes]:
    (tmp / "vault").mkdir(parents=True, exist_ok=True)
    (tmp / "secrets").mkdir(parents=True, exist_ok=True, mode=0o700)
    secret = generate_secret()
    key_file = tmp / "secrets" / "vault.key"
    key_file.write_bytes(secret)
    path = tmp / "vault" / "vault.enc"
    Vault().save(path, secret)
    return path, key_file, secret


def start_admin(
    tmp: Path, *, provider_url: str = "http://127.0.0.1:9/v1", provider_key: str = PROVIDER_SECRET
) -> AdminServer:
    """A vault (acme/platform, acme/payments, one provider + route, a credential per role) and the
    admin API serving it with an audit anchor and the synthetic traces for usage."""
    path, key_file, secret = build_vault(tmp)
    store = VaultStore(path, secret, AuditLog(tmp / "audit", tmp / "anchor" / "audit-head.jsonl"))
    creds: dict[str, str] = {}
    with store.edit(EditContext(actor="test-setup", role="break_glass", action="test.setup")) as v:
        v.add_team("acme", "platform", admins=[ALICE])
        v.add_team("acme", "payments")
        v.add_provider(
            ProviderCredential("openai", "openai", provider_url, provider_key, hosts=[], default=True)
        )
        v.add_route("gpt-*", "openai")
        creds["org_admin"] = v.create_admin(name="root@acme.example", role="org_admin", org="acme")[1]
        creds["team_admin"] = v.create_admin(
            name="lead@acme.example", role="team_admin", org="acme", teams=["acme/platform"]
        )[1]
        creds["developer"] = v.create_admin(name=ALICE, role="developer", org="acme", developer=ALICE)[1]
        creds["auditor"] = v.create_admin(name="audit@acme.example", role="auditor", org="acme")[1]
    traces = tmp / "traces"
    write_dataset(traces, 300, seed=5)
    server = serve(tmp, path, key_file, secret, traces=traces)
    server.creds, server.secrets = creds, [provider_key, *creds.values()]
    return server


def serve(tmp: Path, path: Path, key_file: Path, secret: bytes, traces: Path | None = None) -> AdminServer:
    """``codexgate admin serve`` (the console script) on a free loopback port over ``path``, with its
    audit log in ``tmp/audit`` and the head anchor in ``tmp/anchor``."""
    audit_dir, anchor = tmp / "audit", tmp / "anchor" / "audit-head.jsonl"
    store = VaultStore(path, secret, AuditLog(audit_dir, anchor))
    port = free_port()
    log_path = tmp / "admin-serve.log"
    env = clean_env(
        {
            "CODEXGATE_VAULT": str(path),
            "CODEXGATE_VAULT_KEY_FILE": str(key_file),
            "CODEXGATE_AUDIT_DIR": str(audit_dir),
            "CODEXGATE_AUDIT_ANCHOR": str(anchor),
        }
    )
    extra = ["--traces", str(traces)] if traces else []
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [CODEXGATE, "admin", "serve", "--port", str(port), *extra],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/healthz", timeout=1, trust_env=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("admin serve did not start:\n" + log_path.read_text()[-3000:])
        time.sleep(0.1)
    return AdminServer(proc, url, store, path, key_file, audit_dir, anchor, log_path)


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminServer]:
    server = start_admin(tmp_path_factory.mktemp("admin-api"))
    try:
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------- the role matrix

_counter = iter(range(10_000))


def uniq(prefix: str) -> str:
    return f"{prefix}{next(_counter)}"


def fresh_key(admin: AdminServer, team: str, developer: str) -> str:
    org, name = team.split("/")
    with admin.edit() as v:
        entry, plain = v.create_key(org=org, team=name, project="matrix", developer=developer)
    admin.secrets.append(plain)
    return entry.key_id


def fresh_provider(admin: AdminServer) -> str:
    name = uniq("prov")
    with admin.edit() as v:
        v.add_provider(ProviderCredential(name, "openai", "http://127.0.0.1:9/v1", PROVIDER_SECRET, hosts=[]))
    return name


def fresh_route(admin: AdminServer) -> str:
    with admin.edit() as v:
        v.add_route("matrix-*", "openai")
        return str(len(v.routes) - 1)


def fresh_cred(admin: AdminServer) -> str:
    with admin.edit() as v:
        cred, plain = v.create_admin(name=uniq("tmp") + "@acme.example", role="auditor", org="acme")
    admin.secrets.append(plain)
    return cred.cred_id


def key_of(admin: AdminServer, developer: str) -> str:
    return next(k.key_id for k in admin.store.read().keys.values() if k.developer == developer)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: Callable[[AdminServer], str]
    allowed: frozenset[str]
    body: Callable[[AdminServer], Any] = lambda a: None
    mutates: bool = False


def E(name: str, method: str, path: Any, allowed: str, body: Any = None, mutates: bool = False) -> Endpoint:
    p = path if callable(path) else (lambda a, _p=path: _p)
    b = body if callable(body) else (lambda a, _b=body: _b)
    return Endpoint(name, method, p, frozenset(allowed.split()), b, mutates)


ALL = "org_admin team_admin developer auditor"
ENDPOINTS = [
    E("whoami", "GET", "/v1/whoami", ALL),
    E("list keys", "GET", "/v1/keys", ALL),
    E(
        "list keys of own team",
        "GET",
        "/v1/keys?team=acme/platform",
        "org_admin team_admin developer auditor",
    ),
    E("list keys of another team", "GET", "/v1/keys?team=acme/payments", "org_admin developer auditor"),
    E("show own key", "GET", lambda a: f"/v1/keys/{key_of(a, ALICE)}", ALL),
    E("show another team's key", "GET", lambda a: f"/v1/keys/{key_of(a, FATIMA)}", "org_admin auditor"),
    E(
        "create key in own team",
        "POST",
        "/v1/keys",
        "org_admin team_admin",
        {"team": "acme/platform", "project": "p", "developer": ALICE},
        True,
    ),
    E(
        "create key in another team",
        "POST",
        "/v1/keys",
        "org_admin",
        {"team": "acme/payments", "project": "p", "developer": FATIMA},
        True,
    ),
    *[
        E(
            f"{op} own key",
            "POST",
            lambda a, op=op: f"/v1/keys/{fresh_key(a, 'acme/platform', ALICE)}/{op}",
            "org_admin team_admin developer" if op in ("rotate", "revoke") else "org_admin team_admin",
            {},
            True,
        )
        for op in ("rotate", "revoke", "enable", "disable")
    ],
    *[
        E(
            f"{op} another team's key",
            "POST",
            lambda a, op=op: f"/v1/keys/{fresh_key(a, 'acme/payments', FATIMA)}/{op}",
            "org_admin",
            {},
            True,
        )
        for op in ("rotate", "revoke", "disable")
    ],
    E(
        "rotate another developer's key in own team",
        "POST",
        lambda a: f"/v1/keys/{fresh_key(a, 'acme/platform', 'bob@acme.example')}/rotate",
        "org_admin team_admin",
        {},
        True,
    ),
    E("list teams", "GET", "/v1/teams", "org_admin team_admin auditor"),
    E("add team", "POST", "/v1/teams", "org_admin", lambda a: {"team": f"acme/{uniq('t')}"}, True),
    E("list providers", "GET", "/v1/providers", "org_admin auditor"),
    E(
        "add provider",
        "POST",
        "/v1/providers",
        "org_admin",
        lambda a: {
            "name": uniq("p"),
            "kind": "openai",
            "base_url": "http://127.0.0.1:9/v1",
            "api_key": PROVIDER_SECRET,
            "hosts": [],
        },
        True,
    ),
    E(
        "rotate provider",
        "POST",
        "/v1/providers/openai/rotate",
        "org_admin",
        {"api_key": PROVIDER_SECRET},
        True,
    ),
    E("remove provider", "DELETE", lambda a: f"/v1/providers/{fresh_provider(a)}", "org_admin", None, True),
    E("list routes", "GET", "/v1/routes", "org_admin team_admin auditor"),
    E("add route", "POST", "/v1/routes", "org_admin", {"model": "o9-*", "provider": "openai"}, True),
    E("remove route", "DELETE", lambda a: f"/v1/routes/{fresh_route(a)}", "org_admin", None, True),
    *[
        e
        for section, container, doc in (
            ("limits", "levels", {"rpm": 60}),
            ("guardrail_policies", "scopes", {"banned_terms": ["project-zebra"]}),
        )
        for e in (
            E(f"read {section}", "GET", f"/v1/{section}", "org_admin team_admin auditor"),
            E(
                f"replace all {section}",
                "PUT",
                f"/v1/{section}",
                "org_admin",
                {"version": 1, container: {"team:acme/platform": doc, "team:acme/payments": doc}},
                True,
            ),
            E(
                f"set own team's {section}",
                "PUT",
                f"/v1/{section}/acme/platform",
                "org_admin team_admin",
                doc,
                True,
            ),
            E(f"set another team's {section}", "PUT", f"/v1/{section}/acme/payments", "org_admin", doc, True),
            E(
                f"set {section} of a key in own team",
                "PUT",
                lambda a, s=section: f"/v1/{s}/scopes/key:{key_of(a, ALICE)}",
                "org_admin team_admin",
                doc,
                True,
            ),
            E(
                f"set {section} of another team's key",
                "PUT",
                lambda a, s=section: f"/v1/{s}/scopes/key:{key_of(a, FATIMA)}",
                "org_admin",
                doc,
                True,
            ),
            E(f"set org-wide {section}", "PUT", f"/v1/{section}/scopes/org:acme", "org_admin", doc, True),
        )
    ],
    E("list roles", "GET", "/v1/roles", "org_admin auditor"),
    E(
        "create role",
        "POST",
        "/v1/roles",
        "org_admin",
        lambda a: {"name": uniq("new") + "@acme.example", "role": "auditor"},
        True,
    ),
    E("revoke role", "POST", lambda a: f"/v1/roles/{fresh_cred(a)}/revoke", "org_admin", {}, True),
    E("read audit log", "GET", "/v1/audit", "org_admin auditor"),
    E("own usage", "GET", f"/v1/usage?developer={ALICE}&team=acme/platform", ALL),
    E("another developer's usage", "GET", f"/v1/usage?developer={FATIMA}", "org_admin auditor"),
    E("another team's usage", "GET", "/v1/usage?team=acme/payments", "org_admin auditor"),
]


def test_role_matrix_every_endpoint_every_role(admin: AdminServer) -> None:
    """Each call: allowed -> 2xx, and exactly one audit entry when it changes something (none for a
    read); refused -> 403 naming the role and the boundary, and exactly one ``denied`` entry."""
    fresh_key(admin, "acme/payments", FATIMA)  # so "another team's key" exists
    fresh_key(admin, "acme/platform", ALICE)
    failures = []
    for ep in ENDPOINTS:
        for role in ROLES:
            path, body = ep.path(admin), ep.body(admin)
            before = admin.audit_count()
            r = admin.call(role, ep.method, path, body)
            added = read_entries(admin.audit_dir)[before:]
            allowed = role in ep.allowed
            if allowed and not r.is_success:
                failures.append(f"{ep.name} as {role}: expected success, got {r.status_code} {r.text[:200]}")
                continue
            if not allowed:
                if r.status_code != 403:
                    failures.append(f"{ep.name} as {role}: expected 403, got {r.status_code}")
                    continue
                err = r.json()["error"]
                if err["role"] != role or role not in err["message"] or not err["boundary"]:
                    failures.append(f"{ep.name} as {role}: 403 does not name role and boundary: {err}")
                if len(added) != 1 or added[0]["outcome"] != "denied" or added[0]["role"] != role:
                    failures.append(f"{ep.name} as {role}: refusal wrote {len(added)} audit entries")
                continue
            expected = 1 if ep.mutates else 0
            if len(added) != expected:
                failures.append(f"{ep.name} as {role}: {len(added)} audit entries, expected {expected}")
            elif added and (added[0]["role"] != role or added[0]["request_id"] != r.headers["x-request-id"]):
                failures.append(f"{ep.name} as {role}: audit entry {added[0]} does not match the call")
    assert not failures, "\n".join(failures)
    result = verify(admin.audit_dir, admin.anchor)
    assert result.ok, result.problem


def test_scoping_of_listings(admin: AdminServer) -> None:
    fresh_key(admin, "acme/payments", FATIMA)
    fresh_key(admin, "acme/platform", ALICE)
    teams = {role: {k["team"] for k in admin.call(role, "GET", "/v1/keys").json()} for role in ROLES}
    developers = {k["developer"] for k in admin.call("developer", "GET", "/v1/keys").json()}
    assert teams["org_admin"] >= {"acme/platform", "acme/payments"}
    assert teams["auditor"] == teams["org_admin"]
    assert teams["team_admin"] == {"acme/platform"}
    assert developers == {ALICE}
    admin.call("org_admin", "PUT", "/v1/limits/acme/payments", {"rpm": 7})
    admin.call("org_admin", "PUT", "/v1/limits/acme/platform", {"rpm": 8})
    limits = admin.call("team_admin", "GET", "/v1/limits").json()["levels"]
    assert limits["team:acme/platform"] == {"rpm": 8} and "team:acme/payments" not in limits
    assert "team:acme/payments" in admin.call("auditor", "GET", "/v1/limits").json()["levels"]


def test_invalid_section_documents_are_refused_by_the_engines_parsers(admin: AdminServer) -> None:
    before = admin.audit_count()
    vault_before = admin.store.read().sections
    for path, body in (
        ("/v1/limits/acme/platform", {"rpm": -5}),
        ("/v1/limits", {"version": 99}),
        ("/v1/guardrail_policies/acme/platform", {"detectors": {"EMAIL_ADDRESS": {"action": "explode"}}}),
    ):
        r = admin.call("org_admin", "PUT", path, body)
        assert r.status_code == 400 and r.json()["error"]["message"].startswith("invalid "), (path, r.text)
    assert admin.audit_count() == before and admin.store.read().sections == vault_before


def test_developer_usage_is_their_own(admin: AdminServer) -> None:
    own = admin.call("developer", "GET", "/v1/usage").json()
    assert own["developer"] == ALICE and own["rows"]
    assert {row["developer"] for row in own["rows"]} == {ALICE}
    org = admin.call("org_admin", "GET", "/v1/usage").json()["rows"]
    assert len({row["developer"] for row in org}) > 1
    r = admin.call("developer", "GET", f"/v1/usage?developer={FATIMA}")
    assert r.status_code == 403 and "own usage" in r.json()["error"]["message"]


def test_unknown_and_gateway_credentials_are_401(admin: AdminServer) -> None:
    gateway_key = "cgk_" + key_of(admin, ALICE) + "_" + "x" * 43
    for headers in (
        {},
        {"authorization": "Bearer nonsense"},
        {"authorization": f"Bearer {gateway_key}"},
        {"authorization": "Bearer cga_000000000000_" + "y" * 43},
    ):
        r = httpx.get(admin.url + "/v1/whoami", headers=headers, trust_env=False)
        assert r.status_code == 401 and r.json()["error"]["type"] == "unauthorized"
        assert "x" * 43 not in r.text and "y" * 43 not in r.text


def test_new_key_is_shown_once_and_never_stored(admin: AdminServer) -> None:
    r = admin.call(
        "team_admin", "POST", "/v1/keys", {"team": "acme/platform", "project": "x", "developer": ALICE}
    )
    assert r.status_code == 201
    plain, key_id = r.json()["key"], r.json()["key_id"]
    admin.secrets.append(plain)
    assert admin.store.read().authenticate(plain, __import__("datetime").datetime.now()).key_id == key_id
    shown = admin.call("team_admin", "GET", f"/v1/keys/{key_id}").text
    assert plain not in shown
    rotated = admin.call("developer", "POST", f"/v1/keys/{key_id}/rotate", {"grace_seconds": 0})
    assert rotated.status_code == 200 and rotated.json()["key"] != plain
    admin.secrets.append(rotated.json()["key"])


def test_cli_through_admin_url_one_entry_each_and_403(admin: AdminServer, tmp_path: Path) -> None:
    env = clean_env(
        {
            "CODEXGATE_ADMIN_URL": admin.url,
            "CODEXGATE_ADMIN_CREDENTIAL": admin.creds["team_admin"],
            "NEW_PROVIDER_KEY": PROVIDER_SECRET,
        }
    )

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CODEXGATE, *args], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )

    before = admin.audit_count()
    created = cli(
        "key", "create", "--team", "acme/platform", "--project", "cli", "--developer", ALICE, "--json"
    )
    assert created.returncode == 0, created.stderr
    key_id = json.loads(created.stdout)["key_id"]
    admin.secrets.append(json.loads(created.stdout)["key"])
    steps = [
        ("key", "rotate", key_id, "--grace", "0", "--json"),
        ("key", "disable", key_id),
        ("key", "enable", key_id),
        ("key", "revoke", key_id),
    ]
    for step in steps:
        done = cli(*step)
        assert done.returncode == 0, (step, done.stderr)
        if "rotate" in step:
            admin.secrets.append(json.loads(done.stdout)["key"])
    listed = cli("key", "list", "--json")
    assert listed.returncode == 0 and key_id in listed.stdout
    refused = cli(
        "provider",
        "add",
        "x",
        "--kind",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-key-env",
        "NEW_PROVIDER_KEY",
    )
    assert refused.returncode == 3 and "team_admin" in refused.stderr and "403" in refused.stderr
    assert PROVIDER_SECRET not in refused.stdout + refused.stderr
    entries = read_entries(admin.audit_dir)[before:]
    assert [e["action"] for e in entries] == [
        "key.create",
        "key.rotate",
        "key.disable",
        "key.enable",
        "key.revoke",
        "provider.add",
    ]
    assert [e["outcome"] for e in entries] == ["ok"] * 5 + ["denied"]
    assert all(e["actor"] == "lead@acme.example" and e["source"] == "api" for e in entries)


def test_no_secret_in_any_response_audit_entry_or_log(admin: AdminServer) -> None:
    texts = {
        f"GET {p} as {role}": admin.call(role, "GET", p).text
        for role in ROLES
        for p in ("/v1/keys", "/v1/providers", "/v1/roles", "/v1/audit", "/v1/limits", "/v1/teams")
    }
    rotated = admin.call(
        "org_admin", "POST", "/v1/providers/openai/rotate", {"api_key": ROTATED_PROVIDER_SECRET}
    )
    texts["rotate provider"] = rotated.text
    admin.secrets.append(ROTATED_PROVIDER_SECRET)
    texts["audit files"] = "".join(p.read_text() for p in sorted(admin.audit_dir.glob("audit-*.jsonl")))
    texts["anchor"] = admin.anchor.read_text()
    texts["server log"] = admin.log_path.read_text()
    vault = admin.store.read()
    stored_hashes = [h.hash for k in vault.keys.values() for h in k.hashes] + [
        h for a in vault.admins.values() for h in a.hashes
    ]
    assert len(admin.secrets) > 10 and stored_hashes
    for where, text in texts.items():
        for secret in admin.secrets:
            assert secret not in text, f"a secret leaked into {where}"
        for digest in stored_hashes:
            assert digest not in text, f"a stored hash leaked into {where}"
        assert not re.search(r"cg[ka]_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}", text), where


def test_cli_admin_url_errors_are_one_line(admin: AdminServer, tmp_path: Path) -> None:
    base = {"CODEXGATE_ADMIN_URL": admin.url}
    cases = [
        (base, "CODEXGATE_ADMIN_CREDENTIAL"),  # no credential at all
        ({**base, "CODEXGATE_ADMIN_CREDENTIAL": "cga_000000000000_" + "z" * 43}, "401"),
        (
            {
                "CODEXGATE_ADMIN_URL": "http://127.0.0.1:9",
                "CODEXGATE_ADMIN_CREDENTIAL": admin.creds["auditor"],
            },
            "unreachable",
        ),
    ]
    for env, expected in cases:
        done = subprocess.run(
            [CODEXGATE, "key", "list"],
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
        assert done.returncode != 0 and expected in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        assert "z" * 43 not in done.stderr and admin.creds["auditor"] not in done.stderr
