"""The vault module directly: encryption and file format, atomic saves (failed and killed
writers), authentication semantics with explicit clocks, input validation, a vault of 1,000 keys."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from codexgate.core.keys import hash_key, parse_key
from codexgate.core.vault import (
    AuthError,
    ProviderCredential,
    Vault,
    VaultError,
    generate_secret,
    load_secret,
    validate_glob,
)

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
OPENAI_SECRET = "sk-test-openai-" + "q" * 24
ANTHROPIC_SECRET = "sk-ant-test-" + "z" * 24


def absent(secret: str, text: str | bytes) -> bool:
    """True when ``secret`` does not occur in ``text`` (asserted as a bool so a failure never
    prints the secret)."""
    needle: str | bytes = secret.encode() if isinstance(text, bytes) else secret
    return needle not in text


def one_line(message: str) -> bool:
    return bool(message) and "\n" not in message


def make_vault() -> Vault:
    v = Vault()
    v.add_provider(
        ProviderCredential("openai", "openai", "https://api.openai.com/v1", OPENAI_SECRET, default=True)
    )
    v.add_provider(
        ProviderCredential("anthropic", "anthropic", "https://api.anthropic.com", ANTHROPIC_SECRET)
    )
    v.add_team(
        "acme", "platform", privacy_mode="redacted", budget_usd=500.0, budget_period="month", admins=["ann"]
    )
    v.add_team("acme", "mobile")
    v.add_route("claude-*", "anthropic", "anthropic_messages")
    return v


@pytest.fixture()
def vault_file(tmp_path: Path) -> tuple[Path, bytes]:
    (tmp_path / "vault").mkdir()
    return tmp_path / "vault" / "vault.enc", generate_secret()


# ---------------------------------------------------------------------------- file format


def test_round_trip_keeps_everything(vault_file: tuple[Path, bytes]) -> None:
    path, secret = vault_file
    v = make_vault()
    entry, plain = v.create_key(
        org="acme",
        team="platform",
        project="gw",
        developer="alice@example.com",
        providers=["open*"],
        models=["gpt-5*", "o[34]-mini"],
        expires_at=NOW + timedelta(days=30),
        tags={"cost_center": "cc-10"},
        budget_usd=20.0,
        budget_period="week",
        description="laptop",
        org_admin=True,
        now=NOW,
    )
    v.rotation_grace_seconds = 120
    v.save(path, secret)
    loaded = Vault.load(path, secret)
    assert loaded.to_dict() == v.to_dict()
    k = loaded.keys[entry.key_id]
    assert (k.org, k.team, k.project, k.developer) == ("acme", "platform", "gw", "alice@example.com")
    assert k.models == ["gpt-5*", "o[34]-mini"] and k.providers == ["open*"]
    assert k.expires_at == NOW + timedelta(days=30) and k.expires_at.tzinfo is not None
    assert k.privacy_mode == "redacted"  # inherited from the team
    assert (k.budget_usd, k.budget_period, k.created_at) == (20.0, "week", NOW)
    assert loaded.org_admin_key_ids == [entry.key_id] and loaded.rotation_grace_seconds == 120
    assert loaded.providers["openai"].api_key == OPENAI_SECRET
    assert loaded.providers["openai"].hosts == ["api.openai.com"]  # default: the base URL's host
    assert loaded.teams["acme/platform"].admins == ["ann"]
    assert [(r.model, r.provider, r.api) for r in loaded.routes] == [
        ("claude-*", "anthropic", "anthropic_messages")
    ]
    assert loaded.authenticate(plain, NOW).key_id == entry.key_id
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_file_holds_hashes_never_plaintext_keys(vault_file: tuple[Path, bytes]) -> None:
    path, secret = vault_file
    v = make_vault()
    _, plain = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    rotated = v.rotate_key(parse_key(plain)[0], NOW)
    v.save(path, secret)
    raw = path.read_bytes()
    for s in (plain, rotated, OPENAI_SECRET, "acme", "platform"):
        assert absent(s, raw)  # encrypted: not even the names are readable
    doc_text = Fernet(secret).decrypt(raw).decode()
    doc = json.loads(doc_text)
    assert doc["format_version"] == 1
    assert absent(plain, doc_text) and absent(rotated, doc_text)
    secret_part = plain.split("_", 2)[2]
    assert absent(secret_part, doc_text)
    stored = [h["hash"] for k in doc["keys"].values() for h in k["hashes"]]
    assert sorted(stored) == sorted([hash_key(plain), hash_key(rotated)])
    assert all(h.startswith("sha256:") and len(h) == 7 + 64 for h in stored)


def test_repr_and_str_never_show_secrets() -> None:
    v = make_vault()
    entry, plain = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    for text in (repr(v), str(v), repr(v.providers["openai"]), str(v.providers["anthropic"]), repr(entry)):
        assert absent(OPENAI_SECRET, text) and absent(ANTHROPIC_SECRET, text)
        assert absent(plain, text) and absent(hash_key(plain), text)
    assert v.providers["openai"].fingerprint().startswith("sha256:")
    assert absent(OPENAI_SECRET, v.providers["openai"].fingerprint())


def _encrypt(secret: bytes, payload: bytes) -> bytes:
    return Fernet(secret).encrypt(payload)


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("wrong_key", "cannot be decrypted with the given key"),
        ("truncated", "cannot be decrypted with the given key"),
        ("garbage", "cannot be decrypted with the given key"),
        ("empty", "cannot be decrypted with the given key"),
        ("flipped_byte", "cannot be decrypted with the given key"),
        ("not_json", "is corrupt"),
        ("json_list", "is corrupt"),
        ("bad_shape", "is corrupt"),
        ("newer_format", "format_version 2"),
    ],
)
def test_unreadable_vaults_raise_one_line_vault_error(
    vault_file: tuple[Path, bytes], damage: str, expected: str
) -> None:
    path, secret = vault_file
    make_vault().save(path, secret)
    good = path.read_bytes()
    use = secret
    if damage == "wrong_key":
        use = generate_secret()
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(300))
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "flipped_byte":
        path.write_bytes(good[:40] + (b"A" if good[40:41] != b"A" else b"B") + good[41:])
    elif damage == "not_json":
        path.write_bytes(_encrypt(secret, b"\x00not json"))
    elif damage == "json_list":
        path.write_bytes(_encrypt(secret, b"[1, 2]"))
    elif damage == "bad_shape":
        path.write_bytes(_encrypt(secret, json.dumps({"format_version": 1, "keys": {"x": 5}}).encode()))
    elif damage == "newer_format":
        path.write_bytes(_encrypt(secret, json.dumps({"format_version": 2}).encode()))
    with pytest.raises(VaultError) as err:
        Vault.load(path, use)
    message = str(err.value)
    assert expected in message and str(path) in message and one_line(message)
    assert absent(use.decode(), message) and absent(secret.decode(), message)
    chained = err.value.__cause__ is not None or (
        err.value.__context__ is not None and not err.value.__suppress_context__
    )
    assert not chained  # one clean error, no "during handling of the above exception" traceback


def test_missing_vault_and_malformed_key(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="does not exist"):
        Vault.load(tmp_path / "nope.enc", generate_secret())
    with pytest.raises(VaultError, match="directory"):
        Vault.load(tmp_path, generate_secret())
    make_vault().save(tmp_path / "v.enc", generate_secret())
    with pytest.raises(VaultError, match="malformed"):
        Vault.load(tmp_path / "v.enc", b"too-short")
    with pytest.raises(VaultError, match="malformed"):
        make_vault().save(tmp_path / "v.enc", b"not a key")
    with pytest.raises(VaultError, match="does not exist"):
        make_vault().save(tmp_path / "missing-dir" / "v.enc", generate_secret())


def test_load_secret_from_key_file_or_environment(tmp_path: Path) -> None:
    secret = generate_secret()
    kf = tmp_path / "vault.key"
    kf.write_bytes(secret + b"\n")
    assert load_secret(kf, env={}) == secret
    assert load_secret(None, env={"CODEXGATE_VAULT_KEY": secret.decode() + " "}) == secret
    other = generate_secret()
    assert load_secret(kf, env={"CODEXGATE_VAULT_KEY": other.decode()}) == secret  # explicit file wins
    with pytest.raises(VaultError, match="set CODEXGATE_VAULT_KEY") as err:
        load_secret(None, env={})
    assert one_line(str(err.value))
    with pytest.raises(VaultError, match="cannot be read"):
        load_secret(tmp_path / "missing.key", env={})
    kf.write_text("definitely-not-a-fernet-key-but-long-enough-to-look-like-one")
    with pytest.raises(VaultError, match="malformed") as err:
        load_secret(kf, env={})
    assert absent("definitely-not-a-fernet-key", str(err.value))


# ---------------------------------------------------------------------------- authentication


def _auth_error(v: Vault, presented: str, now: datetime = NOW) -> AuthError:
    with pytest.raises(AuthError) as err:
        v.authenticate(presented, now)
    assert absent(presented.strip(), err.value.message) if presented.strip() else True
    return err.value


def test_key_format_and_parse() -> None:
    v = make_vault()
    entry, plain = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    prefix, key_id, secret_part = plain.split("_", 2)
    assert prefix == "cgk" and key_id == entry.key_id and len(key_id) == 12 and "_" not in key_id
    assert key_id == key_id.lower() and all(c in "0123456789abcdef" for c in key_id)
    assert len(secret_part) == 43  # token_urlsafe(32)
    assert parse_key(f"  {plain}\n") == (key_id, plain)
    for bad in ("cgk_short_x", "sk-abc", f"cgk_{key_id.upper()}_{secret_part}", plain + " extra"):
        with pytest.raises(AuthError) as err:
            parse_key(bad)
        assert err.value.code == "invalid_api_key"


def test_authenticate_active_invalid_and_missing() -> None:
    v = make_vault()
    entry, plain = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    assert v.authenticate(plain, NOW) is entry
    assert v.authenticate(plain, NOW.replace(tzinfo=None)) is entry  # naive "now" is taken as UTC
    key_id = entry.key_id
    wrong_secret = f"cgk_{key_id}_{'A' * 43}"
    unknown_id = f"cgk_{'0' * 12}_{plain.split('_', 2)[2]}"
    for presented in (wrong_secret, unknown_id, "cgk_nothex_abc", "Bearer " + plain):
        err = _auth_error(v, presented)
        assert err.code == "invalid_api_key" and one_line(err.message)
    assert key_id in _auth_error(v, wrong_secret).message  # the public id helps support; never the secret
    assert _auth_error(v, "").code == "missing_api_key"
    assert _auth_error(v, "   ").code == "missing_api_key"


def test_revoked_disabled_and_expired_keys() -> None:
    v = make_vault()
    expiring, exp_plain = v.create_key(
        org="acme", team="mobile", project="app", developer="bob", expires_at=NOW + timedelta(hours=1)
    )
    assert v.authenticate(exp_plain, NOW + timedelta(minutes=59, seconds=59)) is expiring
    assert _auth_error(v, exp_plain, NOW + timedelta(hours=1)).code == "expired_api_key"  # expires_at <= now
    assert _auth_error(v, exp_plain, NOW + timedelta(days=3)).code == "expired_api_key"
    assert expiring.status(NOW + timedelta(hours=1)) == "expired" and expiring.status(NOW) == "active"

    disabled, dis_plain = v.create_key(org="acme", team="mobile", project="app", developer="carol")
    v.set_key_enabled(disabled.key_id, False)
    err = _auth_error(v, dis_plain)
    assert err.code == "revoked_api_key" and disabled.status(NOW) == "disabled"
    v.set_key_enabled(disabled.key_id, True)
    assert v.authenticate(dis_plain, NOW) is disabled

    revoked, rev_plain = v.create_key(org="acme", team="mobile", project="app", developer="dave")
    v.revoke_key(revoked.key_id, NOW)
    assert _auth_error(v, rev_plain).code == "revoked_api_key"
    assert revoked.status(NOW) == "revoked" and not revoked.enabled and revoked.revoked_at == NOW
    with pytest.raises(VaultError, match="revoked"):
        v.set_key_enabled(revoked.key_id, True)  # revocation is for good
    with pytest.raises(VaultError, match="revoked"):
        v.rotate_key(revoked.key_id, NOW)
    # a wrong secret for a revoked key learns nothing about its state
    assert _auth_error(v, f"cgk_{revoked.key_id}_{'B' * 43}").code == "invalid_api_key"
    with pytest.raises(VaultError, match="unknown key id"):
        v.revoke_key("ffffffffffff")


def test_rotation_keeps_the_old_key_for_the_grace_period() -> None:
    v = make_vault()
    entry, old = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    new = v.rotate_key(entry.key_id, NOW, grace_seconds=600)
    assert new != old and parse_key(new)[0] == entry.key_id
    assert [h.not_after for h in entry.hashes] == [None, NOW + timedelta(seconds=600)]
    assert v.authenticate(old, NOW + timedelta(seconds=599)) is entry
    assert v.authenticate(new, NOW + timedelta(seconds=599)) is entry
    assert _auth_error(v, old, NOW + timedelta(seconds=600)).code == "invalid_api_key"
    assert v.authenticate(new, NOW + timedelta(days=365)) is entry

    # default grace: the vault's rotation_grace_seconds
    v.rotation_grace_seconds = 60
    newer = v.rotate_key(entry.key_id, NOW + timedelta(seconds=100))
    assert v.authenticate(new, NOW + timedelta(seconds=159)) is entry
    assert _auth_error(v, new, NOW + timedelta(seconds=160)).code == "invalid_api_key"
    # the first key was still in its grace at the second rotation: cut to the new, earlier end
    assert _auth_error(v, old, NOW + timedelta(seconds=160)).code == "invalid_api_key"
    assert v.authenticate(newer, NOW + timedelta(seconds=160)) is entry
    assert len(entry.hashes) == 3
    v.rotate_key(entry.key_id, NOW + timedelta(seconds=200))  # hashes past their grace are dropped
    assert len(entry.hashes) == 2


def test_rotation_never_extends_an_earlier_grace_and_zero_grace_cuts_at_once() -> None:
    v = make_vault()
    entry, first = v.create_key(org="acme", team="mobile", project="app", developer="bob")
    second = v.rotate_key(entry.key_id, NOW, grace_seconds=60)
    third = v.rotate_key(entry.key_id, NOW + timedelta(seconds=10), grace_seconds=3600)
    assert v.authenticate(first, NOW + timedelta(seconds=59)) is entry
    assert _auth_error(v, first, NOW + timedelta(seconds=60)).code == "invalid_api_key"  # not extended
    assert v.authenticate(second, NOW + timedelta(seconds=3000)) is entry
    fourth = v.rotate_key(entry.key_id, NOW + timedelta(seconds=20), grace_seconds=0)
    later = NOW + timedelta(seconds=20)
    for gone in (first, second, third):
        assert _auth_error(v, gone, later).code == "invalid_api_key"
    assert v.authenticate(fourth, later) is entry
    with pytest.raises(VaultError, match="grace"):
        v.rotate_key(entry.key_id, NOW, grace_seconds=-1)


def test_rotation_and_revocation_survive_save_and_load(vault_file: tuple[Path, bytes]) -> None:
    path, secret = vault_file
    v = make_vault()
    a, ka = v.create_key(org="acme", team="mobile", project="p", developer="a", now=NOW)
    b, kb = v.create_key(org="acme", team="mobile", project="p", developer="b", now=NOW)
    ka2 = v.rotate_key(a.key_id, NOW, grace_seconds=60)
    v.revoke_key(b.key_id, now=NOW)
    v.save(path, secret)
    w = Vault.load(path, secret)
    assert w.authenticate(ka, NOW + timedelta(seconds=59)).key_id == a.key_id
    assert _auth_error(w, ka, NOW + timedelta(seconds=60)).code == "invalid_api_key"
    assert w.authenticate(ka2, NOW + timedelta(seconds=60)).key_id == a.key_id
    assert _auth_error(w, kb).code == "revoked_api_key"
    assert w.keys[b.key_id].revoked_at == NOW
    assert w.to_dict() == v.to_dict()


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "glob", ["*", "gpt-5*", "gpt-4.1", "o[34]-mini", "claude-?-opus", "[!x]*", "[]]x", "azure-*", "a/b:c"]
)
def test_valid_globs(glob: str) -> None:
    assert validate_glob(glob) == glob


@pytest.mark.parametrize(
    "glob",
    [
        "",
        " ",
        "gpt 5",
        "gpt-5* ",
        "\tgpt",
        "x\n",
        "gpt-[5",
        "o[34-mini",
        "[",
        "[!",
        "[]",
        "a\x00b",
        "a" * 201,
    ],
)
def test_invalid_globs(glob: str) -> None:
    with pytest.raises(VaultError, match="invalid glob") as err:
        validate_glob(glob)
    assert one_line(str(err.value))
    v = make_vault()
    with pytest.raises(VaultError, match="invalid glob"):
        v.create_key(org="acme", team="mobile", project="app", developer="bob", models=[glob])
    with pytest.raises(VaultError, match="invalid glob"):
        v.create_key(org="acme", team="mobile", project="app", developer="bob", providers=["ok", glob])
    assert not v.keys


def test_create_key_rejects_bad_input() -> None:
    v = make_vault()
    with pytest.raises(VaultError, match="unknown team 'acme/nope'"):
        v.create_key(org="acme", team="nope", project="p", developer="d")
    bad: list[dict[str, object]] = [
        {"developer": "has space"},
        {"developer": ""},
        {"project": "a/b"},
        {"privacy_mode": "everything"},
        {"budget_usd": 10.0},  # no period
        {"budget_usd": -1.0, "budget_period": "day"},
        {"budget_usd": float("nan"), "budget_period": "day"},
        {"budget_usd": 5.0, "budget_period": "year"},
        {"tags": {"bad key": "v"}},
        {"tags": {"k": ""}},
        {"models": []},
    ]
    for override in bad:
        kwargs: dict[str, object] = {"org": "acme", "team": "mobile", "project": "p", "developer": "d"}
        kwargs.update(override)
        with pytest.raises(VaultError) as err:
            v.create_key(**kwargs)  # type: ignore[arg-type]
        assert one_line(str(err.value))
    assert not v.keys
    with pytest.raises(VaultError, match="already exists"):
        v.add_team("acme", "mobile")
    with pytest.raises(VaultError, match="invalid team"):
        v.add_team("acme", "a/b")


def test_provider_validation_and_one_default_per_api_family() -> None:
    v = make_vault()
    v.add_provider(
        ProviderCredential(
            "azure-east",
            "azure",
            "https://x.openai.azure.com/openai",
            "k" * 32,
            api_version="2025-01-01",
            default=True,
        )
    )
    assert v.providers["azure-east"].default and not v.providers["openai"].default
    v.add_provider(
        ProviderCredential("claude2", "anthropic", "https://api.anthropic.com", "k" * 32, default=True)
    )
    assert not v.providers["anthropic"].default and v.providers["azure-east"].default  # other family kept
    bad = [
        ProviderCredential("openai", "openai", "https://a.example/v1", "k" * 20),  # exists
        ProviderCredential("x", "gemini", "https://a.example/v1", "k" * 20),
        ProviderCredential("x", "openai", "ftp://a.example/v1", "k" * 20),
        ProviderCredential("x", "openai", "https://a.example/v1?key=1", "k" * 20),
        ProviderCredential("x", "openai", "https://a.example/v1", ""),
        ProviderCredential("x", "openai", "https://a.example/v1", "sk-1\r\nX-Evil: 1"),
        ProviderCredential("x", "openai", "https://a.example/v1", "k" * 20, hosts=["https://a.example"]),
        ProviderCredential("bad name", "openai", "https://a.example/v1", "k" * 20),
    ]
    for p in bad:
        with pytest.raises(VaultError) as err:
            v.add_provider(p)
        assert one_line(str(err.value)) and absent("X-Evil", str(err.value))
    v.rotate_provider_key("openai", "sk-new-" + "n" * 20)
    assert v.providers["openai"].api_key == "sk-new-" + "n" * 20
    with pytest.raises(VaultError, match="used by route"):
        v.remove_provider("anthropic")
    v.remove_route(0)
    v.remove_provider("anthropic")
    assert "anthropic" not in v.providers


def test_route_validation_and_order() -> None:
    v = make_vault()
    with pytest.raises(VaultError, match="unknown provider"):
        v.add_route("gpt-*", "nope")
    with pytest.raises(VaultError, match="cannot serve"):
        v.add_route("claude-*", "openai", "anthropic_messages")
    with pytest.raises(VaultError, match="cannot serve"):
        v.add_route("gpt-*", "anthropic", "responses")
    with pytest.raises(VaultError, match="unknown api"):
        v.add_route("gpt-*", "openai", "embeddings-v9")
    with pytest.raises(VaultError, match="invalid glob"):
        v.add_route("gpt-[", "openai")
    v.add_route("gpt-*", "openai", "responses")
    v.add_route("gpt-5*", "openai", position=0)
    assert [r.model for r in v.routes] == ["gpt-5*", "claude-*", "gpt-*"]
    assert v.provider_for("claude-3-opus", "anthropic_messages") is v.providers["anthropic"]
    assert v.provider_for("llama", "responses") is None
    with pytest.raises(VaultError, match="no route 7"):
        v.remove_route(7)


# ---------------------------------------------------------------------------- atomic saves

_BIG_SAVE = """
import errno, resource, signal, sys
from pathlib import Path
from codexgate.core.vault import Vault, load_secret
path, mode = Path(sys.argv[1]), sys.argv[2]
secret = load_secret(None)
v = Vault.load(path, secret)
for i in range(400):
    v.create_key(org="acme", team="mobile", project="p", developer=f"dev{i}", tags={"n": str(i)})
