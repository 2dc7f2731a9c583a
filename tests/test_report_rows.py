"""The report CLI's text path: no Polars/PyArrow imported, the same answers in table, CSV and JSON
(checked against the hand-computed fixture table), the look Polars used to print, and old files
that lack newer columns answered with NULLs."""

from __future__ import annotations

import csv
import io
import json
import math
import re
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.parquet as pq
import pytest

from analytics import queries
from analytics.db import TraceStore
from codexgate.cli import report
from tests.helpers.analytics_data import D2, write_fixture

ROOT = Path(__file__).resolve().parents[1]
CODEXGATE = ROOT / ".venv" / "bin" / "codexgate"
RANGE = ["--since", "2026-11-01", "--until", "2026-11-03"]
HEAVY = {"polars", "pyarrow", "numpy", "pandas"}
# columns the "older writer" below did not know yet
DROPPED = ["guardrail_findings", "guardrail_blocked", "tags", "gen_ai_usage_reasoning_output_tokens"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("rows") / "traces")


@pytest.fixture(scope="module")
def old_only(traces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One day written by an older writer: the globex/infra file without the newer columns."""
    folder = tmp_path_factory.mktemp("old") / "traces"
    day = folder / "date=2026-11-03"
    day.mkdir(parents=True)
    table = pq.read_table(traces / "date=2026-11-03" / "part-0.parquet").drop_columns(DROPPED)
    pq.write_table(table, day / "part-0.parquet")
    return folder


def cli(*args: str, python_flags: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, *python_flags, str(CODEXGATE), "report", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def imported(stderr: str) -> set[str]:
    """Top-level names of every module a ``-X importtime`` run imported."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name.split(".")[0])
    return names


def table_rows(text: str) -> list[dict[str, str]]:
    lines = text.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1]) == {"|", "-"}
    return [
        dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]
    ]


def three_formats(*args: str) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict]]:
    table = table_rows(cli(*args).stdout)
    rows_csv = list(csv.DictReader(io.StringIO(cli(*args, "--format", "csv").stdout)))
    rows_json = json.loads(cli(*args, "--format", "json").stdout)
    assert len(table) == len(rows_csv) == len(rows_json)
    return table, rows_csv, rows_json


# -- no heavy imports on the text path ----------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["spend", "--by", "team", "--bucket", "day"],
        ["spend", "--by", "tag:env,model", "--format", "csv"],
        ["spend", "--by", "team", "--format", "json"],
        ["errors", "--detail", "refusals"],
        ["sessions", "--session", "s1", "--format", "csv"],
    ],
)
def test_text_formats_import_neither_polars_nor_pyarrow(traces: Path, args: list[str]) -> None:
    proc = cli(*args, "--traces", str(traces), *RANGE, python_flags=("-X", "importtime"))
    names = imported(proc.stderr)
    assert "duckdb" in names and "analytics" in names  # the run did import and query
    assert proc.stdout.strip() and "(no traces" not in proc.stdout
    assert not names & HEAVY, sorted(names & HEAVY)


def test_parquet_export_and_help(traces: Path, tmp_path: Path) -> None:
    # the same detection sees Polars where it is used: the Parquet export
    target = tmp_path / "s.parquet"
    proc = cli("spend", "--traces", str(traces), *RANGE, "--format", "parquet", "-o", str(target),
               python_flags=("-X", "importtime"))  # fmt: skip
    assert {"polars", "pyarrow"} <= imported(proc.stderr)
    assert pl.read_parquet(target).filter(pl.col("team") == "infra")["cost_usd"][0] == pytest.approx(0.095)
    # --help builds the parser from analytics.queries without loading DuckDB either
    names = imported(cli("spend", "--help", python_flags=("-X", "importtime")).stderr)
    assert "analytics" in names and not names & (HEAVY | {"duckdb"})


# -- the three formats agree, on the hand-computed fixture numbers -------------------------------


