"""The vault model, directly: key lifecycle (revoke, disable, expiry, rotation with a grace
period) at explicit times, validation, load errors, crash-safe saves under SIGKILL, and the
load time of a vault with 1,000 keys."""

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

from codexgate.vault import (
    AuthError,
    ProviderCredential,
    Vault,
    VaultError,
    generate_secret,
    hash_key,
    load_secret,
    validate_glob,
)

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PROVIDER_SECRET = "sk-unit-provider-secret-0123456789"


def _vault(keys: int = 0) -> Vault:
    v = Vault()
    v.add_provider(
        ProviderCredential("openai", "openai", "https://api.openai.com/v1", PROVIDER_SECRET, default=True)
    )
    v.add_team("acme", "core", budget_usd=10.0, budget_period="day")
    for i in range(keys):
        v.create_key(org="acme", team="core", project="p", developer=f"dev{i}", tags={"n": str(i)}, now=T0)
    return v


def _code(v: Vault, key: str, now: datetime) -> str:
    try:
        v.authenticate(key, now)
    except AuthError as exc:
        return exc.code
    return "ok"


# ---------------------------------------------------------------------------- lifecycle


def test_revoke_is_permanent_and_disable_is_not() -> None:
    v = _vault()
    entry, key = v.create_key(org="acme", team="core", project="p", developer="alice", now=T0)
    assert _code(v, key, T0) == "ok" and entry.status(T0) == "active"

    v.set_key_enabled(entry.key_id, False)
    assert _code(v, key, T0) == "revoked_api_key" and entry.status(T0) == "disabled"
    v.set_key_enabled(entry.key_id, True)
    assert _code(v, key, T0) == "ok"

    v.revoke_key(entry.key_id, now=T0)
    assert _code(v, key, T0) == "revoked_api_key" and entry.status(T0) == "revoked"
    with pytest.raises(VaultError, match="revoked"):
        v.set_key_enabled(entry.key_id, True)
    with pytest.raises(VaultError, match="revoked"):
        v.rotate_key(entry.key_id, T0)
    assert entry.revoked_at == T0


def test_expiry_is_exclusive_at_the_instant() -> None:
    v = _vault()
    entry, key = v.create_key(
        org="acme", team="core", project="p", developer="a", expires_at=T0 + timedelta(hours=1), now=T0
    )
    assert _code(v, key, T0 + timedelta(minutes=59, seconds=59)) == "ok"
    assert _code(v, key, T0 + timedelta(hours=1)) == "expired_api_key"
    assert entry.status(T0 + timedelta(hours=1)) == "expired"
    # naive datetimes are UTC
    assert _code(v, key, datetime(2026, 3, 1, 12, 30)) == "ok"


def test_wrong_secret_and_unknown_id_are_both_invalid() -> None:
    v = _vault()
    entry, key = v.create_key(org="acme", team="core", project="p", developer="a", now=T0)
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert _code(v, forged, T0) == "invalid_api_key"
    assert _code(v, "cgk_000000000000_" + "x" * 43, T0) == "invalid_api_key"
    assert _code(v, "", T0) == "missing_api_key"
    # a revoked key with a wrong secret says nothing about the key's state
    v.revoke_key(entry.key_id, now=T0)
    assert _code(v, forged, T0) == "invalid_api_key"