# "error": the write fails with EFBIG; "crash": the kernel kills us in the middle of write()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if mode == "error" else signal.SIG_DFL)
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
try:
    v.save(path, secret)
except OSError as exc:
    print("EFBIG" if exc.errno == errno.EFBIG else exc.errno)
    sys.exit(3)
print("saved")
"""


@pytest.mark.parametrize("mode", ["error", "crash"])
def test_a_save_that_fails_or_dies_mid_write_leaves_the_old_vault(
    vault_file: tuple[Path, bytes], mode: str
) -> None:
    path, secret = vault_file
    v = make_vault()
    v.create_key(org="acme", team="mobile", project="p", developer="before")
    v.save(path, secret)
    before = path.read_bytes()
    env = {**os.environ, "CODEXGATE_VAULT_KEY": secret.decode()}
    proc = subprocess.run(
        [sys.executable, "-c", _BIG_SAVE, str(path), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if mode == "error":
        assert proc.returncode == 3 and proc.stdout.strip() == "EFBIG", proc.stderr[-2000:]
        assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # temp file cleaned up
    else:
        assert proc.returncode == -signal.SIGXFSZ, proc.stderr[-2000:]  # killed in the middle of write()
        leftovers = [p for p in path.parent.iterdir() if p != path]
        assert leftovers and all(p.name.startswith(".vault.enc.") for p in leftovers)
        assert all(p.stat().st_size == 8192 for p in leftovers)  # the half-written temp, never the vault
    assert path.read_bytes() == before
    assert [k.developer for k in Vault.load(path, secret).keys.values()] == ["before"]


_WRITER = """
import sys
from pathlib import Path
from codexgate.core.vault import Vault, load_secret
path = Path(sys.argv[1])
secret = load_secret(None)
v = Vault.load(path, secret)
n = 0
while True:
    n += 1
    v.rotation_grace_seconds = n  # a different document on every save
    v.save(path, secret)
    if n == 1:
        print("saving", flush=True)