def test_spend_by_team_in_three_formats(traces: Path) -> None:
    table, rows_csv, rows_json = three_formats("spend", "--traces", str(traces), "--by", "team", *RANGE)
    # cost DESC NULLS LAST: infra 0.040+0.050+0.005, payments 0.010+0.020+0.030+0.001, then r9
    assert [r["team"] for r in table] == ["infra", "payments", "null"]
    assert [r["team"] for r in rows_csv] == ["infra", "payments", ""]
    assert [r["team"] for r in rows_json] == ["infra", "payments", None]
    expected = {  # requests, input, cached, output, reasoning, cost, unpriced
        "infra": (4, 10000, 7000, 1000, 450, 0.095, 0),
        "payments": (7, 7100, 2300, 710, 250, 0.061, 1),  # r12's old file has no reasoning column
        None: (1, 0, 0, 0, 0, None, 0),
    }
    names = ["requests", "input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens"]
    for t, c, j in zip(table, rows_csv, rows_json, strict=True):
        want = expected[j["team"]]
        for i, name in enumerate(names):
            assert int(t[name]) == int(c[name]) == j[name] == want[i], name
        assert int(c["unpriced_requests"]) == j["unpriced_requests"] == int(t["unpriced_requests"]) == want[6]
        if want[5] is None:
            assert (t["cost_usd"], c["cost_usd"], j["cost_usd"]) == ("null", "", None)
        else:
            assert float(t["cost_usd"]) == pytest.approx(want[5])  # 4 decimals in the table
            assert float(c["cost_usd"]) == j["cost_usd"] == pytest.approx(want[5], rel=1e-12)
    assert "input_cost_usd" in rows_csv[0] and "input_cost_usd" in rows_json[0]
    assert "input_cost_usd" not in table[0]  # the table shows the main columns only


def test_errors_by_team_in_three_formats(traces: Path) -> None:
    table, rows_csv, rows_json = three_formats("errors", "--traces", str(traces), "--by", "team", *RANGE)
    by_team = {j["team"]: (t, c, j) for t, c, j in zip(table, rows_csv, rows_json, strict=True)}
    t, c, j = by_team["payments"]  # r5 upstream 503 (2 attempts, fallback), r6 refused, r3 pii finding
    assert j["error_rate"] == float(c["error_rate"]) == pytest.approx(1 / 7)
    assert t["error_rate"] == "0.143" and t["refusal_rate"] == "0.143"  # rates: 3 decimals
    assert (j["status_5xx"], j["retried"], j["fallbacks"], j["guardrail_flagged"]) == (1, 1, 1, 1)
    assert (c["status_5xx"], t["retried"], t["fallbacks"], t["guardrail_blocked"]) == ("1", "1", "1", "0")
    t, c, j = by_team["infra"]  # r8 429 then azure; r10 two findings, r11 blocked and refused
    assert j["refusal_rate"] == 0.25 and t["refusal_rate"] == "0.25" and c["refusal_rate"] == "0.25"
    assert (j["guardrail_flagged"], j["guardrail_blocked"], j["retried"]) == (2, 1, 1)
    assert (t["guardrail_flagged"], c["guardrail_blocked"], t["error_rate"]) == ("2", "1", "0.0")
    t, c, j = by_team[None]  # r9: no identity, refused 401
    assert (t["team"], c["team"], j["refusal_rate"], t["refusal_rate"]) == ("null", "", 1.0, "1.0")