def test_rotation_grace_period_at_explicit_times() -> None:
    v = _vault()
    entry, k1 = v.create_key(org="acme", team="core", project="p", developer="a", now=T0)
    k2 = v.rotate_key(entry.key_id, T0, grace_seconds=600)
    assert k2 != k1 and k2.startswith(f"cgk_{entry.key_id}_")
    assert _code(v, k1, T0 + timedelta(seconds=599)) == "ok"
    assert _code(v, k1, T0 + timedelta(seconds=600)) == "invalid_api_key"
    assert _code(v, k2, T0 + timedelta(days=365)) == "ok"

    # a second rotation within the first grace never extends the oldest secret's life
    t1 = T0 + timedelta(seconds=300)
    k3 = v.rotate_key(entry.key_id, t1, grace_seconds=3600)
    assert _code(v, k1, t1 + timedelta(seconds=299)) == "ok"
    assert _code(v, k1, t1 + timedelta(seconds=300)) == "invalid_api_key"
    assert _code(v, k2, t1 + timedelta(seconds=3599)) == "ok"
    assert _code(v, k2, t1 + timedelta(seconds=3600)) == "invalid_api_key"
    assert _code(v, k3, t1 + timedelta(seconds=3600)) == "ok"

    # grace 0: the old secret dies at once; expired hashes are dropped on the next rotation
    t2 = t1 + timedelta(hours=2)
    k4 = v.rotate_key(entry.key_id, t2, grace_seconds=0)
    assert _code(v, k3, t2) == "invalid_api_key" and _code(v, k4, t2) == "ok"
    assert len(entry.hashes) == 2  # k4 current, k3 with not_after == t2 (k1, k2 dropped)
    with pytest.raises(VaultError, match="grace"):
        v.rotate_key(entry.key_id, t2, grace_seconds=-1)


def test_rotation_and_revocation_survive_save_and_load(tmp_path: Path) -> None:
    secret = generate_secret()
    v = _vault()
    a, ka = v.create_key(org="acme", team="core", project="p", developer="a", now=T0)
    b, kb = v.create_key(org="acme", team="core", project="p", developer="b", now=T0)
    ka2 = v.rotate_key(a.key_id, T0, grace_seconds=60)
    v.revoke_key(b.key_id, now=T0)
    v.save(tmp_path / "v.enc", secret)
    w = Vault.load(tmp_path / "v.enc", secret)
    assert _code(w, ka, T0 + timedelta(seconds=59)) == "ok"
    assert _code(w, ka, T0 + timedelta(seconds=60)) == "invalid_api_key"
    assert _code(w, ka2, T0 + timedelta(seconds=60)) == "ok"
    assert _code(w, kb, T0) == "revoked_api_key"
    assert w.to_dict() == v.to_dict()


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize("glob", ["*", "gpt-4o*", "claude-3-?-*", "[abc]*", "[!x]*", "[]]x", "o1/[a-z]*"])
def test_valid_globs(glob: str) -> None:
    assert validate_glob(glob) == glob


@pytest.mark.parametrize("glob", ["", "gpt-[", "gpt [4]", "a\tb", "x\n", "[!", "[]", "a" * 201])
def test_invalid_globs_are_refused(glob: str) -> None:
    with pytest.raises(VaultError, match="glob"):
        validate_glob(glob)


def test_edits_validate_globs_teams_and_providers() -> None:
    v = _vault()
    with pytest.raises(VaultError, match="glob"):
        v.create_key(org="acme", team="core", project="p", developer="a", models=["gpt-["])
    with pytest.raises(VaultError, match="at least one"):
        v.create_key(org="acme", team="core", project="p", developer="a", providers=[])
    with pytest.raises(VaultError, match="unknown team 'acme/ghost'.*acme/core"):
        v.create_key(org="acme", team="ghost", project="p", developer="a")
    with pytest.raises(VaultError, match="glob"):
        v.add_route("claude-[", "openai")
    with pytest.raises(VaultError, match="unknown provider 'nope'"):
        v.add_route("x-*", "nope")
    with pytest.raises(VaultError, match="cannot serve"):
        v.add_route("gpt-*", "openai", "anthropic_messages")
    with pytest.raises(VaultError, match="budget"):
        v.add_team("acme", "other", budget_usd=5.0)
    with pytest.raises(VaultError, match="already exists"):
        v.add_team("acme", "core")
    with pytest.raises(VaultError, match="API key"):
        v.add_provider(ProviderCredential("x", "openai", "https://x.example", "sk-a\r\nX-Evil: 1"))
    with pytest.raises(VaultError, match="base URL"):
        v.add_provider(ProviderCredential("y", "openai", "ftp://x.example", "sk-a"))
    v.add_route("gpt-*", "openai")
    with pytest.raises(VaultError, match="route"):
        v.remove_provider("openai")
    assert len(v.keys) == 0  # nothing half-created by the refused edits


# ---------------------------------------------------------------------------- file


