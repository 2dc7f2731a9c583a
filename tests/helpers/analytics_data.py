"""A small hand-written trace dataset with known answers, for the analytics and report tests.

Three partitions: ``date=2026-11-01`` holds one *old* file (schema without some newer columns),
``date=2026-11-02`` acme/payments traffic, ``date=2026-11-03`` globex/infra traffic. The expected
numbers in the tests are computed by hand from the table below.

 id  day  time   org/team         dev    model              outcome         in    cached out  reason cost
 r1  d1   10:00  acme/payments    alice  gpt-5              ok              1000  800    200  100    0.010
 r2  d1   10:01  acme/payments    alice  gpt-5              ok              2000  1500   300  150    0.020
 r3  d1   11:00  acme/payments    bob    claude-sonnet-4-5  ok (pii find.)  3000  0      100  0      0.030
 r4  d1   11:05  acme/payments    bob    devstral-internal  ok, unpriced    500   0      50   0      NULL
 r5  d1   10:02  acme/payments    alice  gpt-5              upstream 503, openai->azure fallback
 r6  d1   10:03  acme/payments    alice  gpt-5              refused 403 model_not_allowed
 r7  d2   09:00  globex/infra     carol  gpt-5-codex        ok              4000  3000   400  200    0.040
 r8  d2   09:02  globex/infra     carol  gpt-5-codex        ok, 429 then azure (fallback) 5000 4000 500 250 0.050
 r9  d2   09:30  (no identity)           gpt-5-codex        refused 401 invalid_api_key
 r10 d2   12:00  globex/infra     dave   gpt-5-codex        ok, 2 findings  1000  0      100  0      0.005
 r11 d2   12:05  globex/infra     dave   gpt-5-codex        refused 403 guardrail_blocked (1 finding)
 r12 d0   23:00  acme/payments    alice  gpt-4.1-mini       ok (old file)   600   0      60   -      0.001
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from codexgate.core import schema

D0 = datetime(2026, 11, 1, tzinfo=UTC)
D1 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
D2 = datetime(2026, 11, 3, tzinfo=UTC)
D3 = datetime(2026, 11, 4, tzinfo=UTC)

# columns the "old" file lacks (added by a later schema version, as far as the readers know)
OLD_FILE_MISSING = [
    "gen_ai_usage_reasoning_output_tokens",
    "guardrail_findings",
    "guardrail_blocked",
    "tags",
    "fallback_used",
    "policy_decisions",
    "subagent",
    "new_input_items",
    "new_input_start",
    "instructions_hash",
]

_URLS = {
    "openai": "https://api.openai.com/v1/responses",
    "azure-openai": "https://x.openai.azure.com/openai/v1/responses",
    "anthropic": "https://api.anthropic.com/v1/messages",
    "vllm-internal": "http://vllm.internal:8000/v1/responses",
}
_IDENTITY = {
    "alice": ("acme", "payments", "ledger", "k_alice"),
    "bob": ("acme", "payments", "checkout", "k_bob"),
    "carol": ("globex", "infra", "terraform", "k_carol"),
    "dave": ("globex", "infra", "observability", "k_dave"),
}


def _attempts(start: datetime, spec: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [
        {
            "attempt": i + 1,
            "provider": provider,
            "url": _URLS[provider],
            "status_code": status,
            "latency_ms": 100.0,
            "error": None if status == 200 else f"HTTP {status}",
            "started_at": start + timedelta(milliseconds=150 * i),
            "decision": _decision(spec, i),
        }
        for i, (provider, status) in enumerate(spec)
    ]


def _decision(spec: list[tuple[str, int]], i: int) -> str:
    """What the relay decided after attempt ``i`` (as the gateway records it)."""
    if i == len(spec) - 1:
        return "served" if spec[i][1] < 400 else "gave_up"
    return "fallback" if spec[i + 1][0] != spec[i][0] else "retry"


def row(
    rid: str,
    at: datetime,
    dev: str | None,
    model: str,
    *,
    outcome: str = "ok",
    status: int = 200,
    provider: str | None = "openai",
    tokens: tuple[int, int, int, int] | None = None,
    cost: float | None = None,
    duration: float = 1.0,
    ttft: float | None = None,
    ttfb: float | None = None,
    attempts: list[tuple[str, int]] | None = None,
    fallback: bool = False,
    findings: list[tuple[str, str, str, str]] | None = None,
    blocked: bool = False,
    tags: dict[str, str] | None = None,
    session: str | None = None,
    turn: str | None = None,
    call_index: int | None = None,
    refusal: str | None = None,
) -> dict[str, Any]:
    org, team, project, key_id = _IDENTITY[dev] if dev else (None, None, None, None)
    if attempts is None and outcome != "refused" and provider:
        attempts = [(provider, status)]
    r: dict[str, Any] = {
        "trace_id": uuid.uuid5(uuid.NAMESPACE_URL, rid).hex,
        "start_time": at,
        "end_time": at + timedelta(milliseconds=duration),
        "duration_ms": duration,
        "ttft_ms": ttft,
        "ttfb_ms": ttfb,
        "upstream_first_byte_time": at + timedelta(milliseconds=ttfb) if ttfb is not None else None,
        "first_token_time": at + timedelta(milliseconds=ttft) if ttft is not None else None,
        "status_code": status,
        "outcome": outcome,
        "streaming": True,
        "org": org,
        "team": team,
        "project": project,
        "developer": f"{dev}@example.com" if dev else None,
        "key_id": key_id,
        "provider": provider,
        "gen_ai_request_model": model,
        "gen_ai_response_model": model if outcome == "ok" else None,
        "openai_api_type": "responses",
        "refusal_reason": refusal,
        "error_type": refusal or (None if outcome == "ok" else "server_error"),
        "attempts": _attempts(at, attempts) if attempts else None,
        "fallback_used": fallback,
        "guardrail_findings": [
            {
                "guardrail": g,
                "stage": s,
                "entity": e,
                "action": a,
                "score": 0.9,
                "start": 0,
                "end": 5,
                "message": e,
            }
            for g, s, e, a in findings
        ]
        if findings
        else None,
        "guardrail_blocked": blocked,
        "tags": [{"key": k, "value": v} for k, v in sorted(tags.items())] if tags else None,
        "session_id": session,
        "thread_id": session,
        "turn_id": turn,
        "request_kind": "turn" if session else None,
        "call_index": call_index,
        "tool_calls": [
            {"call_id": f"call_{rid}", "name": "shell", "type": "function_call", "arguments": "{}"}
        ]
        if outcome == "ok" and rid in ("r1", "r7")
        else None,
    }
    if tokens is not None:
        i, c, o, rs = tokens
        r.update(
            gen_ai_usage_input_tokens=i,
            gen_ai_usage_cache_read_input_tokens=c,
            gen_ai_usage_output_tokens=o,
            gen_ai_usage_reasoning_output_tokens=rs,
            usage_complete=True,
        )
    if cost is not None:
        r.update(cost_usd=cost, input_cost_usd=cost * 0.6, output_cost_usd=cost * 0.4, cost_known=True)
        r.update(price_source="genai-prices", price_version="test")
    return r


def h(day: datetime, hour: int, minute: int = 0) -> datetime:
    return day + timedelta(hours=hour, minutes=minute)


def day1_rows() -> list[dict[str, Any]]:
    return [
        row("r1", h(D1, 10), "alice", "gpt-5", tokens=(1000, 800, 200, 100), cost=0.010, duration=1000, ttft=400,
            ttfb=100, tags={"env": "dev", "ticket": "PAY-1"}, session="s1", turn="t1", call_index=0),
        row("r2", h(D1, 10, 1), "alice", "gpt-5", tokens=(2000, 1500, 300, 150), cost=0.020, duration=2000, ttft=600,
            ttfb=200, tags={"env": "dev", "ticket": "PAY-1"}, session="s1", turn="t1", call_index=1),
        row("r3", h(D1, 11), "bob", "claude-sonnet-4-5", provider="anthropic", tokens=(3000, 0, 100, 0), cost=0.030,
            duration=3000, ttft=700, ttfb=300, findings=[("pii", "input", "EMAIL_ADDRESS", "logged")],
            tags={"env": "ci"}, session="s2", turn="t2", call_index=0),
        row("r4", h(D1, 11, 5), "bob", "devstral-internal", provider="vllm-internal", tokens=(500, 0, 50, 0),
            duration=500, ttft=150, ttfb=50, tags={"env": "ci"}, session="s2", turn="t3", call_index=1),
        row("r5", h(D1, 10, 2), "alice", "gpt-5", outcome="upstream_error", status=503, provider="azure-openai",
            duration=1500, ttfb=1400, attempts=[("openai", 503), ("azure-openai", 503)], fallback=True,
            tags={"env": "dev"}, session="s1", turn="t1", call_index=2),
        row("r6", h(D1, 10, 3), "alice", "gpt-5", outcome="refused", status=403, provider=None, duration=2,
            refusal="model_not_allowed", tags={"env": "dev"}, session="s1", turn="t1", call_index=3),
    ]  # fmt: skip


def day2_rows() -> list[dict[str, Any]]:
    return [
        row("r7", h(D2, 9), "carol", "gpt-5-codex", tokens=(4000, 3000, 400, 200), cost=0.040, duration=4000,
            ttft=800, ttfb=400, tags={"env": "dev", "ticket": "INF-9"}, session="s3", turn="t4", call_index=0),
        row("r8", h(D2, 9, 2), "carol", "gpt-5-codex", provider="azure-openai", tokens=(5000, 4000, 500, 250),
            cost=0.050, duration=5000, ttft=900, ttfb=500, attempts=[("openai", 429), ("azure-openai", 200)],
            fallback=True, tags={"env": "dev"}, session="s3", turn="t4", call_index=1),
        row("r9", h(D2, 9, 30), None, "gpt-5-codex", outcome="refused", status=401, provider=None, duration=1,
            refusal="invalid_api_key"),
        row("r10", h(D2, 12), "dave", "gpt-5-codex", tokens=(1000, 0, 100, 0), cost=0.005, duration=600, ttft=300,
            ttfb=100, findings=[("secrets", "input", "AWS_KEY", "redacted"), ("pii", "output", "EMAIL_ADDRESS", "logged")],
            tags={"env": "dev"}, session="s4", turn="t5", call_index=0),
        row("r11", h(D2, 12, 5), "dave", "gpt-5-codex", outcome="refused", status=403, provider=None, duration=3,
            refusal="guardrail_blocked", findings=[("secrets", "input", "PRIVATE_KEY", "blocked")], blocked=True,
            tags={"env": "dev"}, session="s4", turn="t6", call_index=1),
    ]  # fmt: skip


def old_rows() -> list[dict[str, Any]]:
    return [
        row("r12", h(D0, 23), "alice", "gpt-4.1-mini", tokens=(600, 0, 60, 0), cost=0.001, duration=700, ttft=200,
            ttfb=80, session="s0", turn="t0", call_index=0),
    ]  # fmt: skip


def write_fixture(traces: Path) -> Path:
    """Write the three partitions under ``traces``; returns ``traces``."""
    for day, rows, name in ((D1, day1_rows(), "part-0"), (D2, day2_rows(), "part-0")):
        folder = traces / f"date={day:%Y-%m-%d}"
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(schema.to_table(rows), folder / f"{name}.parquet", compression="zstd")
    old = schema.to_table(old_rows()).drop_columns(OLD_FILE_MISSING)
    folder = traces / f"date={D0:%Y-%m-%d}"
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(old, folder / "old-v0.parquet", compression="zstd")
    return traces
