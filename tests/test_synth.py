"""The synthetic trace generator: realistic shapes, prices consistent with genai-prices, speed."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from genai_prices import Usage, calc_price

from analytics import synth
from codexgate.core import schema

START = datetime(2026, 11, 2, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return list(synth.generate_rows(n_sessions=400, seed=11, start=START, days=7, bodies=False))


@pytest.fixture(scope="module")
def body_rows() -> list[dict]:
    return list(synth.generate_rows(n_sessions=40, seed=5, start=START, days=3, bodies=True))


def sessions(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["session_id"], []).append(r)
    return out


def test_rows_fit_the_schema(rows: list[dict], body_rows: list[dict]) -> None:
    table = schema.to_table(rows[:2000] + body_rows[:200])
    assert table.schema.equals(schema.SCHEMA)
    assert len({r["trace_id"] for r in rows}) == len(rows)


def test_world_shape(rows: list[dict]) -> None:
    known = [r for r in rows if r["org"] is not None]
    assert {r["org"] for r in known} == {"acme", "globex"}
    assert len({(r["org"], r["team"]) for r in known}) == 6
    assert 25 <= len({r["developer"] for r in known}) <= 30
    assert len({r["project"] for r in known}) >= 10
    models = Counter(r["gen_ai_request_model"] for r in rows)
    assert set(models) == {
        "gpt-5",
        "gpt-5-codex",
        "gpt-4.1-mini",
        "o4-mini",
        "claude-sonnet-4-5",
        "devstral-internal",
    }
    assert models.most_common(1)[0][0] == "gpt-5-codex"
    assert all(START <= r["start_time"] < datetime(2026, 11, 9, tzinfo=UTC) for r in rows)
    assert all(r["end_time"] >= r["start_time"] for r in rows)


def test_session_structure(rows: list[dict]) -> None:
    by_session = sessions(rows)
    assert len(by_session) == 400
    lengths = [len(v) for v in by_session.values()]
    assert min(lengths) >= 5 and max(lengths) <= 60 and 10 <= float(np.median(lengths)) <= 25
    for calls in by_session.values():
        assert [c["call_index"] for c in calls] == list(range(len(calls)))
        starts = [c["start_time"] for c in calls]
        assert starts == sorted(starts)
        # a call starts after the previous one ended (Codex calls are sequential)
        assert all(b["start_time"] >= a["end_time"] for a, b in zip(calls, calls[1:], strict=False))
        assert len({c["gen_ai_request_model"] for c in calls}) == 1
        assert len({c["developer"] for c in calls if c["developer"]}) <= 1
        assert calls[0]["request_kind"] == "turn" and calls[0]["thread_id"] == calls[0]["session_id"]
        ok = [c for c in calls if c["outcome"] == "ok"]
        inputs = [c["gen_ai_usage_input_tokens"] for c in ok]
        assert inputs == sorted(inputs)  # history only grows
        items = [c["input_item_count"] for c in calls]
        assert items == sorted(items) and calls[0]["new_input_start"] == 0


def test_token_and_cache_distributions(rows: list[dict]) -> None:
    ok = [r for r in rows if r["outcome"] == "ok"]
    assert all(r["gen_ai_usage_cache_read_input_tokens"] <= r["gen_ai_usage_input_tokens"] for r in ok)
    assert all(r["gen_ai_usage_reasoning_output_tokens"] <= r["gen_ai_usage_output_tokens"] for r in ok)
    first = [r for r in ok if r["call_index"] == 0]
    late = [r for r in ok if r["call_index"] >= 10 and r["gen_ai_request_model"] != "devstral-internal"]
    assert all(r["gen_ai_usage_cache_read_input_tokens"] == 0 for r in first)
    ratio = sum(r["gen_ai_usage_cache_read_input_tokens"] for r in late) / sum(
        r["gen_ai_usage_input_tokens"] for r in late
    )
    assert ratio > 0.8
    mini = [r for r in ok if r["gen_ai_request_model"] == "gpt-4.1-mini"]
    assert all(r["gen_ai_usage_reasoning_output_tokens"] == 0 for r in mini)
    reasoning = [r for r in ok if r["gen_ai_request_model"] in ("gpt-5", "gpt-5-codex", "o4-mini")]
    assert np.mean([r["gen_ai_usage_reasoning_output_tokens"] > 0 for r in reasoning]) > 0.7
    assert 0.9 < np.mean([r["streaming"] for r in rows]) < 0.99


def test_outcomes_errors_refusals(rows: list[dict]) -> None:
    n = len(rows)
    outcomes = Counter(r["outcome"] for r in rows)
    assert 0.02 < outcomes["upstream_error"] / n < 0.045
    assert 0.012 < outcomes["refused"] / n < 0.035
    for r in rows:
        if r["outcome"] == "refused":
            assert r["status_code"] in (401, 403) and r["refusal_reason"]
            assert r["attempts"] is None and r["attempt_count"] == 0 and r["cost_usd"] is None
            assert r["provider"] is None and r["ttfb_ms"] is None
        elif r["outcome"] == "upstream_error":
            assert r["status_code"] in (429, 500, 503) and r["attempts"]
            assert r["attempts"][-1]["status_code"] == r["status_code"]
            assert all(a["status_code"] in (429, 500, 503) for a in r["attempts"])
            assert r["gen_ai_usage_input_tokens"] is None and not r["cost_known"]
        elif r["outcome"] == "ok":
            assert r["status_code"] == 200 and r["attempts"][-1]["status_code"] == 200
            assert r["ttfb_ms"] <= r["duration_ms"]
            if r["streaming"]:
                assert r["ttfb_ms"] <= r["ttft_ms"] <= r["duration_ms"]
        if r["attempts"]:
            assert r["attempt_count"] == len(r["attempts"])
            assert [a["attempt"] for a in r["attempts"]] == list(range(1, len(r["attempts"]) + 1))
            providers = [a["provider"] for a in r["attempts"]]
            assert r["fallback_used"] == (len(set(providers)) > 1)
            assert r["provider"] == providers[-1]
    assert any(r["fallback_used"] and r["outcome"] == "ok" for r in rows)
    assert any(r["fallback_used"] and r["outcome"] == "upstream_error" for r in rows)
    assert any(r["outcome"] == "ok" and r["attempt_count"] > 1 for r in rows)
    reasons = Counter(r["refusal_reason"] for r in rows if r["refusal_reason"])
    assert {"invalid_api_key", "model_not_allowed"} <= set(reasons)
    assert all(r["org"] is None for r in rows if r["refusal_reason"] == "invalid_api_key")


def test_guardrails_and_tags(rows: list[dict]) -> None:
    flagged = [r for r in rows if r["guardrail_findings"]]
    assert 0.02 < len(flagged) / len(rows) < 0.07
    kinds = {f["guardrail"] for r in flagged for f in r["guardrail_findings"]}
    assert {"pii", "secrets", "prompt_injection"} <= kinds
    for r in rows:
        if r["guardrail_blocked"]:
            assert r["outcome"] == "refused" and r["refusal_reason"] == "guardrail_blocked"
            assert any(f["action"] == "blocked" for f in r["guardrail_findings"])
    tagged = [r for r in rows if r["tags"]]
    keys = Counter(t["key"] for r in tagged for t in r["tags"])
    assert (
        keys["cost_center"] == len(tagged) and keys["env"] == len(tagged) and 0 < keys["ticket"] < len(tagged)
    )
    assert all([t["key"] for t in r["tags"]] == sorted(t["key"] for t in r["tags"]) for r in tagged)


def test_costs_match_genai_prices(rows: list[dict]) -> None:
    pkg_version = version("genai-prices")
    kinds = {name: spec[0] for name, spec in synth.PROVIDERS.items()}
    provider_ids = {"openai": "openai", "azure": "azure", "anthropic": "anthropic"}
    checked = 0
    for r in rows:
        if r["outcome"] != "ok":
            continue
        if r["gen_ai_request_model"] == synth.UNKNOWN_COST_MODEL:
            assert r["cost_known"] is False and r["cost_usd"] is None and r["price_source"] is None
            continue
        assert r["cost_known"] and r["price_source"] == "genai-prices" and r["price_version"] == pkg_version
        calc = calc_price(
            Usage(
                input_tokens=r["gen_ai_usage_input_tokens"],  # includes cache reads
                cache_read_tokens=r["gen_ai_usage_cache_read_input_tokens"] or None,
                cache_write_tokens=r["gen_ai_usage_cache_creation_input_tokens"] or None,
                output_tokens=r["gen_ai_usage_output_tokens"],
            ),
            model_ref=r["gen_ai_response_model"],
            provider_id=provider_ids[kinds[r["provider"]]],
        )
        assert r["cost_usd"] == pytest.approx(float(calc.total_price), rel=1e-9)
        assert r["input_cost_usd"] == pytest.approx(float(calc.input_price), rel=1e-9)
        assert r["output_cost_usd"] == pytest.approx(float(calc.output_price), rel=1e-9)
        checked += 1
    assert checked > 3000


def test_long_context_rows_use_tiered_prices() -> None:
    usage = (250_000, 200_000, 50_000, 2_000)
    exact = synth.price_call("claude-sonnet-4-5-20250929", "anthropic", *usage)
    calc = calc_price(
        Usage(
            input_tokens=250_000, cache_read_tokens=200_000, cache_write_tokens=50_000, output_tokens=2_000
        ),
        model_ref="claude-sonnet-4-5-20250929",
        provider_id="anthropic",
    )
    assert exact is not None and exact[0] == pytest.approx(float(calc.total_price))
    assert synth.price_call("devstral-internal", "openai_compatible", 10, None, None, 10) is None


def test_bodies_are_responses_api_shaped(body_rows: list[dict]) -> None:
    item_types: Counter[str] = Counter()
    for r in body_rows:
        body = json.loads(r["request_body"])
        assert body["model"] == r["gen_ai_request_model"] and body["stream"] == r["streaming"]
        items = body["input"]
        assert len(items) == r["input_item_count"]
        assert items[0]["role"] == "developer" and items[2]["role"] == "user"
        assert json.loads(r["new_input_items"]) == items[r["new_input_start"] :]
        item_types.update(i["type"] if i["type"] != "message" else f"message:{i['role']}" for i in items)
        if r["outcome"] != "ok":
            assert r["response_body"] is None
            continue
        response = json.loads(r["response_body"])
        assert response["usage"]["input_tokens"] == r["gen_ai_usage_input_tokens"]
        assert (
            response["usage"]["input_tokens_details"]["cached_tokens"]
            == r["gen_ai_usage_cache_read_input_tokens"]
        )
        calls = [o for o in response["output"] if o["type"] == "function_call"]
        if calls:
            assert [c["call_id"] for c in calls] == [t["call_id"] for t in r["tool_calls"]]
            assert all(json.loads(t["arguments"]) for t in r["tool_calls"])
        else:
            assert r["response_text"] and response["output"][-1]["type"] == "message"
    for kind in ("message:developer", "message:user", "message:assistant", "function_call", "function_call_output", "reasoning"):  # fmt: skip
        assert item_types[kind] > 0, kind
    # each function_call in history is followed by its output
    last = max(body_rows, key=lambda r: r["input_item_count"])
    history = json.loads(last["request_body"])["input"]
    outputs = {i["call_id"] for i in history if i["type"] == "function_call_output"}
    assert {i["call_id"] for i in history if i["type"] == "function_call"} == outputs


def test_deterministic_and_n_calls_exact() -> None:
    a = [r["trace_id"] for r in synth.generate_rows(500, seed=3, start=START, bodies=False)]
    b = [r["trace_id"] for r in synth.generate_rows(500, seed=3, start=START, bodies=False)]
    c = [r["trace_id"] for r in synth.generate_rows(500, seed=4, start=START, bodies=False)]
    assert a == b and a != c and len(a) == 500


def test_write_dataset_10k_fast_and_partitioned(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    n = synth.write_dataset(tmp_path / "meta", 10_000, seed=1, bodies=False, start=START, days=7)
    meta_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    synth.write_dataset(
        tmp_path / "full", 10_000, seed=1, bodies=True, start=START, days=7, rows_per_file=4_000
    )
    full_s = time.perf_counter() - t0
    assert n == 10_000
    assert meta_s < 5, meta_s
    assert full_s < 30, full_s
    for folder in ("meta", "full"):
        files = sorted((tmp_path / folder).glob("date=*/*.parquet"))
        assert {f.parent.name for f in files} == {f"date=2026-11-{d:02d}" for d in range(2, 9)}
        total = 0
        for f in files:
            meta = pq.ParquetFile(f)
            assert meta.schema_arrow.equals(schema.SCHEMA)
            assert meta.metadata.row_group(0).column(0).compression == "ZSTD"
            table = pq.read_table(f, columns=["start_time"])
            starts = table.column("start_time").to_pylist()
            assert starts == sorted(starts)
            assert all(s.strftime("%Y-%m-%d") == f.parent.name[5:] for s in starts)
            total += table.num_rows
        assert total == 10_000


def test_cli(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "analytics.synth", "--traces", str(tmp_path / "t"), "--calls", "300", "--no-bodies",
         "--seed", "2", "--days", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "wrote 300 traces" in out.stderr
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in (tmp_path / "t").glob("date=*/*.parquet")) == 300


def _peak_rss_mb(calls: int, folder: Path, batch_rows: int) -> tuple[float, str]:
    """Run the CLI (bodies on, the default) in its own process; the peak memory it reports (its
    own ``VmHWM``: ``wait4``'s ``ru_maxrss`` would include this test process, which the child
    starts as a ``vfork`` of)."""
    proc = subprocess.run(
        [sys.executable, "-m", "analytics.synth", "--traces", str(folder), "--calls", str(calls), "--seed", "4",
         "--batch-rows", str(batch_rows)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = re.search(r"\(peak memory (\d+) MB\)", proc.stderr)
    assert found, proc.stderr
    return float(found.group(1)), proc.stderr


@pytest.mark.timeout(1200)
def test_memory_bounded_by_one_batch(tmp_path: Path) -> None:
    # 4 and 12 batches of 1,000 rows with bodies (~28 KB each: ~340 MB of text in the larger run,
    # were it held at once); small batches keep the runs inside the suite's time budget
    small, _ = _peak_rss_mb(4_000, tmp_path / "s", 1_000)
    large, err = _peak_rss_mb(12_000, tmp_path / "l", 1_000)
    print(f"peak RSS: 4k calls {small:.0f} MB, 12k calls {large:.0f} MB")
    assert large < small * 1.3 + 100, (small, large)  # 3x the calls, not 3x the memory
    assert "wrote 12000 traces in" in err and "peak memory" in err and "\r" not in err  # no bar off a terminal
    files = list((tmp_path / "l").glob("date=*/*.parquet"))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 12_000
    assert not list((tmp_path / "l").glob("date=*/*.tmp"))
