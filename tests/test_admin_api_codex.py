"""A team admin's key, created through the admin API (a real ``codexgate admin serve``), serves a
real Codex turn through the real gateway within a second of the API's answer; revoking it through
the API stops it within a second. The gateway only reloads the vault file — the API is the one
writer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from codexgate.admin.audit import AuditLog, read_entries, verify
from codexgate.admin.store import EditContext, VaultStore
from tests.helpers.codex import run_codex
from tests.helpers.gateway import DemoVault, Gateway, codex_available
from tests.test_admin_api import AdminServer, serve

pytestmark = pytest.mark.skipif(
    not codex_available(), reason="Codex CLI not installed (npm install @openai/codex failed)"
)


@pytest.fixture(scope="module")
def admin_api(module_tmp: Path, vault: DemoVault) -> Iterator[AdminServer]:
    tmp = module_tmp / "admin"
    tmp.mkdir()
    store = VaultStore(vault.path, vault.secret, AuditLog(tmp / "audit", tmp / "anchor" / "audit-head.jsonl"))
    with store.edit(EditContext(actor="test-setup", role="break_glass", action="test.setup")) as v:
        _, plain = v.create_admin(
            name="lead@acme.example", role="team_admin", org="acme", teams=["acme/platform"]
        )
    server = serve(tmp, vault.path, vault.key_file, vault.secret)
    server.creds["team_admin"] = plain
    try:
        yield server
    finally:
        server.stop()


def gateway_status(gateway: Gateway, key: str) -> int:
    r = httpx.post(
        f"{gateway.base_url}/v1/responses",
        json={"model": "gpt-5-codex", "input": "ping"},
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
        trust_env=False,
    )
    return r.status_code


def until(predicate, timeout: float = 5.0) -> float:  # noqa: ANN001 - a zero-argument callable
    """Seconds until ``predicate()`` holds (polling as fast as the gateway answers)."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, "condition not reached"
    return time.monotonic() - start


def test_team_admin_key_serves_codex_then_revocation_stops_it(
    gateway: Gateway, admin_api: AdminServer, sim, tmp_path: Path
) -> None:
    created = admin_api.call(
        "team_admin", "POST", "/v1/keys", {"team": "acme/platform", "project": "api", "developer": "dora"}
    )
    assert created.status_code == 201, created.text
    key, key_id = created.json()["key"], created.json()["key_id"]
    took = until(lambda: gateway_status(gateway, key) == 200)
    assert took < 1.0, f"new key accepted after {took:.2f}s"
    print(f"\nkey created via API -> first 200 through the gateway: {took:.3f}s")

    sim.clear()
    run = run_codex(tmp_path / "ok", f"{gateway.base_url}/v1", key, "RUN: echo admin-api-key-ok")
    assert run.returncode == 0, run.stderr[-2000:]
    answers = run.items("agent_message")
    assert answers and "admin-api-key-ok" in answers[-1]["text"]

    revoked = admin_api.call("team_admin", "POST", f"/v1/keys/{key_id}/revoke", {})
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    took = until(lambda: gateway_status(gateway, key) == 401)
    assert took < 1.0, f"revoked key still served {took:.2f}s later"
    print(f"key revoked via API -> first 401 from the gateway: {took:.3f}s")
    refused = run_codex(tmp_path / "revoked", f"{gateway.base_url}/v1", key, "hello", timeout=120)
    assert refused.returncode != 0
    assert "revoked" in (refused.stdout + refused.stderr)

    actions = [(e["action"], e["actor"]) for e in read_entries(admin_api.audit_dir) if e["source"] == "api"]
    assert actions == [("key.create", "lead@acme.example"), ("key.revoke", "lead@acme.example")]
    assert verify(admin_api.audit_dir, admin_api.anchor).ok
    assert key not in gateway.log_text() and key not in admin_api.log_path.read_text()
