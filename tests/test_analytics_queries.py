"""Every named analytics query against a hand-computed answer on a small fixed dataset."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from analytics import queries as q
from analytics.access import ViewerScope
from analytics.budgets import Budget, period_bounds
from analytics.db import TracesNotFound, TraceStore
from tests.helpers.analytics_data import D0, D1, D2, D3, write_fixture

ACME_PAYMENTS = ViewerScope(org="acme", team="payments", label="payments lead")
EMPTY_FROM, EMPTY_TO = datetime(2027, 1, 1, tzinfo=UTC), datetime(2027, 1, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> TraceStore:
    traces = write_fixture(tmp_path_factory.mktemp("analytics") / "traces")
    return TraceStore(traces)


def by_key(frame: pl.DataFrame, key: str) -> dict:
    return {r[key]: r for r in frame.to_dicts()}


# -- access ------------------------------------------------------------------------------------


def test_viewer_scope_sql_filter() -> None:
    assert ViewerScope().sql_filter() == ("TRUE", [])
    sql, params = ViewerScope(org="acme", team="payments").sql_filter("t")
    assert sql == "(t.org = ? AND t.team = ?)" and params == ["acme", "payments"]
    assert ViewerScope(developer="d@x").sql_filter() == ("(developer = ?)", ["d@x"])
    with pytest.raises(ValueError):
        ViewerScope(org="a").sql_filter("t; DROP")
    assert ViewerScope(org="acme").allows("acme", "x", "y") and not ViewerScope(org="acme").allows(
        "globex", "x", "y"
    )
    assert ViewerScope().describe() == "all" and ACME_PAYMENTS.describe() == "payments lead"


# -- store ---------------------------------------------------------------------------------------


def test_store_errors_for_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(TracesNotFound, match="not found"):
        TraceStore(tmp_path / "nope").relation()
    (tmp_path / "empty" / "date=2026-11-01").mkdir(parents=True)
    with pytest.raises(TracesNotFound, match="no trace files"):
        TraceStore(tmp_path / "empty").relation()


def test_store_prunes_partitions_by_date(store: TraceStore) -> None:
    names = [p.parent.name for p in store.files_for(D2, D3)]
    assert names == ["date=2026-11-03"]
    assert [p.parent.name for p in store.files_for(datetime(2026, 11, 2, 23, tzinfo=UTC), D2)] == [
        "date=2026-11-02"
    ]
    assert len(store.files_for(None, None)) == 3
    # the relation text names only the pruned file; the query reads only its rows
    rel = store.relation(D2, D3)
    assert "2026-11-03" in rel and "2026-11-02" not in rel
    assert store.query(f"SELECT count(*) AS n FROM {rel}")["n"][0] == 5


def test_store_path_with_quote_is_escaped(tmp_path: Path) -> None:
    traces = write_fixture(tmp_path / "it's traces")
    s = TraceStore(traces)
    assert s.query(f"SELECT count(*) AS n FROM {s.relation()}")["n"][0] == 12


# -- spend ---------------------------------------------------------------------------------------


def test_spend_by_team_all_time(store: TraceStore) -> None:
    frame = q.spend(store, ["team"])
    rows = by_key(frame, "team")
    pay, infra, anon = rows["payments"], rows["infra"], rows[None]
    assert pay["requests"] == 7 and infra["requests"] == 4 and anon["requests"] == 1
    assert (pay["input_tokens"], pay["cached_tokens"], pay["output_tokens"]) == (7100, 2300, 710)
    assert pay["reasoning_tokens"] == 250  # the old file has no reasoning column: NULL, not an error
    assert pay["cost_usd"] == pytest.approx(0.061)
    assert (pay["priced_requests"], pay["unpriced_requests"], pay["unpriced_input_tokens"]) == (4, 1, 500)
    assert (
        infra["input_tokens"],
        infra["cached_tokens"],
        infra["output_tokens"],
        infra["reasoning_tokens"],
    ) == (
        10000,
        7000,
        1000,
        450,
    )
    assert infra["cost_usd"] == pytest.approx(0.095) and infra["unpriced_requests"] == 0
    assert anon["cost_usd"] is None  # nothing priced: NULL, never 0
    assert frame["team"].to_list()[:2] == ["infra", "payments"]  # costliest first
    assert frame.schema["cost_usd"] == pl.Float64 and frame.schema["input_tokens"] == pl.Int64


def test_spend_by_model_one_day_counts_unknown_cost_separately(store: TraceStore) -> None:
    rows = by_key(q.spend(store, ["model"], D1, D2), "model")
    assert set(rows) == {"gpt-5", "claude-sonnet-4-5", "devstral-internal"}
    assert rows["gpt-5"]["requests"] == 4 and rows["gpt-5"]["cost_usd"] == pytest.approx(0.03)
    unknown = rows["devstral-internal"]
    assert (
        unknown["cost_usd"] is None and unknown["unpriced_requests"] == 1 and unknown["input_tokens"] == 500
    )


def test_spend_by_day_bucket(store: TraceStore) -> None:
    frame = q.spend(store, [], D0, D3, bucket="day")
    costs = {r["bucket"].isoformat(): r["cost_usd"] for r in frame.to_dicts()}
    assert costs == pytest.approx(
        {
            "2026-11-01T00:00:00+00:00": 0.001,
            "2026-11-02T00:00:00+00:00": 0.06,
            "2026-11-03T00:00:00+00:00": 0.095,
        }
    )
    assert frame.schema["bucket"] == pl.Datetime("us", "UTC")
    hours = q.spend(store, ["team"], D1, D2, bucket="hour")
    assert {r["bucket"].hour for r in hours.to_dicts()} == {10, 11}
    # weeks start on Monday: Sunday Nov 1 falls in the week of Oct 26, Nov 2-3 in the week of Nov 2
    weeks = {
        r["bucket"].date().isoformat(): r["requests"] for r in q.spend(store, [], bucket="week").to_dicts()
    }
    assert weeks == {"2026-10-26": 1, "2026-11-02": 11}


def test_spend_by_tags(store: TraceStore) -> None:
    env = by_key(q.spend(store, ["tag:env"]), "tag:env")
    assert env["dev"]["requests"] == 8 and env["dev"]["cost_usd"] == pytest.approx(0.125)
    assert env["ci"]["requests"] == 2 and env["ci"]["cost_usd"] == pytest.approx(0.03)
    assert env["ci"]["unpriced_requests"] == 1
    assert env[None]["requests"] == 2  # r9 (no identity) and r12 (old file without tags)
    both = q.spend(store, ["tag:ticket", "team"])
    tickets = {(r["tag:ticket"], r["team"]): r["cost_usd"] for r in both.to_dicts()}
    assert tickets[("PAY-1", "payments")] == pytest.approx(0.03)
    assert tickets[("INF-9", "infra")] == pytest.approx(0.04)


def test_spend_total_and_empty_range(store: TraceStore) -> None:
    total = q.spend(store, [])
    assert total["requests"][0] == 12 and total["cost_usd"][0] == pytest.approx(0.156)
    empty = q.spend(store, ["team"], EMPTY_FROM, EMPTY_TO)
    assert empty.is_empty() and "cost_usd" in empty.columns
    none = q.spend(store, [], EMPTY_FROM, EMPTY_TO)
    assert none["requests"][0] == 0 and none["cost_usd"][0] is None and none["input_tokens"][0] == 0


def test_only_old_file_in_range(store: TraceStore) -> None:
    """A range whose only file predates several columns still answers every query."""
    spend = q.spend(store, ["team", "tag:env"], D0, D1)
    assert spend.to_dicts()[0]["team"] == "payments" and spend["cost_usd"][0] == pytest.approx(0.001)
    assert spend["reasoning_tokens"][0] == 0 and spend["tag:env"][0] is None
    assert q.guardrails(store, [], D0, D1).is_empty()
    errs = q.errors(store, ["team"], D0, D1)
    assert errs["fallbacks"][0] == 0 and errs["guardrail_blocked"][0] == 0 and errs["requests"][0] == 1
    assert q.latency(store, ["model"], D0, D1)["duration_p50_ms"][0] == pytest.approx(700)


def test_group_by_is_whitelisted(store: TraceStore) -> None:
    with pytest.raises(ValueError, match="cannot group by"):
        q.spend(store, ["team; DROP TABLE x"])
    with pytest.raises(ValueError, match="invalid tag"):
        q.spend(store, ["tag:env' OR 1=1 --"])
    with pytest.raises(ValueError, match="bucket"):
        q.spend(store, ["team"], bucket="minute")


# -- latency ---------------------------------------------------------------------------------------


def test_latency_percentiles(store: TraceStore) -> None:
    rows = by_key(q.latency(store, ["model"]), "model")
    g5 = rows["gpt-5"]  # ok calls only: durations 1000, 2000
    assert g5["requests"] == 2
    assert (g5["duration_p50_ms"], g5["duration_p95_ms"], g5["duration_p99_ms"]) == pytest.approx(
        (1500, 1950, 1990)
    )
    assert (g5["ttft_p50_ms"], g5["ttfb_p50_ms"]) == pytest.approx((500, 150))
    codex = rows["gpt-5-codex"]  # 600, 4000, 5000
    assert codex["requests"] == 3
    assert (codex["duration_p50_ms"], codex["duration_p95_ms"], codex["duration_p99_ms"]) == pytest.approx(
        (4000, 4900, 4980)
    )
    pairs = {(r["model"], r["provider"]): r for r in q.latency(store, ["model", "provider"]).to_dicts()}
    assert pairs[("gpt-5-codex", "openai")]["duration_p50_ms"] == pytest.approx(2300)
    assert pairs[("gpt-5-codex", "azure-openai")]["requests"] == 1
    assert q.latency(store, ["model"], EMPTY_FROM, EMPTY_TO).is_empty()


# -- errors, refusals, status codes ---------------------------------------------------------------


def test_errors_by_team(store: TraceStore) -> None:
    rows = by_key(q.errors(store, ["team"]), "team")
    pay, infra, anon = rows["payments"], rows["infra"], rows[None]
    assert (pay["requests"], pay["errors"], pay["refused"], pay["ok"]) == (7, 1, 1, 5)
    assert pay["error_rate"] == pytest.approx(1 / 7) and pay["refusal_rate"] == pytest.approx(1 / 7)
    assert (pay["status_5xx"], pay["retried"], pay["retries"], pay["fallbacks"]) == (1, 1, 1, 1)
    assert (pay["guardrail_flagged"], pay["guardrail_blocked"]) == (1, 0)
    assert (infra["errors"], infra["refused"], infra["retried"], infra["fallbacks"]) == (0, 1, 1, 1)
    assert (infra["guardrail_flagged"], infra["guardrail_blocked"], infra["status_4xx"]) == (2, 1, 1)
    assert (anon["refused"], anon["refusal_rate"]) == (1, 1.0)


def test_target_attempts(store: TraceStore) -> None:
    # r5: openai 503 -> fallback, azure 503 -> gave_up; r8: openai 429 -> fallback, azure 200 served
    # after the fallback; every other forwarded call is one served attempt (openai: r1 r2 r7 r10 r12)
    rows = by_key(q.target_attempts(store), "provider")
    assert list(rows) == ["openai", "azure-openai", "anthropic", "vllm-internal"]  # most failures first
    ai, az = rows["openai"], rows["azure-openai"]
    assert (ai["attempts"], ai["served"], ai["failures"], ai["fell_back"], ai["gave_up"]) == (7, 5, 2, 2, 0)
    assert (az["attempts"], az["served"], az["served_after_fallback"], az["gave_up"]) == (2, 1, 1, 1)
    assert az["top_error"] == "HTTP 503" and az["failure_latency_p50_ms"] == 100.0
    assert (ai["served_after_fallback"], ai["retried"], ai["cut"], ai["skipped_open_circuit"]) == (0, 0, 0, 0)
    assert ai["upstream_api"] == "native" and ai["upstream_model"] is None
    assert rows["anthropic"]["failure_latency_p50_ms"] is None and rows["anthropic"]["top_error"] is None
    infra = by_key(
        q.target_attempts(store, scope=ViewerScope(org="globex", team="infra", label="infra")), "provider"
    )
    assert (infra["openai"]["attempts"], infra["openai"]["served"], infra["openai"]["fell_back"]) == (3, 2, 1)
    assert (infra["azure-openai"]["served"], infra["azure-openai"]["served_after_fallback"]) == (1, 1)
    assert q.target_attempts(store, EMPTY_FROM, EMPTY_TO).is_empty()


def test_refusal_reasons_and_status_codes(store: TraceStore) -> None:
    reasons = by_key(q.refusal_reasons(store), "refusal_reason")
    assert set(reasons) == {"model_not_allowed", "invalid_api_key", "guardrail_blocked"}
    assert all(r["refused"] == 1 and r["refusal_rate"] == pytest.approx(1 / 12) for r in reasons.values())
    per_team = {(r["team"], r["refusal_reason"]): r for r in q.refusal_reasons(store, ["team"]).to_dicts()}
    assert per_team[("infra", "guardrail_blocked")]["refusal_rate"] == pytest.approx(1 / 4)
    assert per_team[("payments", "model_not_allowed")]["requests"] == 7
    codes = {r["status_code"]: r["requests"] for r in q.status_codes(store).to_dicts()}
    assert codes == {200: 8, 401: 1, 403: 2, 503: 1}


# -- guardrails ------------------------------------------------------------------------------------


def test_guardrail_findings(store: TraceStore) -> None:
    frame = q.guardrails(store)
    found = {(r["guardrail"], r["stage"], r["entity"], r["action"]): r for r in frame.to_dicts()}
    assert set(found) == {
        ("pii", "input", "EMAIL_ADDRESS", "logged"),
        ("secrets", "input", "AWS_KEY", "redacted"),
        ("pii", "output", "EMAIL_ADDRESS", "logged"),
        ("secrets", "input", "PRIVATE_KEY", "blocked"),
    }
    assert all(r["findings"] == 1 and r["calls"] == 1 for r in found.values())
    assert found[("secrets", "input", "PRIVATE_KEY", "blocked")]["blocked_calls"] == 1
    per_team = q.guardrails(store, ["team"])
    assert per_team.filter(pl.col("team") == "infra").height == 3
    assert per_team.filter(pl.col("team") == "payments").height == 1


# -- sessions --------------------------------------------------------------------------------------


def test_top_sessions(store: TraceStore) -> None:
    top = q.top_sessions(store, 2)
    assert top["session_id"].to_list() == ["s3", "s1"]
    s1 = top.to_dicts()[1]
    assert (s1["calls"], s1["turns"], s1["errors"], s1["refused"]) == (4, 1, 1, 1)
    assert (
        s1["cost_usd"] == pytest.approx(0.03)
        and s1["team"] == "payments"
        and s1["developer"] == "alice@example.com"
    )
    assert s1["wall_s"] == pytest.approx(180.002)  # 10:00 -> 10:03 + 2 ms
    by_calls = q.top_sessions(store, 3, order_by="calls")
    assert by_calls["session_id"].to_list() == ["s1", "s2", "s3"]
    s2 = q.top_sessions(store, 10).filter(pl.col("session_id") == "s2").to_dicts()[0]
    assert s2["unpriced_calls"] == 1 and s2["cost_usd"] == pytest.approx(0.03)
    assert q.top_sessions(store, 5, EMPTY_FROM, EMPTY_TO).is_empty()
    with pytest.raises(ValueError):
        q.top_sessions(store, 5, order_by="cost; DROP")


def test_session_and_turn_cost(store: TraceStore) -> None:
    calls = q.session_cost(store, "s1")
    assert calls["call_index"].to_list() == [0, 1, 2, 3]
    assert calls["cumulative_cost_usd"].to_list() == pytest.approx([0.01, 0.03, 0.03, 0.03])
    assert calls["offset_ms"].to_list() == [0, 60_000, 120_000, 180_000]
    assert calls["outcome"].to_list() == ["ok", "ok", "upstream_error", "refused"]
    assert calls["tool_names"].to_list()[0] == ["shell"]
    turns = q.turn_cost(store, "s2")
    assert turns["turn_id"].to_list() == ["t2", "t3"] and turns["turn_no"].to_list() == [0, 1]
    assert turns["cost_usd"].to_list()[0] == pytest.approx(0.03)
    assert turns["cost_usd"].to_list()[1] is None and turns["unpriced_calls"].to_list() == [0, 1]
    assert q.session_cost(store, "no-such-session").is_empty()


def test_cache_hit_ratio(store: TraceStore) -> None:
    rows = by_key(q.cache_hit_ratio(store, ["team"]), "team")
    assert rows["payments"]["cache_hit_ratio"] == pytest.approx(2300 / 7100)
    assert rows["infra"]["cache_hit_ratio"] == pytest.approx(0.7)
    daily = q.cache_hit_ratio(store, [], bucket="day")
    assert daily.height == 3


# -- budgets ---------------------------------------------------------------------------------------


def test_period_bounds() -> None:
    now = datetime(2026, 12, 31, 15, tzinfo=UTC)  # a Thursday
    assert period_bounds("day", now) == (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert period_bounds("week", now) == (
        datetime(2026, 12, 28, tzinfo=UTC),
        datetime(2027, 1, 4, tzinfo=UTC),
    )
    assert period_bounds("month", now) == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ValueError):
        Budget("org", "acme", 10)
    with pytest.raises(ValueError):
        Budget("team", "acme/payments", 10, "year")


def test_budget_status(store: TraceStore) -> None:
    now = datetime(2026, 11, 3, 13, tzinfo=UTC)
    budgets = [
        Budget("team", "acme/payments", 0.05, "week"),
        Budget("team", "globex/infra", 1.0, "day"),
        Budget("key", "k_carol", 0.1, "day"),
        Budget("team", "payments", 10.0, "month"),
    ]
    rows = {(r["scope_kind"], r["name"]): r for r in q.budget_status(store, budgets, now=now).to_dicts()}
    pay = rows[("team", "acme/payments")]
    assert pay["spent_usd"] == pytest.approx(0.06) and pay["status"] == "exhausted"
    assert pay["remaining_usd"] == pytest.approx(-0.01)
    assert pay["projected_exhaustion"] == datetime(2026, 11, 2, 11, tzinfo=UTC)  # r3 pushed it over
    assert pay["unpriced_requests"] == 1
    infra = rows[("team", "globex/infra")]
    assert infra["spent_usd"] == pytest.approx(0.095) and infra["status"] == "ok"
    assert infra["burn_usd_per_hour"] == pytest.approx(0.095 / 13) and infra["projected_exhaustion"] is None
    carol = rows[("key", "k_carol")]
    assert carol["spent_usd"] == pytest.approx(0.09) and carol["status"] == "at_risk"
    expected = datetime(2026, 11, 3, 14, 26, 40, tzinfo=UTC)
    assert abs((carol["projected_exhaustion"] - expected).total_seconds()) < 1
    month = rows[("team", "payments")]
    assert month["spent_usd"] == pytest.approx(0.061)  # includes the old file of Nov 1
    assert month["period_start"] == datetime(2026, 11, 1, tzinfo=UTC)


# -- scopes ----------------------------------------------------------------------------------------


def test_viewer_scope_restricts_every_query(store: TraceStore) -> None:
    assert q.spend(store, ["team"], scope=ACME_PAYMENTS)["team"].to_list() == ["payments"]
    dave = ViewerScope(org="globex", team="infra", developer="dave@example.com")
    only = q.spend(store, ["developer"], scope=dave).to_dicts()
    assert len(only) == 1 and only[0]["requests"] == 2 and only[0]["cost_usd"] == pytest.approx(0.005)
    assert set(q.top_sessions(store, 10, scope=ViewerScope(org="globex"))["session_id"]) == {"s3", "s4"}
    assert set(q.latency(store, ["model"], scope=ACME_PAYMENTS)["model"]) == {"gpt-5", "claude-sonnet-4-5", "devstral-internal", "gpt-4.1-mini"}  # fmt: skip
    assert q.errors(store, ["team"], scope=ACME_PAYMENTS)["requests"].to_list() == [7]
    assert set(q.guardrails(store, ["team"], scope=ACME_PAYMENTS)["team"]) == {"payments"}
    assert q.session_cost(store, "s3", scope=ACME_PAYMENTS).is_empty()
    assert q.cache_hit_ratio(store, ["team"], scope=ACME_PAYMENTS).height == 1
    assert q.refusal_reasons(store, scope=ACME_PAYMENTS)["refusal_reason"].to_list() == ["model_not_allowed"]
    # a value carrying SQL is just a value
    assert q.spend(store, ["team"], scope=ViewerScope(team="x' OR '1'='1")).is_empty()
    budgets = [Budget("team", "acme/payments", 1, "month"), Budget("team", "globex/infra", 1, "month"),
               Budget("key", "k_carol", 1, "month"), Budget("key", "k_alice", 1, "month")]  # fmt: skip
    seen = q.budget_status(store, budgets, now=datetime(2026, 11, 3, 13, tzinfo=UTC), scope=ACME_PAYMENTS)
    assert sorted(seen["name"].to_list()) == ["acme/payments", "k_alice"]


def test_distinct_values(store: TraceStore) -> None:
    teams = q.distinct_values(store, "team")
    assert teams["value"].to_list() == ["infra", "payments"]
    assert q.distinct_values(store, "developer", scope=ACME_PAYMENTS)["value"].to_list() == [
        "alice@example.com",
        "bob@example.com",
    ]
    with pytest.raises(ValueError):
        q.distinct_values(store, "trace_id")
