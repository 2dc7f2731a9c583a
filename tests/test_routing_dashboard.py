"""The dashboard shows attempts and fallbacks (Streamlit AppTest over a small trace folder):
Replay lists each attempt of a step (target, status, latency, error, what the relay decided) and
what was sent upstream; Errors shows retries and fallbacks per route target from
``analytics.queries.target_attempts``."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from analytics import queries
from analytics.db import TraceStore
from codexgate.core import schema
from tests.helpers.analytics_data import row

PAGES = Path(__file__).resolve().parents[1] / "dashboard" / "pages"
CLAUDE = "claude-sonnet-4-5"
SENT = {"model": CLAUDE, "max_tokens": 16384, "messages": [{"role": "user", "content": "fix the build"}]}


def _attempt(n: int, provider: str, status: int | None, decision: str, at: datetime, **kw: Any) -> dict:
    return {"attempt": n, "provider": provider, "url": f"https://{provider}.example/v1", "status_code": status,
            "latency_ms": 120.0 * n, "error": None if status == 200 else kw.pop("error", f"HTTP {status}"),
            "started_at": at, "decision": decision, "model": kw.get("model"),
            "upstream_api": kw.get("upstream_api"), "wait_ms": None, "sent_bytes": 100}  # fmt: skip


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    at = datetime.now(UTC) - timedelta(hours=1)
    fallback = row("f1", at, "alice", "gpt-5-codex", provider="anthropic", tokens=(1000, 0, 100, 0), cost=0.01,
                   session="s-route", turn="t1", call_index=0, fallback=True)  # fmt: skip
    fallback["attempts"] = [
        _attempt(1, "lb-a", 500, "fallback", at),
        _attempt(2, "lb-b", None, "fallback", at, error="connect timeout: no connection to lb-b within 0.5s"),
        _attempt(3, "anthropic", 200, "served", at, model=CLAUDE, upstream_api="anthropic_messages"),
    ]
    fallback["upstream_request_body"] = json.dumps(SENT)
    fallback["request_body"] = json.dumps({"model": "gpt-5-codex", "input": "fix the build"})
    plain = row(
        "f2", at + timedelta(minutes=1), "alice", "gpt-5-codex", session="s-route", turn="t1", call_index=1
    )
    plain["attempts"] = [_attempt(1, "lb-a", 200, "served", at)]
    failed = row("f3", at + timedelta(minutes=2), "alice", "gpt-5-codex", outcome="upstream_error", status=503,
                 session="s-route", turn="t1", call_index=2)  # fmt: skip
    failed["attempts"] = [_attempt(1, "lb-b", 503, "retry", at), _attempt(2, "lb-b", 503, "gave_up", at)]
    folder = tmp_path_factory.mktemp("routing-dash") / "traces" / f"date={at:%Y-%m-%d}"
    folder.mkdir(parents=True)
    pq.write_table(schema.to_table([fallback, plain, failed]), folder / "part-0.parquet")
    return folder.parent


@pytest.fixture(autouse=True)
def env(traces: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CODEXGATE_TRACES", str(traces))
    monkeypatch.setenv("CODEXGATE_DASHBOARD_AUTH", "off")


def page(name: str, **params: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    return at.run()


def test_replay_shows_each_attempt_and_what_was_sent_upstream() -> None:
    at = page("replay", session="s-route", step="1")
    assert not at.exception
    assert any(
        "lb-a → lb-b → anthropic:claude-sonnet-4-5 (anthropic_messages)" in w.value for w in at.warning
    )
    shown = at.dataframe[0].value
    assert shown["target"].tolist() == ["lb-a", "lb-b", f"anthropic:{CLAUDE} (anthropic_messages)"]
    assert shown["decision"].tolist() == ["fell back to the next target"] * 2 + ["served"]
    assert shown["status"].tolist()[0] == 500 and shown["status"].isna().tolist()[1]
    assert shown["error"].tolist()[1].startswith("connect timeout")
    assert shown["latency_ms"].tolist() == [120.0, 240.0, 360.0]
    assert [e.label for e in at.expander if e.label.startswith("Sent upstream")]
    assert any(j.value == json.dumps(SENT) or json.loads(j.value) == SENT for j in at.json)

    retried = page("replay", session="s-route", step="3")
    assert not retried.exception
    assert retried.dataframe[0].value["decision"].tolist() == [
        "retried the same target",
        "gave up (nothing left to try)",
    ]
    assert not [e for e in retried.expander if e.label.startswith("Sent upstream")]


def test_errors_page_shows_retries_and_fallbacks_per_target(traces: Path) -> None:
    at = page("errors")
    assert not at.exception
    assert "Retries and fallbacks by target" in [s.value for s in at.subheader]
    assert any("1 call(s) served by a target after falling back" in c.value for c in at.caption)
    expected = queries.target_attempts(TraceStore(traces))
    table = next(d.value for d in at.dataframe if "served_after_fallback" in d.value.columns)
    assert table["target"].tolist() == ["lb-b", "lb-a", f"anthropic:{CLAUDE}"]  # most failures first
    by_target = table.set_index("target")
    assert by_target.loc["lb-b", "failures"] == 3 and by_target.loc["lb-b", "gave_up"] == 1
    assert by_target.loc[f"anthropic:{CLAUDE}", "served_after_fallback"] == 1
    assert by_target.loc[f"anthropic:{CLAUDE}", "upstream_api"] == "anthropic_messages"
    assert int(expected["failures"].sum()) == int(table["failures"].sum()) == 4
