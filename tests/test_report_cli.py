"""``codexgate report ...`` as a real subprocess, in every format, on the fixed analytics dataset."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
from pathlib import Path

import polars as pl
import pytest

from tests.helpers.analytics_data import write_fixture

ROOT = Path(__file__).resolve().parents[1]
CODEXGATE = ROOT / ".venv" / "bin" / "codexgate"
RANGE = ["--since", "2026-11-01", "--until", "2026-11-03"]  # a bare --until date includes that day


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("report") / "traces")


def run(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if k != "CODEXGATE_TRACES"}
    full_env.update(env or {})
    return subprocess.run(
        [str(CODEXGATE), "report", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=120
    )


def ok(*args: str, **kw) -> str:
    proc = run(*args, **kw)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_spend_csv(traces: Path) -> None:
    rows = {
        r["team"]: r
        for r in csv_rows(ok("spend", "--traces", str(traces), "--by", "team", *RANGE, "--format", "csv"))
    }
    assert set(rows) == {"payments", "infra", ""}
    assert float(rows["payments"]["cost_usd"]) == pytest.approx(0.061)
    assert rows["payments"]["unpriced_requests"] == "1" and rows["payments"]["input_tokens"] == "7100"
    assert float(rows["infra"]["cost_usd"]) == pytest.approx(0.095)
    assert rows[""]["cost_usd"] == ""  # unpriced: empty, not 0


def test_spend_json_by_model_and_day(traces: Path) -> None:
    out = ok(
        "spend", "--traces", str(traces), "--by", "team,model", "--bucket", "day", *RANGE, "--format", "json"
    )
    rows = json.loads(out)
    day1 = [r for r in rows if r["bucket"].startswith("2026-11-02")]
    assert {r["model"] for r in day1} == {"gpt-5", "claude-sonnet-4-5", "devstral-internal"}
    gpt5 = next(r for r in day1 if r["model"] == "gpt-5")
    assert gpt5["cost_usd"] == pytest.approx(0.03) and gpt5["requests"] == 4 and gpt5["team"] == "payments"
    unpriced = next(r for r in day1 if r["model"] == "devstral-internal")
    assert unpriced["cost_usd"] is None and unpriced["unpriced_requests"] == 1


def test_spend_table_and_tags(traces: Path) -> None:
    out = ok("spend", "--traces", str(traces), "--by", "tag:env", *RANGE)
    lines = out.splitlines()
    assert lines[0].startswith("| tag:env") and "cost_usd" in lines[0]
    assert any(line.startswith("| dev ") and "0.125" in line for line in lines)
    assert "unpriced_input_tokens" not in out  # the table shows the main columns only


def test_spend_parquet_and_output_file(traces: Path, tmp_path: Path) -> None:
    target = tmp_path / "spend.parquet"
    assert ok("spend", "--traces", str(traces), *RANGE, "--format", "parquet", "--output", str(target)) == ""
    frame = pl.read_parquet(target)
    assert frame.filter(pl.col("team") == "infra")["cost_usd"][0] == pytest.approx(0.095)
    csv_file = tmp_path / "spend.csv"
    ok("spend", "--traces", str(traces), *RANGE, "--format", "csv", "-o", str(csv_file))
    assert {r["team"] for r in csv_rows(csv_file.read_text())} == {"payments", "infra", ""}
    proc = run("spend", "--traces", str(traces), "--format", "parquet")
    assert proc.returncode == 2 and "--output" in proc.stderr


def test_latency_errors_guardrails(traces: Path) -> None:
    lat = {r["model"]: r for r in json.loads(ok("latency", "--traces", str(traces), "--by", "model", *RANGE, "--format", "json"))}  # fmt: skip
    assert lat["gpt-5"]["duration_p50_ms"] == pytest.approx(1500)
    assert lat["gpt-5-codex"]["duration_p95_ms"] == pytest.approx(4900)
    errs = {r["team"]: r for r in csv_rows(ok("errors", "--traces", str(traces), "--by", "team", *RANGE, "--format", "csv"))}  # fmt: skip
    assert errs["payments"]["fallbacks"] == "1" and errs["infra"]["guardrail_blocked"] == "1"
    assert float(errs["payments"]["error_rate"]) == pytest.approx(1 / 7)
    reasons = json.loads(
        ok("errors", "--traces", str(traces), "--detail", "refusals", *RANGE, "--format", "json")
    )
    assert {r["refusal_reason"] for r in reasons} == {
        "model_not_allowed",
        "invalid_api_key",
        "guardrail_blocked",
    }
    codes = {r["status_code"]: r["requests"] for r in json.loads(ok("errors", "--traces", str(traces), "--detail", "status", *RANGE, "--format", "json"))}  # fmt: skip
    assert codes == {200: 8, 401: 1, 403: 2, 503: 1}
    guard = ok("guardrails", "--traces", str(traces), *RANGE)
    assert "PRIVATE_KEY" in guard and "blocked" in guard and "AWS_KEY" in guard


def test_sessions(traces: Path) -> None:
    top = json.loads(ok("sessions", "--traces", str(traces), "--limit", "2", *RANGE, "--format", "json"))
    assert [r["session_id"] for r in top] == ["s3", "s1"]
    calls = csv_rows(ok("sessions", "--traces", str(traces), "--session", "s1", "--format", "csv"))
    assert [r["call_index"] for r in calls] == ["0", "1", "2", "3"] and calls[0]["tool_names"] == "shell"
    turns = json.loads(
        ok("sessions", "--traces", str(traces), "--session", "s2", "--turns", "--format", "json")
    )
    assert [t["turn_id"] for t in turns] == ["t2", "t3"] and turns[1]["cost_usd"] is None
    table = ok("sessions", "--traces", str(traces), *RANGE, "--order", "calls")
    assert table.splitlines()[2].startswith("| s1 ")


def test_scope_flags(traces: Path) -> None:
    rows = csv_rows(ok("spend", "--traces", str(traces), "--by", "team,developer", "--org", "acme", "--team", "payments", *RANGE, "--format", "csv"))  # fmt: skip
    assert {r["team"] for r in rows} == {"payments"} and len(rows) == 2


def test_traces_from_env_and_default_folder(traces: Path, tmp_path: Path) -> None:
    out = ok("spend", *RANGE, "--format", "csv", env={"CODEXGATE_TRACES": str(traces)})
    assert len(csv_rows(out)) == 3
    write_fixture(tmp_path / "codexgate-data" / "traces")
    out = ok("spend", *RANGE, "--format", "csv", cwd=tmp_path)
    assert len(csv_rows(out)) == 3


def test_empty_range_prints_a_note(traces: Path) -> None:
    out = ok("spend", "--traces", str(traces), "--since", "2030-01-01")
    assert out.strip() == "(no traces in this range)"
    assert (
        json.loads(ok("latency", "--traces", str(traces), "--since", "2030-01-01", "--format", "json")) == []
    )


def test_user_errors_are_one_line(traces: Path, tmp_path: Path) -> None:
    missing = run("spend", "--traces", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"codexgate: error: traces folder not found: {tmp_path / 'nope'}"
    (tmp_path / "empty" / "date=2026-11-01").mkdir(parents=True)
    empty = run("latency", "--traces", str(tmp_path / "empty"))
    assert empty.returncode == 2 and empty.stderr.strip().startswith("codexgate: error: no trace files")
    assert len(empty.stderr.strip().splitlines()) == 1
    bad_by = run("spend", "--traces", str(traces), "--by", "team,secret_column")
    assert bad_by.returncode == 2 and "cannot group by 'secret_column'" in bad_by.stderr
    bad_time = run("spend", "--traces", str(traces), "--since", "last tuesday")
    assert bad_time.returncode == 2 and "cannot read time" in bad_time.stderr
    backwards = run("spend", "--traces", str(traces), "--since", "2026-11-03", "--until", "2026-11-01")
    assert backwards.returncode == 2 and "--since must be before --until" in backwards.stderr
    assert "Traceback" not in missing.stderr + empty.stderr + bad_by.stderr + bad_time.stderr


def _vault_with_budgets(folder: Path) -> tuple[Path, Path]:
    from codexgate.core.vault import Vault, generate_secret

    secret = generate_secret()
    key_file = folder / "vault.key"
    key_file.write_bytes(secret)
    vault = Vault()
    vault.add_team("acme", "payments", budget_usd=0.05, budget_period="week")
    vault.add_team("globex", "infra", budget_usd=1.0, budget_period="day")
    vault.add_team("globex", "research")  # no budget: not reported
    entry, _plain = vault.create_key(
        org="globex",
        team="infra",
        project="terraform",
        developer="carol",
        budget_usd=0.1,
        budget_period="day",
    )
    # the fixture's traces carry key_id "k_carol"; give the vault entry that id
    del vault.keys[entry.key_id]
    entry.key_id = "k_carol"
    vault.keys["k_carol"] = entry
    path = folder / "vault.enc"
    vault.save(path, secret)
    return path, key_file


def test_spend_against_vault_budgets(traces: Path, tmp_path: Path) -> None:
    vault, key_file = _vault_with_budgets(tmp_path)
    args = ["spend", "--traces", str(traces), "--vault", str(vault), "--as-of", "2026-11-03T13:00"]
    rows = {
        r["name"]: r for r in json.loads(ok(*args, "--vault-key-file", str(key_file), "--format", "json"))
    }
    assert set(rows) == {"acme/payments", "globex/infra", "k_carol"}
    assert rows["acme/payments"]["status"] == "exhausted" and rows["acme/payments"][
        "spent_usd"
    ] == pytest.approx(0.06)
    assert rows["globex/infra"]["status"] == "ok" and rows["globex/infra"]["projected_exhaustion"] is None
    assert rows["k_carol"]["status"] == "at_risk"
    assert rows["k_carol"]["projected_exhaustion"].startswith("2026-11-03T14:26:40")
    # the key may also come from the environment, as for the gateway
    table = ok(*args, env={"CODEXGATE_VAULT_KEY": key_file.read_text()})
    assert "exhausted" in table and "at_risk" in table
    wrong = run(*args, "--vault-key-file", str(traces / "date=2026-11-02" / "part-0.parquet"))
    assert wrong.returncode == 2 and wrong.stderr.startswith("codexgate: error: cannot open vault")
    assert len(wrong.stderr.strip().splitlines()) == 1