def test_session_calls_in_three_formats(traces: Path) -> None:
    table, rows_csv, rows_json = three_formats("sessions", "--traces", str(traces), "--session", "s1")
    assert [r["call_index"] for r in table] == ["0", "1", "2", "3"]
    # r5 lasted 1500 ms: the fraction of a second shows in each format's own way
    assert table[2]["end_time"] == "2026-11-02 10:02:01.500 UTC"
    assert rows_csv[2]["end_time"] == "2026-11-02T10:02:01.500000+0000"
    assert rows_json[2]["end_time"] == "2026-11-02T10:02:01.500000+00:00"
    assert table[0]["start_time"] == "2026-11-02 10:00:00 UTC"
    assert [r["tool_names"] for r in table] == ["shell", "", "", ""]
    assert rows_csv[0]["tool_names"] == "shell" and rows_json[0]["tool_names"] == ["shell"]
    assert rows_json[1]["tool_names"] == []
    assert [t["fallback_used"] for t in table] == [c["fallback_used"] for c in rows_csv]
    assert [t["fallback_used"] for t in table] == ["false", "false", "true", "false"]
    assert [j["fallback_used"] for j in rows_json] == [False, False, True, False]
    assert [j["cumulative_cost_usd"] for j in rows_json] == pytest.approx([0.01, 0.03, 0.03, 0.03])
    assert [t["duration_ms"] for t in table] == ["1000.0", "2000.0", "1500.0", "2.0"]
    assert (table[3]["input_tokens"], rows_csv[3]["input_tokens"], rows_json[3]["input_tokens"]) == (
        "null",
        "",
        None,
    )


# -- the emitter prints what Polars printed ------------------------------------------------------

_POLARS_TABLE = {
    "tbl_rows": -1,
    "tbl_cols": -1,
    "tbl_hide_dataframe_shape": True,
    "tbl_hide_column_data_types": True,
    "tbl_formatting": "ASCII_MARKDOWN",
    "fmt_str_lengths": 60,
    "tbl_width_chars": 10_000,
    "thousands_separator": False,
}