def test_file_holds_no_plaintext_and_gateway_keys_only_as_hashes(tmp_path: Path) -> None:
    secret = generate_secret()
    v = _vault()
    entry, key = v.create_key(org="acme", team="core", project="p", developer="a", now=T0)
    v.save(tmp_path / "v.enc", secret)
    raw = (tmp_path / "v.enc").read_bytes()
    for needle in (key, PROVIDER_SECRET, entry.key_id, "acme", key.rsplit("_", 1)[1]):
        assert needle.encode() not in raw
    text = json.dumps(Vault.load(tmp_path / "v.enc", secret).to_dict())
    assert key not in text and key.rsplit("_", 1)[1] not in text
    assert hash_key(key) in text
    assert oct((tmp_path / "v.enc").stat().st_mode & 0o777) == "0o600"


def test_load_errors_are_one_line_vault_errors(tmp_path: Path) -> None:
    secret = generate_secret()
    path = tmp_path / "v.enc"
    with pytest.raises(VaultError, match="does not exist"):
        Vault.load(path, secret)
    _vault(2).save(path, secret)
    with pytest.raises(VaultError, match="cannot be decrypted"):
        Vault.load(path, generate_secret())
    with pytest.raises(VaultError, match="malformed"):
        Vault.load(path, b"not-a-key")
    data = path.read_bytes()
    tampered = data[:40] + (b"A" if data[40:41] != b"A" else b"B") + data[41:]
    for broken in (data[: len(data) // 2], tampered, b""):
        path.write_bytes(broken)
        with pytest.raises(VaultError) as info:
            Vault.load(path, secret)
        assert "\n" not in str(info.value) and secret.decode() not in str(info.value)
    with pytest.raises(VaultError, match="directory"):
        Vault.load(tmp_path, secret)


def test_load_secret_from_file_and_env(tmp_path: Path) -> None:
    secret = generate_secret()
    (tmp_path / "k").write_bytes(secret + b"\n")
    assert load_secret(tmp_path / "k", env={}) == secret
    assert load_secret(None, env={"CODEXGATE_VAULT_KEY": f" {secret.decode()}\n"}) == secret
    with pytest.raises(VaultError, match="no vault key"):
        load_secret(None, env={})
    with pytest.raises(VaultError, match="cannot be read"):
        load_secret(tmp_path / "missing", env={})
    (tmp_path / "bad").write_text("short")
    with pytest.raises(VaultError, match="malformed"):
        load_secret(tmp_path / "bad", env={})


def test_load_of_1000_keys_is_fast(tmp_path: Path) -> None:
    secret = generate_secret()
    v = _vault(1000)
    v.save(tmp_path / "v.enc", secret)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        loaded = Vault.load(tmp_path / "v.enc", secret)
        best = min(best, time.perf_counter() - start)
    assert len(loaded.keys) == 1000
    assert best < 0.2, f"loading 1,000 keys took {best * 1000:.0f} ms"


_WRITER = """
import sys
from pathlib import Path
from codexgate.vault import Vault
path, secret = Path(sys.argv[1]), sys.argv[2].encode()
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
    """A writer saving in a loop is SIGKILLed at random moments while a reader loads
    continuously: every load sees a whole vault (all 1,500 keys), never a torn one."""
    secret = generate_secret()
    path = tmp_path / "v.enc"
    _vault(1500).save(path, secret)
    size = path.stat().st_size
    assert size > 500_000  # big enough that a save takes a while and kills land mid-write

    failures: list[str] = []
    loads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal loads
        while not stop.is_set():
            try:
                v = Vault.load(path, secret)
            except VaultError as exc:
                failures.append(str(exc))
                continue
            if len(v.keys) != 1500:
                failures.append(f"{len(v.keys)} keys")
            loads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    rng = random.Random(7)
    try:
        for _ in range(8):
            child = subprocess.Popen(
                [sys.executable, "-c", _WRITER, str(path), secret.decode()],
                stdout=subprocess.PIPE,
                cwd=Path(__file__).resolve().parents[1],
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
    assert loads > 10
    final = Vault.load(path, secret)
    assert len(final.keys) == 1500 and final.rotation_grace_seconds > 1
    # a killed save leaves at most a temp file, never a changed vault name
    assert {p.name for p in tmp_path.iterdir() if not p.name.endswith(".tmp")} == {"v.enc"}
