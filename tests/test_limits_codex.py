"""The real Codex CLI through the gateway with limits: its usage display reads the budget from
the gateway's ``x-codex-*`` headers, an exhausted budget stops it with the gateway's message (no
retry loop), and an RPM refusal makes it wait ``Retry-After`` and succeed. Codex runs with its
default retry settings (the tests' shared helper turns retries off)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from codexgate.core.vault import Vault
from codexgate.limits.config import levels_for_key
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import Reservation, open_ledger
from tests.helpers.codex import CodexRun, run_codex
from tests.helpers.gateway import DemoVault, Gateway, codex_available, start_gateway
from tests.helpers.limits import add_key, key_rows

pytestmark = pytest.mark.skipif(not codex_available(), reason="the Codex CLI is not installed (.tools/codex)")


@pytest.fixture(scope="module")
def gw(module_tmp: Path, vault: DemoVault) -> Iterator[Gateway]:
    g = start_gateway(module_tmp, vault)
    try:
        yield g
    finally:
        g.stop()


def codex(tmp: Path, gw: Gateway, key: str, prompt: str = "say hi", timeout: float = 120) -> tuple[CodexRun, Path]:
    """``codex exec --json`` with Codex's default retries; returns the run and its CODEX_HOME."""
    return run_codex(tmp, f"{gw.base_url}/v1", key, prompt, timeout=timeout, retries=None), tmp / "codex-home"


def rate_limit_snapshots(home: Path) -> list[dict]:
    """The ``rate_limits`` of Codex's ``token_count`` events in its session rollout files (what its
    status line shows; ``codex exec --json`` does not print them on stdout)."""
    out = []
    for f in sorted(home.glob("sessions/**/rollout-*.jsonl")):
        for line in f.read_text().splitlines():
            payload = json.loads(line).get("payload") or {}
            if payload.get("type") == "token_count" and (payload.get("rate_limits") or {}).get("primary"):
                out.append(payload["rate_limits"])
    return out


def test_codex_shows_the_budget_percentage(tmp_path: Path, gw: Gateway, vault: DemoVault) -> None:
    k = add_key(
        vault, "codex-usage", "mona",
        lambda kid: {f"key:{kid}": {"budget_usd": 1.0, "period": "day"},
                     "team:acme/codex-usage": {"budget_usd": 10.0, "period": "week"}},
    )
    first, home = codex(tmp_path, gw, k.plain)
    assert first.returncode == 0, first.stdout + first.stderr
    snaps = rate_limit_snapshots(home)
    assert snaps, "Codex recorded no rate-limit snapshot"
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    monday = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=7 - now.weekday())
    p, s = snaps[-1]["primary"], snaps[-1]["secondary"]
    assert p["window_minutes"] == 24 * 60 and p["resets_at"] == int(midnight.timestamp())  # the key's day
    assert s["window_minutes"] == 7 * 24 * 60 and s["resets_at"] == int(monday.timestamp())  # the team's week
    assert 0 < p["used_percent"] <= 100 and 0 < s["used_percent"] < p["used_percent"]
    # a second session sees the budget burn grow
    second, home2 = codex(tmp_path / "again", gw, k.plain)
    assert second.returncode == 0
    assert rate_limit_snapshots(home2)[-1]["primary"]["used_percent"] > p["used_percent"]


def test_codex_stops_on_an_exhausted_budget_with_the_gateways_message(
    tmp_path: Path, gw: Gateway, vault: DemoVault
) -> None:
    k = add_key(vault, "codex-broke", "nina", lambda kid: {f"key:{kid}": {"budget_usd": 0.000001, "period": "day"}})
    run, _ = codex(tmp_path, gw, k.plain)
    assert run.returncode == 1
    failed = [e for e in run.events if e.get("type") == "turn.failed"]
    assert failed, run.stdout
    message = failed[-1]["error"]["message"]
    now = datetime.now(UTC)
    midnight = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    assert f"key {k.key_id}" in message and f"resets at {midnight.isoformat()}" in message
    time.sleep(1.0)  # a retry would have arrived by now
    rows = key_rows([gw.traces], k.key_id, 1)
    assert len(rows) == 1, "Codex must not retry a spent budget"
    assert rows[0]["refusal_reason"] == "budget_exceeded"
    assert {"policy": "limits", "decision": "deny", "reason": "budget_exceeded"} in rows[0]["policy_decisions"]


def test_codex_waits_on_rpm_and_succeeds(tmp_path: Path, gw: Gateway, vault: DemoVault, module_tmp: Path) -> None:
    k = add_key(vault, "codex-rpm", "omar", lambda kid: {f"key:{kid}": {"rpm": 1}})
    # one request 52 s ago fills the minute (written through the ledger API with that time), so
    # the window frees up ~8 s from now instead of a whole minute
    v = Vault.load(vault.path, vault.secret)
    levels = levels_for_key(v, v.keys[k.key_id])

    async def earlier_call() -> None:
        ledger = open_ledger(str(module_tmp / "ledger.sqlite3"))
        try:
            res = await ledger.reserve(levels, Estimate(10, 10, 0.0), datetime.now(UTC) - timedelta(seconds=52))
            assert isinstance(res, Reservation)
            await ledger.settle(res, 0.0, 20)
        finally:
            await ledger.close()

    asyncio.run(earlier_call())
    t0 = time.monotonic()
    run, _ = codex(tmp_path, gw, k.plain)
    waited = time.monotonic() - t0
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.items("agent_message")
    rows = key_rows([gw.traces], k.key_id, 2)
    refused = [r for r in rows if r["status_code"] == 429]
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert refused and ok and refused[0]["refusal_reason"] == "rate_limit_exceeded"
    retry_after = int(json.loads(refused[0]["response_headers"])["retry-after"])
    assert 5 <= retry_after <= 9
    assert waited >= retry_after - 1
    assert ok[0]["start_time"] - refused[-1]["start_time"] >= timedelta(seconds=retry_after - 1)
