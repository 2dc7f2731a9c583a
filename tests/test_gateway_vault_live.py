"""Hot reload of the vault under a running gateway: revocation and rotation take effect within
a second; a vault the gateway cannot decrypt refuses everything with 503 (fail closed)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from codexgate.core.vault import Vault, generate_secret
from tests.conftest import read_traces
from tests.helpers.gateway import make_vault, start_gateway


def call(gateway, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "ping", "stream": False},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


def wait_status(gateway, key: str, status: int, limit: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit + 2:
        if call(gateway, key).status_code == status:
            return time.monotonic() - t0
        time.sleep(0.05)
    pytest.fail(f"status {status} not seen within {limit + 2}s")


@pytest.fixture()
def live(tmp_path, sim):
    vault = make_vault(tmp_path, sim.url, sim.openai_key, sim.anthropic_key)
    gw = start_gateway(tmp_path, vault)
    yield gw, vault
    gw.stop()


def test_revocation_takes_effect_within_one_second(live) -> None:
    gw, vault = live
    key = vault.keys["alice"]
    assert call(gw, key).status_code == 200
    v = vault.load()
    v.revoke_key(vault.key_ids["alice"])
    t_saved = time.monotonic()
    vault.save(v)
    while call(gw, key).status_code != 401:
        assert time.monotonic() - t_saved < 1.0, "revoked key still accepted after 1 s"
        time.sleep(0.02)
    r = call(gw, key)
    assert r.json()["error"]["code"] == "revoked_api_key"
    # other keys keep working
    assert call(gw, vault.keys["bob"]).status_code == 200


def test_rotation_keeps_old_key_for_grace_period(live) -> None:
    gw, vault = live
    old = vault.keys["alice"]
    v = vault.load()
    new = v.rotate_key(vault.key_ids["alice"], datetime.now(UTC), grace_seconds=2)
    vault.save(v)
    wait_status(gw, new, 200, 1.0)
    assert call(gw, old).status_code == 200  # still inside the grace period
    time.sleep(2.2)
    assert call(gw, old).status_code == 401
    assert call(gw, new).status_code == 200


def test_vault_with_another_key_refuses_everything_with_503(live) -> None:
    gw, vault = live
    key = vault.keys["alice"]
    assert call(gw, key).status_code == 200
    other = generate_secret()
    v: Vault = vault.load()
    v.save(vault.path, other)  # re-encrypted with a key the gateway does not have
    wait_status(gw, key, 503, 1.0)
    r = call(gw, key)
    assert r.status_code == 503 and r.json()["error"]["code"] == "vault_unavailable"
    assert call(gw, "cgk_000000000000_whatever-whatever-whatever").status_code == 503
    # refusals are traced, with no upstream attempt
    rows = read_traces(gw.traces, "refusal_reason = 'vault_unavailable'", wait_for=2)
    assert len(rows) >= 2 and all(r["attempt_count"] == 0 and r["outcome"] == "refused" for r in rows)
    # putting the right vault back restores service without a restart
    v.save(vault.path, vault.secret)
    wait_status(gw, key, 200, 1.0)


def test_no_secret_in_logs(live, sim) -> None:
    gw, vault = live
    for k in vault.keys.values():
        call(gw, k)
    call(gw, "cgk_000000000000_bogus-bogus-bogus-bogus")
    gw.stop()
    text = gw.log_text()
    for secret in [*vault.keys.values(), sim.openai_key, sim.anthropic_key, vault.secret.decode()]:
        assert secret not in text