def _tricky_frame() -> pl.DataFrame:
    values = [0.0, -0.0, 0.35, 2.675, 1e-7, 4.5e-5, 0.0069, 12345678.9, 1234567.8, 1e6, 1.5e7, 1e20, -1.25,
              99999.95, 0.1 + 0.2, float("nan"), float("inf"), None]  # fmt: skip
    n = len(values)
    stamps = [datetime(2026, 11, 2, 10, 0, s % 60, us, tzinfo=UTC) for s, us in
              zip(range(n), [0, 500000, 1, 120000, 123456] * 4, strict=False)]  # fmt: skip
    return pl.DataFrame(
        {
            "cost_usd": values,
            "error_rate": values,
            "wall_s": values,
            "at": stamps[:-1] + [None],
            "day": [date(2026, 11, i % 28 + 1) for i in range(n)],
            "naive": [datetime(2026, 1, 1, 0, 0, 0, i * 1000) for i in range(n)],
            "name": ["x" * 61, "é" * 60, "", None, "a,b", 'q"q', *["t"] * (n - 6)],
            "flag": [True, False, None] * (n // 3),
            "n": list(range(-3, n - 3)),
            "tools": [["shell", "apply_patch"], [], None, ["x"], *[["y", None]] * (n - 4)],
        }
    )


def _rounded_like_before(frame: pl.DataFrame) -> pl.DataFrame:
    """The old table path: Polars round (4/3/1 decimals by name), lists joined."""
    return frame.with_columns(
        [
            pl.col(n).round(4 if ("cost" in n or "usd" in n) else (3 if "rate" in n or "ratio" in n else 1))
            for n, t in frame.schema.items()
            if t == pl.Float64
        ]
        + [
            pl.col(n).list.eval(pl.element().cast(pl.String)).list.join(",").alias(n)
            for n, t in frame.schema.items()
            if isinstance(t, pl.List)
        ]
    )


def test_table_matches_the_polars_rendering() -> None:
    frame = _tricky_frame()
    with pl.Config(**_POLARS_TABLE):
        before = str(_rounded_like_before(frame)) + "\n"
    assert report.render_table(frame.columns, frame.rows()) == before
    assert "0.4 " in before and "1.2346e7" in before and "..." in before  # the cases are exercised
    assert report.render_table(frame.columns, []) == "(no traces in this range)\n"


def test_csv_and_json_match_polars() -> None:
    frame = _tricky_frame()
    joined = pl.col("tools").list.eval(pl.element().cast(pl.String)).list.join(",")
    before = frame.with_columns(joined).write_csv()
    after = report.render_csv(frame.columns, frame.rows())
    # one deliberate difference: an empty string is an empty field, as NULL is (Polars wrote "")
    empty = re.compile(r'(?<=,)""(?=,|\n)')
    assert len(empty.findall(before)) == 2 and after == empty.sub("", before)
    assert '"a,b"' in after and '"q""q"' in after and "1e-7" in after and "0.000045" in after
    rows = list(csv.reader(io.StringIO(after)))
    assert rows[1][frame.columns.index("tools")] == "shell,apply_patch"
    dumped = json.dumps(frame.to_dicts(), default=report._json_default, indent=1) + "\n"
    assert report.render_json(frame.columns, frame.rows()) == dumped


def test_float_text_forms() -> None:
    table_forms = (1000.0, 0.0069, 1e6, 12345678.9, 1e-7, 1.5e-7, float("nan"))
    assert [report._table_float(v) for v in table_forms] == [
        "1000.0",
        "0.0069",
        "1e6",
        "1.2346e7",
        "0.0000001",
        "1.5000e-7",
        "NaN",
    ]
    assert [report._csv_float(v) for v in (1e-7, 4.5e-5, 1e16, 0.1 + 0.2)] == [
        "1e-7",
        "0.000045",
        "1e+16",
        "0.30000000000000004",
    ]
    assert report._round(0.35, 1) == 0.4 and math.copysign(1, report._round(-0.01, 1)) == -1


# -- old files without newer columns ---------------------------------------------------------------


def test_report_over_old_files_answers_with_nulls(old_only: Path) -> None:
    day = ["--since", "2026-11-03", "--until", "2026-11-03"]
    spend = json.loads(cli("spend", "--traces", str(old_only), "--by", "team,tag:env", *day, "--format", "json").stdout)  # fmt: skip
    infra = next(r for r in spend if r["team"] == "infra")
    assert infra["tag:env"] is None  # no tags column: NULL, not an error
    assert infra["reasoning_tokens"] == 0 and infra["output_tokens"] == 1000
    assert infra["cost_usd"] == pytest.approx(0.095) and infra["requests"] == 4
    errs = list(csv.DictReader(io.StringIO(cli("errors", "--traces", str(old_only), "--by", "team", *day, "--format", "csv").stdout)))  # fmt: skip
    infra_errs = next(r for r in errs if r["team"] == "infra")
    assert (infra_errs["guardrail_flagged"], infra_errs["guardrail_blocked"], infra_errs["refused"]) == (
        "0",
        "0",
        "1",
    )
    assert cli("guardrails", "--traces", str(old_only), *day).stdout == "(no traces in this range)\n"


def test_store_completes_an_old_relation_once(old_only: Path) -> None:
    store = TraceStore(old_only)
    plain = store.relation(D2, None)
    assert "CAST(NULL" not in plain  # the fast path: no DESCRIBE, no schema
    statement = queries.spend_statement(store, ["team", "tag:env"], D2, None)
    columns, rows = statement.rows()
    frame = queries.spend_statement(store, ["team", "tag:env"], D2, None).frame()
    assert columns == frame.columns and rows == frame.rows()
    assert frame.schema["tag:env"] == pl.String  # a typed NULL column, not a Null one
    # the store now knows these files are old: the next relation comes completed at once
    completed = store.relation(D2, None)
    assert completed.startswith("(SELECT *, CAST(NULL") and plain in completed
    assert store.query_rows(f"SELECT count(tags) AS n FROM {completed}") == (["n"], [(0,)])
    # a relation already completed inside the SQL is not completed twice
    both = f"SELECT count(*) AS n FROM {completed} a JOIN {plain} b USING (trace_id) WHERE b.tags IS NULL"
    assert store.query_rows(both) == (["n"], [(5,)])
    # a genuine binding error is still an error
    with pytest.raises(duckdb.BinderException):
        store.query_rows(f"SELECT no_such_column FROM {plain}")
    store.close()
