"""The README's main command: `codexgate demo` starts everything on embedded defaults and records, through
the real gateway, an agent session with tool calls, refusals and a labelled synthetic history kept apart
from the live traces (``--check`` asserts that itself; the test reads the data independently too)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.helpers.gateway import free_port


def _rows(folder: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect()
    con.sql(f"create view t as select * from read_parquet('{folder}/**/*.parquet', union_by_name = true)")
    return con.execute(sql, params or []).fetchall()


def test_demo_check_records_an_agent_session_refusals_and_a_separate_synthetic_history(
    tmp_path: Path,
) -> None:
    exe = Path(sys.executable).with_name("codexgate")
    data = tmp_path / "data"
    ports = [str(free_port()) for _ in range(3)]
    cmd = [str(exe), "demo", "--data", str(data), "--port", ports[0], "--proxy-port", ports[1]]
    cmd += ["--sim-port", ports[2], "--check"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "demo check: ok" in first.stdout

    live, synthetic = data / "traces", data / "synthetic" / "traces"
    session = first.stdout.split("demo check: ok, session ", 1)[1].split()[0]
    steps = _rows(
        live,
        "select count(*) filter (where len(coalesce(tool_calls, [])) > 0), string_agg(request_body, '') "
        "from t where session_id = ?",
        [session],
    )[0]
    assert steps[0] >= 10
    assert "1 passed" in steps[1]  # the fixed test really ran: the agent executed the tool calls
    reasons = dict(_rows(live, "select refusal_reason, count(*) from t where outcome = 'refused' group by 1"))
    for reason in ("invalid_api_key", "model_not_allowed", "budget_exceeded", "guardrail_blocked"):
        assert reasons.get(reason), reasons
    assert _rows(live, "select count(*) from t where outcome = 'upstream_error'")[0][0] >= 1
    assert _rows(live, "select count(*) from t where fallback_used and outcome = 'ok'")[0][0] >= 1
    findings = "select count(*) from t where outcome = 'ok' and len(coalesce(guardrail_findings, [])) > 0"
    assert _rows(live, findings)[0][0] >= 1  # the redacted AWS key

    label = json.loads((data / "synthetic" / "SYNTHETIC.json").read_text())
    assert label["synthetic"] is True and label["budgets"]
    synth_days = _rows(synthetic, "select count(distinct cast(start_time as date)) from t")[0][0]
    assert synth_days >= 10
    overlap = _rows(
        live,
        f"select count(*) from t where trace_id in (select trace_id from read_parquet('{synthetic}/**/*.parquet'))",
    )
    assert overlap[0][0] == 0

    # a second start reuses the vault (and its keys) and the synthetic history; the built-in agent loop
    # records the same story without the Codex CLI
    second = subprocess.run([*cmd, "--agent", "builtin"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-3000:]
    assert "(builtin agent)" in second.stdout
    assert (
        _rows(
            live, "select count(distinct session_id) filter (where len(coalesce(tool_calls, [])) > 0) from t"
        )[0][0]
        >= 2
    )
