"""Limits through the real gateway (mitmdump) and the simulated provider, SQLite ledger:
budgets under 50 concurrent streams, RPM/TPM windows and Retry-After, team isolation, a
SIGKILL mid-stream and a restart (spend kept, orphaned reservation reconciled)."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from codexgate.core.vault import Vault
from tests.conftest import read_traces
from tests.helpers.gateway import DemoVault, Gateway, free_port, save_vault, start_gateway
from tests.helpers.limits import add_key, concurrent_streams, key_rows, stream_call, wait_settled
from tests.helpers.sim import SimProvider

TEXT = "budget check"
MAX_OUT = 32  # the sim answers with ~21 output tokens: the estimate stays above the real cost


@pytest.fixture(scope="module")
def gw(module_tmp: Path, vault: DemoVault) -> Iterator[Gateway]:
    g = start_gateway(module_tmp, vault, opts={"codexgate_reservation_ttl": "30"})
    try:
        yield g
    finally:
        g.stop()


def ledger_of(g: Gateway) -> str:
    return str(g.traces.parent / "ledger.sqlite3")  # the default: beside the traces directory


@pytest.fixture(scope="module")
def call_cost(gw: Gateway, vault: DemoVault) -> float:
    """The real cost of one call of this module (a key without limits; read from its trace)."""
    free = add_key(vault, "calibration", "cal")
    assert stream_call(gw.base_url, free.plain, TEXT, MAX_OUT).ok
    rows = key_rows([gw.traces], free.key_id, 1)
    assert rows[0]["outcome"] == "ok" and rows[0]["cost_usd"] > 0
    decisions = {d["policy"]: d["decision"] for d in rows[0]["policy_decisions"]}
    assert decisions["limits"] == "allow"
    return rows[0]["cost_usd"]


def test_budget_holds_under_50_concurrent_streams(gw: Gateway, vault: DemoVault, call_cost: float) -> None:
    budget = 10.5 * call_cost
    k = add_key(vault, "budget", "dana", lambda kid: {f"key:{kid}": {"budget_usd": budget, "period": "day"}})
    results = concurrent_streams(gw.base_url, k.plain, 50, TEXT, MAX_OUT)
    served = [r for r in results if r.ok]
    refused = [r for r in results if not r.ok]
    assert served, "some calls must fit the budget"
    assert len(served) + len(refused) == 50
    for r in refused:  # every other call got the budget refusal, naming the level and the reset
        assert r.status == 429, r
        err = r.body["error"]
        assert err["type"] == "usage_limit_reached" and err["code"] == "budget_exceeded"
        assert err["level"] == f"key:{k.key_id}" and f"key {k.key_id}" in err["message"]
        assert "resets at" in err["message"] and err["resets_at"] > time.time()
        assert "retry-after" not in r.headers
    rows = key_rows([gw.traces], k.key_id, 50)
    assert len(rows) == 50
    ok_rows = [r for r in rows if r["outcome"] == "ok"]
    assert len(ok_rows) == len(served)
    spent = sum(r["cost_usd"] for r in ok_rows)
    assert spent <= budget + max(r["cost_usd"] for r in ok_rows) + 1e-12
    for r in rows:
        if r["outcome"] != "ok":
            assert r["refusal_reason"] == "budget_exceeded" and r["status_code"] == 429
            assert {"policy": "limits", "decision": "deny", "reason": "budget_exceeded"} in r["policy_decisions"]
    # the ledger equals the traces once every reservation is settled
    (status,) = wait_settled(vault, k.key_id, ledger_of(gw))
    assert status.reserved_usd == pytest.approx(0.0, abs=1e-12)
    assert status.spent_usd == pytest.approx(spent, rel=1e-9, abs=1e-12)
    # calls one after another use the rest of the budget (held by in-flight estimates before),
    # then are refused: the whole period's spend still stays within one call of the budget
    sequential = 0
    for _ in range(15):
        sequential += 1
        if not stream_call(gw.base_url, k.plain, TEXT, MAX_OUT).ok:
            break
    else:
        pytest.fail("the budget was never exhausted")
    ok_rows = [r for r in key_rows([gw.traces], k.key_id, 50 + sequential) if r["outcome"] == "ok"]
    total = sum(r["cost_usd"] for r in ok_rows)
    assert len(ok_rows) >= 8  # the budget fits 10.5 calls; the last estimate must fit too
    assert total <= budget + max(r["cost_usd"] for r in ok_rows) + 1e-12
    (status,) = wait_settled(vault, k.key_id, ledger_of(gw))
    assert status.spent_usd == pytest.approx(total, rel=1e-9, abs=1e-12)
    # past the soft threshold (80 %) calls are served with a warn decision in their row
    warned = [r for r in ok_rows if any(d["decision"] == "warn" for d in r["policy_decisions"])]
    assert warned and all(f"key:{k.key_id} at" in d["reason"] for r in warned for d in r["policy_decisions"]
                          if d["decision"] == "warn")


def test_a_stream_the_client_left_settles_with_its_real_cost(gw: Gateway, vault: DemoVault) -> None:
    k = add_key(vault, "abort", "lena", lambda kid: {f"key:{kid}": {"budget_usd": 1.0, "period": "day"}})
    body = {"model": "gpt-5-codex", "input": "leave early", "stream": True, "max_output_tokens": MAX_OUT}
    headers = {"authorization": f"Bearer {k.plain}", "x-sim-fault": "chunk_delay_ms=300"}
    with httpx.stream("POST", f"{gw.base_url}/v1/responses", json=body, headers=headers, timeout=30, trust_env=False) as r:
        assert r.status_code == 200
        assert r.headers["x-codex-primary-window-minutes"] == "1440"  # Codex's usage headers on a 200
        next(r.iter_raw())  # the first event, then hang up
    (row,) = key_rows([gw.traces], k.key_id, 1)
    assert row["outcome"] == "client_aborted" and row["cost_usd"] > 0  # the relay drained the usage
    (status,) = wait_settled(vault, k.key_id, ledger_of(gw))
    assert status.concurrent == 0 and status.spent_usd == pytest.approx(row["cost_usd"], rel=1e-9)


def test_rpm_holds_with_exact_retry_after_and_other_team_unaffected(gw: Gateway, vault: DemoVault) -> None:
    a = add_key(vault, "rpm-a", "erin", lambda kid: {"team:acme/rpm-a": {"rpm": 3}})
    b = add_key(vault, "rpm-b", "fred")
    a2 = add_key(vault, "rpm-a", "gina")  # same team, another key: shares the team's RPM
    t0 = time.time()
    assert all(stream_call(gw.base_url, a.plain, TEXT, MAX_OUT).ok for _ in range(3))
    denied = stream_call(gw.base_url, a2.plain, TEXT, MAX_OUT)
    elapsed = time.time() - t0
    assert denied.status == 429
    assert denied.body["error"]["code"] == "rate_limit_exceeded" and denied.body["error"]["type"] == "requests"
    assert "team acme/rpm-a" in denied.body["error"]["message"]
    h = denied.headers
    assert h["x-ratelimit-limit-requests"] == "3" and h["x-ratelimit-remaining-requests"] == "0"
    # the first request ages out of the 60 s window 60 s after it was made
    assert 60 - elapsed - 1 <= int(h["retry-after"]) <= 61
    assert int(h["retry-after"]) == math.ceil(float(h["x-ratelimit-reset-requests"].rstrip("s")))
    # another team is not affected by this team's limit
    assert all(stream_call(gw.base_url, b.plain, TEXT, MAX_OUT).ok for _ in range(4))


def test_tpm_holds_within_the_window(gw: Gateway, vault: DemoVault) -> None:
    tpm = 250
    k = add_key(vault, "tpm", "hank", lambda kid: {f"key:{kid}": {"tpm": tpm}})
    results = [stream_call(gw.base_url, k.plain, TEXT, MAX_OUT) for _ in range(12)]
    denied = [r for r in results if not r.ok]
    assert denied and all(r.status == 429 and r.body["error"]["type"] == "tokens" for r in denied)
    assert all(r.headers["x-ratelimit-limit-tokens"] == str(tpm) for r in denied)
    assert all(1 <= int(r.headers["retry-after"]) <= 60 for r in denied)
    rows = key_rows([gw.traces], k.key_id, 12)
    used = sum(r["gen_ai_usage_input_tokens"] + r["gen_ai_usage_output_tokens"] for r in rows if r["outcome"] == "ok")
    assert used <= tpm  # all within one minute: the window's real tokens never pass the limit


def test_sigkill_mid_stream_keeps_spend_and_reconciles_the_orphan(
    tmp_path: Path, sim: SimProvider, vault: DemoVault
) -> None:
    ttl = 8.0
    opts = {"codexgate_reservation_ttl": str(ttl)}
    g = start_gateway(tmp_path, vault, opts=opts, name="a")
    ledger = ledger_of(g)
    try:
        k = add_key(vault, "crash", "ivan", lambda kid: {f"key:{kid}": {"budget_usd": 1.0, "period": "day"}})
        assert all(stream_call(g.base_url, k.plain, TEXT, MAX_OUT).ok for _ in range(3))
        rows = key_rows([g.traces], k.key_id, 3)
        before = sum(r["cost_usd"] for r in rows)
        (st,) = wait_settled(vault, k.key_id, ledger)
        assert st.spent_usd == pytest.approx(before, rel=1e-9)
        # a slow stream is in flight when the gateway is killed: its reservation is orphaned
        slow = threading.Thread(
            target=stream_call, args=(g.base_url, k.plain, "slow", MAX_OUT), kwargs={"x-sim-fault": "chunk_delay_ms=1500"},
            daemon=True,
        )
        slow.start()
        deadline = time.monotonic() + 20
        while wait_settled(vault, k.key_id, ledger, timeout=0)[0].concurrent == 0:
            assert time.monotonic() < deadline, "the slow call never reserved"
            time.sleep(0.1)
        killed_at = time.monotonic()
        g.stop("kill")
        slow.join(30)
    finally:
        g.stop()
    g2 = start_gateway(tmp_path, vault, opts=opts, name="b")
    try:
        (st,) = wait_settled(vault, k.key_id, ledger, timeout=0)
        if time.monotonic() - killed_at < ttl - 0.5:  # not yet expired: held, and spend kept
            assert st.concurrent == 1 and st.spent_usd == pytest.approx(before, rel=1e-9)
        time.sleep(max(0.0, ttl + 0.5 - (time.monotonic() - killed_at)))
        (st,) = wait_settled(vault, k.key_id, ledger, timeout=0)
        # expired: the estimate is charged (conservative), nothing stays reserved
        assert st.concurrent == 0 and st.reserved_usd == 0
        assert st.spent_usd > before
        # the restarted gateway keeps serving against the kept spend and settles its calls
        assert stream_call(g2.base_url, k.plain, TEXT, MAX_OUT).ok
        rows = key_rows([g.traces], k.key_id, 4)
    finally:
        g2.stop()
    # `codexgate ledger rebuild` reconciles the window with the traces (the truth)
    out = subprocess.run(
        [str(Path(sys.executable).with_name("codexgate")), "ledger", "rebuild", "--vault", str(vault.path),
         "--key-file", str(vault.key_file), "--traces", str(g.traces), "--ledger", ledger],
        capture_output=True, text=True,
    )
    assert out.returncode == 0, out.stderr
    traced = sum(r["cost_usd"] or 0.0 for r in read_traces(g.traces, "key_id = ?", [k.key_id]))
    (st,) = wait_settled(vault, k.key_id, ledger, timeout=0)
    assert st.spent_usd == pytest.approx(traced, rel=1e-9)



def test_invalid_limits_section_fails_closed_until_fixed(gw: Gateway, vault: DemoVault) -> None:
    k = add_key(vault, "invalid", "jack", lambda kid: {f"key:{kid}": {"rpm": 100}})
    v = Vault.load(vault.path, vault.secret)
    good = v.sections["limits"]
    v.sections["limits"] = {**good, "levels": {**good["levels"], f"key:{k.key_id}": {"rpm": -1}}}
    save_vault(vault, v)
    try:
        r = stream_call(gw.base_url, k.plain, TEXT, MAX_OUT)
        assert r.status == 503 and r.body["error"]["code"] == "limits_invalid"
        assert "invalid" in r.body["error"]["message"]
    finally:
        v.sections["limits"] = good
        save_vault(vault, v)
    assert stream_call(gw.base_url, k.plain, TEXT, MAX_OUT).ok
    rows = key_rows([gw.traces], k.key_id, 2)
    assert [r["refusal_reason"] for r in rows] == ["limits_invalid", None]


def test_unreachable_redis_ledger_fails_closed(tmp_path: Path, vault: DemoVault) -> None:
    port = free_port()  # nothing listens there
    g = start_gateway(tmp_path, vault, opts={"codexgate_ledger": f"redis://127.0.0.1:{port}/0"}, name="noredis")
    try:
        k = add_key(vault, "noredis", "kim", lambda kid: {f"key:{kid}": {"rpm": 100}})
        r = stream_call(g.base_url, k.plain, TEXT, MAX_OUT)
        assert r.status == 503 and r.body["error"]["code"] in ("limits_unavailable",)
        rows = key_rows([g.traces], k.key_id, 1)
        assert rows[0]["outcome"] == "refused" and rows[0]["attempt_count"] == 0  # never forwarded
    finally:
        g.stop()


def test_model_listing_is_not_counted_against_limits(gw: Gateway, vault: DemoVault) -> None:
    k = add_key(vault, "listing", "mick", lambda kid: {f"key:{kid}": {"rpm": 1, "budget_usd": 1e-6, "period": "day"}})
    for _ in range(3):
        r = httpx.get(f"{gw.base_url}/v1/models", headers={"authorization": f"Bearer {k.plain}"}, trust_env=False)
        assert r.status_code == 200, r.text
    rows = key_rows([gw.traces], k.key_id, 3)
    assert all({"policy": "limits", "decision": "allow", "reason": "not a model call"} in r["policy_decisions"]
               for r in rows)
    (status,) = wait_settled(vault, k.key_id, ledger_of(gw))
    assert status.requests_in_window == 0 and status.spent_usd == 0


def test_budget_refusal_in_anthropic_format(gw: Gateway, vault: DemoVault) -> None:
    k = add_key(vault, "claude", "nora", lambda kid: {f"key:{kid}": {"budget_usd": 1e-6, "period": "week"}},
                providers=["anthropic"])
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=k.plain, max_retries=0)
    with pytest.raises(anthropic.RateLimitError) as err:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=[{"role": "user", "content": "hi"}])
    body = err.value.body
    assert body["type"] == "error" and body["error"]["type"] == "rate_limit_error"
    assert body["error"]["level"] == f"key:{k.key_id}" and "week budget" in body["error"]["message"]
    assert body["error"]["resets_at"] > time.time()