"""


def test_sigkilled_writer_never_leaves_a_partial_vault(tmp_path: Path) -> None:
    """A writer saving a ~1 MB vault in a loop is SIGKILLed at random moments while a reader
    loads continuously: every load sees a whole vault, never a torn one."""
    secret = generate_secret()
    path = tmp_path / "v.enc"
    v = make_vault()
    for i in range(1500):
        v.create_key(org="acme", team="mobile", project="p", developer=f"dev{i}", tags={"n": str(i)})
    v.save(path, secret)
    assert path.stat().st_size > 500_000  # big enough that a save takes a while and kills land mid-write

    failures: list[str] = []
    versions: set[int] = set()
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                loaded = Vault.load(path, secret)
            except VaultError as exc:
                failures.append(str(exc))
                continue
            if len(loaded.keys) != 1500:
                failures.append(f"{len(loaded.keys)} keys")
            versions.add(loaded.rotation_grace_seconds)

    thread = threading.Thread(target=reader)
    thread.start()
    rng = random.Random(7)
    env = {**os.environ, "CODEXGATE_VAULT_KEY": secret.decode()}  # not argv: ps shows argv
    try:
        for _ in range(8):
            child = subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env
            )
            assert child.stdout is not None
            assert child.stdout.readline() == b"saving\n"
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
            assert child.returncode == -signal.SIGKILL
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert len(versions) > 3, "the reader saw too few versions: the kills did not overlap reads"
    final = Vault.load(path, secret)
    assert len(final.keys) == 1500 and final.rotation_grace_seconds > 1
    # a killed save leaves at most a temp file, never a changed vault name
    assert {p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")} == {"v.enc"}


# ---------------------------------------------------------------------------- speed and threads


def test_a_vault_of_1000_keys_round_trips_and_every_key_authenticates(vault_file: tuple[Path, bytes]) -> None:
    """Size, not speed: 1,000 keys (100 of them rotated) survive a save and a load, and every
    plain key authenticates to its own entry. Load and authenticate timings are printed by
    ``bench/vault_bench.py``, not asserted here."""
    path, secret = vault_file
    v = make_vault()
    plains: dict[str, str] = {}
    for i in range(1000):
        entry, plain = v.create_key(
            org="acme",
            team="platform" if i % 2 else "mobile",
            project=f"p{i % 7}",
            developer=f"dev{i}@example.com",
            models=["gpt-5*", "o4-mini"],
            expires_at=NOW + timedelta(days=i + 1),
            tags={"cost_center": f"cc-{i % 13}", "ticket": f"T-{i}"},
        )
        plains[entry.key_id] = plain
    for kid in list(v.keys)[:100]:
        v.rotate_key(kid, NOW)
    v.save(path, secret)
    loaded = Vault.load(path, secret)
    assert len(loaded.keys) == 1000
    for kid, plain in plains.items():
        assert loaded.authenticate(plain, NOW).key_id == kid


def test_load_is_safe_from_many_threads(vault_file: tuple[Path, bytes]) -> None:
    path, secret = vault_file
    v = make_vault()
    for i in range(50):
        v.create_key(org="acme", team="mobile", project="p", developer=f"dev{i}")
    v.save(path, secret)
    expected = v.to_dict()
    results: list[bool] = []
    errors: list[BaseException] = []

    def load_many() -> None:
        try:
            for _ in range(20):
                results.append(Vault.load(path, secret).to_dict() == expected)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=load_many) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 160 and all(results)


# ---------------------------------------------------------------------------- admin credentials (roles)


def test_vault_written_before_roles_existed_still_loads(tmp_path: Path) -> None:
    """A vault document without ``admins`` (the format before roles) loads with none, keeps its
    sections, and saves back with an empty ``admins`` that this version reads again."""
    secret = Fernet.generate_key()
    legacy = {
        "format_version": 1,
        "providers": {},
        "teams": {"acme/platform": {"org": "acme", "name": "platform", "admins": ["alice"]}},
        "keys": {},
        "routes": [],
        "sections": {"limits": {"acme/platform": {"rpm": 10}}},
    }
    path = tmp_path / "legacy.enc"
    path.write_bytes(Fernet(secret).encrypt(json.dumps(legacy).encode()))
    vault = Vault.load(path, secret)
    assert vault.admins == {} and vault.sections == legacy["sections"]
    vault.save(path, secret)
    again = Vault.load(path, secret)
    assert again.admins == {} and again.teams["acme/platform"].admins == ["alice"]


def test_admin_credentials_round_trip_hashed_and_never_gateway_keys(tmp_path: Path) -> None:
    from codexgate.core.keys import AuthError as KeyAuthError

    vault = Vault()
    vault.add_team("acme", "platform")
    cred, plain = vault.create_admin(
        name="lead@acme.example", role="team_admin", org="acme", teams=["acme/platform"]
    )
    _, gateway_key = vault.create_key(org="acme", team="platform", project="p", developer="alice")
    secret = Fernet.generate_key()
    vault.save(tmp_path / "v.enc", secret)
    raw = Fernet(secret).decrypt((tmp_path / "v.enc").read_bytes()).decode()
    assert plain not in raw and hash_key(plain) in raw
    loaded = Vault.load(tmp_path / "v.enc", secret)
    assert loaded.authenticate_admin(plain).public() == cred.public()
    with pytest.raises(KeyAuthError):
        loaded.authenticate_admin(gateway_key)  # a gateway key is not an admin credential
    with pytest.raises(KeyAuthError):
        loaded.authenticate(plain, datetime.now(UTC))  # and an admin credential is not a gateway key
    loaded.revoke_admin(cred.cred_id)
    with pytest.raises(KeyAuthError, match="revoked"):
        loaded.authenticate_admin(plain)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"role": "root"}, "unknown role"),
        ({"role": "team_admin"}, "at least one team"),
        ({"role": "team_admin", "teams": ["globex/x"]}, "not in org"),
        ({"role": "org_admin", "teams": ["acme/platform"]}, "only a team_admin"),
        ({"role": "developer"}, "invalid developer"),
        ({"role": "auditor", "developer": "bob"}, "only a developer"),
    ],
)
def test_admin_credential_validation(kwargs: dict, message: str) -> None:
    vault = Vault()
    vault.add_team("acme", "platform")
    with pytest.raises(VaultError, match=message):
        vault.create_admin(name="x@acme.example", org="acme", **kwargs)
