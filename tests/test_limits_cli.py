"""``codexgate limits set|show|clear|status`` and ``codexgate ledger rebuild`` through the real
console script, against a real vault, a real SQLite ledger and real Parquet traces."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from codexgate.core.schema import partition_date, to_table
from codexgate.core.vault import Vault, load_secret
from codexgate.limits.config import Settings, config_of, levels_for_key
from codexgate.limits.estimate import estimate_call
from codexgate.limits.ledger import Reservation
from codexgate.limits.sqlite_ledger import SqliteLedger
from tests.helpers.cli import CODEXGATE, Cli, one_line_error


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> tuple[Cli, str]:
    c = Cli(tmp_path_factory.mktemp("limits"))
    c("init")
    c("team", "add", "acme/core", "--budget-usd", "25", "--budget-period", "week")
    c("team", "add", "acme/other")
    out = c("key", "create", "--team", "acme/core", "--project", "web", "--developer", "alice", "--json").stdout
    return c, json.loads(out)["key_id"]


def test_set_show_keeps_legacy_budgets_and_stores_the_section(cli: tuple[Cli, str]) -> None:
    c, key_id = cli
    c("limits", "set", "--team", "acme/core", "--rpm", "60", "--tz", "America/Los_Angeles")
    c("limits", "set", "--key", key_id, "--budget-usd", "0.5", "--period", "day", "--max-concurrent", "3")
    c("limits", "set", "--org", "acme", "--budget-usd", "100", "--period", "month", "--tpm", "100000")
    c("limits", "set", "--developer", "acme/alice", "--rpm", "30", "--soft-threshold", "0.9")
    shown = json.loads(c("limits", "show", "--json").stdout)
    assert shown["team:acme/core"] == {
        "budget_usd": 25.0, "period": "week", "tz": "America/Los_Angeles", "rpm": 60, "soft_threshold": 0.8,
    }
    assert shown[f"key:{key_id}"]["budget_usd"] == 0.5 and shown[f"key:{key_id}"]["max_concurrent"] == 3
    assert shown["developer:acme/alice"]["soft_threshold"] == 0.9
    text = c("limits", "show", "--team", "acme/core").stdout
    assert text.startswith("team:acme/core ") and "rpm=60" in text
    v = c.load()
    section = v.sections["limits"]
    assert set(section["levels"]) == {"team:acme/core", f"key:{key_id}", "org:acme", "developer:acme/alice"}
    # the team's own budget stays where `team add` put it, and still applies
    assert "budget_usd" not in section["levels"]["team:acme/core"]
    levels = {lv.id: lv for lv in levels_for_key(v, v.keys[key_id])}
    assert list(levels) == ["org:acme", "team:acme/core", "developer:acme/alice", f"key:{key_id}"]
    assert levels["team:acme/core"].limits.budget_usd == 25.0


def test_status_and_rebuild_from_traces(cli: tuple[Cli, str]) -> None:
    c, key_id = cli
    c("limits", "set", "--key", key_id, "--budget-usd", "0.5", "--period", "day")
    v = c.load()
    key = v.keys[key_id]
    levels = levels_for_key(v, key)
    now = datetime.now(UTC)
    est = estimate_call(20_000, {"max_output_tokens": 500}, "gpt-5", "openai", config_of(v).settings)

    async def serve() -> None:  # what the addon does for one call, then one call still in flight
        ledger = SqliteLedger(c.ledger)
        try:
            r = await ledger.reserve(levels, est, now)
            assert isinstance(r, Reservation)
            await ledger.settle(r, 0.0123, 4000)
            assert isinstance(await ledger.reserve(levels, est, now), Reservation)
        finally:
            await ledger.close()

    asyncio.run(serve())
    status = {s["level"]: s for s in json.loads(c("limits", "status", "--json").stdout)}
    k = status[f"key:{key_id}"]
    assert k["spent_usd"] == pytest.approx(0.0123) and k["reserved_usd"] == pytest.approx(est.cost_usd)
    assert k["remaining_usd"] == pytest.approx(0.5 - 0.0123 - est.cost_usd)
    assert k["concurrent"] == 1 and k["resets_at"] is not None
    assert status["developer:acme/alice"]["requests_in_window"] == 2
    text = c("limits", "status", "--key", key_id).stdout
    assert text.startswith(f"key:{key_id}") and "budget=0.5000/day" in text

    # traces: two priced calls today, one unpriced (fallback rate), one yesterday, one of another team
    t = c.root / "traces"
    fallback = Settings().fallback_usd_per_1k_tokens
    ident = {"org": "acme", "team": "core", "project": "web", "developer": "alice", "key_id": key_id}
    start = now - timedelta(seconds=5)
    rows = [
        {**ident, "cost_usd": 0.2, "start": start},
        {**ident, "cost_usd": 0.05, "start": start},
        {**ident, "cost_usd": None, "tokens": (1500, 500), "start": start},
        {**ident, "cost_usd": 0.3, "start": start - timedelta(days=1)},
        {**ident, "team": "other", "key_id": "k_other", "cost_usd": 1.0, "start": start},
    ]
    table_rows = []
    for i, r in enumerate(rows):
        tin, tout = r.pop("tokens", (100, 10))
        at = r.pop("start")
        table_rows.append({
            **r, "trace_id": f"t{i}", "start_time": at, "end_time": at + timedelta(seconds=1), "duration_ms": 1000.0,
                "outcome": "ok",
            "status_code": 200, "gen_ai_usage_input_tokens": tin, "gen_ai_usage_output_tokens": tout,
            "cost_known": r["cost_usd"] is not None,
        })
    for i, r in enumerate(table_rows):
        d = t / f"date={partition_date(r)}"
        d.mkdir(parents=True, exist_ok=True)
        pq.write_table(to_table([r]), d / f"part-{i}.parquet")
    rebuilt = {r["level"]: r for r in json.loads(c("ledger", "rebuild", "--traces", str(t), "--json").stdout)}
    day_start = datetime(now.year, now.month, now.day, tzinfo=UTC)
    expected_key = sum(
        r["cost_usd"] if r["cost_usd"] is not None
        else (r["gen_ai_usage_input_tokens"] + r["gen_ai_usage_output_tokens"]) / 1000 * fallback
        for r in table_rows if r["key_id"] == key_id and r["start_time"] >= day_start
    )
    assert rebuilt[f"key:{key_id}"]["spent_usd"] == pytest.approx(expected_key)
    expected_org = sum(
        r["cost_usd"] or (r["gen_ai_usage_input_tokens"] + r["gen_ai_usage_output_tokens"]) / 1000 * fallback
        for r in table_rows if r["start_time"] >= datetime(now.year, now.month, 1, tzinfo=UTC)
    )
    assert rebuilt["org:acme"]["spent_usd"] == pytest.approx(expected_org)
    after = {s["level"]: s for s in json.loads(c("limits", "status", "--json").stdout)}
    assert after[f"key:{key_id}"]["spent_usd"] == pytest.approx(expected_key)
    assert after[f"key:{key_id}"]["reserved_usd"] == pytest.approx(est.cost_usd)  # in-flight stays held


def test_clear_removes_section_and_legacy_budget(cli: tuple[Cli, str]) -> None:
    c, key_id = cli
    c("limits", "set", "--team", "acme/other", "--rpm", "5")
    assert c("limits", "clear", "--team", "acme/other").stdout.strip() == "team:acme/other: cleared"
    c("limits", "set", "--team", "acme/core", "--rpm", "60")
    c("limits", "clear", "--team", "acme/core")
    shown = json.loads(c("limits", "show", "--json").stdout)
    assert "team:acme/core" not in shown and "team:acme/other" not in shown
    assert c.load().teams["acme/core"].budget_usd is None
    one_line_error(c("limits", "clear", "--team", "acme/core", ok=False), "team:acme/core has no limits")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["limits", "set", "--team", "acme/nope", "--rpm", "5"], ["unknown team 'acme/nope'"]),
        (["limits", "set", "--team", "acme", "--rpm", "5"], ["expected ORG/TEAM"]),
        (["limits", "set", "--org", "acme", "--rpm", "abc"], ["--rpm must be a positive whole number"]),
        (["limits", "set", "--org", "acme", "--tpm", "-3"], ["--tpm must be a positive"]),
        (["limits", "set", "--developer", "acme/bob", "--budget-usd", "5"], ["needs both --budget-usd and --period"]),
        (["limits", "set", "--org", "acme", "--budget-usd", "5", "--period", "fortnight"], ["unknown period"]),
        (["limits", "set", "--org", "acme", "--rpm", "5", "--tz", "Mars/Olympus"], ["unknown time zone"]),
        (["limits", "set", "--org", "acme", "--soft-threshold", "1.5"], ["soft threshold"]),
        (["limits", "set", "--org", "acme"], ["nothing to set"]),
        (["limits", "status", "--ledger", "/nonexistent/ledger.sqlite3"], ["does not exist"]),
        (["limits", "status", "--ledger", "redis://127.0.0.1:1/0"], ["cannot be read"]),
        (["ledger", "rebuild", "--traces", "/nonexistent/traces"], ["does not exist"]),
    ],
)
def test_bad_input_is_one_line(cli: tuple[Cli, str], args: list[str], fragments: list[str]) -> None:
    c, _ = cli
    if args[0] == "limits" and args[1] == "status":
        c("limits", "set", "--org", "acme", "--rpm", "50")
    one_line_error(c(*args, ok=False), *fragments)


def test_set_show_clear_through_the_admin_api(tmp_path: Path) -> None:
    """``--admin-url``: set/show/clear go through the real admin API (role-checked, audited);
    status refuses it with one line."""
    from tests.test_admin_api import start_admin

    admin = start_admin(tmp_path)
    try:
        def run(role: str, *args: str) -> subprocess.CompletedProcess[str]:
            env = {k: v for k, v in os.environ.items() if not k.startswith("CODEXGATE_")}
            env.update(CODEXGATE_ADMIN_URL=admin.url, CODEXGATE_ADMIN_CREDENTIAL=admin.creds[role])
            return subprocess.run([CODEXGATE, "limits", *args], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=60)

        audited = admin.audit_count()
        r = run("team_admin", "set", "--team", "acme/platform", "--rpm", "30")
        assert r.returncode == 0, r.stderr
        r = run("team_admin", "set", "--team", "acme/platform", "--budget-usd", "5", "--period", "day")
        assert r.returncode == 0, r.stderr  # merged with the rpm set before
        stored = Vault.load(admin.vault_path, load_secret(admin.key_file)).sections["limits"]["levels"]
        assert stored["team:acme/platform"] == {"rpm": 30, "budget_usd": 5.0, "period": "day", "tz": "UTC",
                                               "soft_threshold": 0.8}
        assert admin.audit_count() == audited + 2
        shown = run("team_admin", "show", "--json")
        assert json.loads(shown.stdout)["team:acme/platform"]["rpm"] == 30
        # a team admin may not set an org-wide budget; the API's refusal is one line (exit 3)
        r = run("team_admin", "set", "--org", "acme", "--budget-usd", "100", "--period", "month")
        assert r.returncode == 3
        one_line_error(r, "403")
        # an invalid value never reaches the API
        one_line_error(run("org_admin", "set", "--org", "acme", "--rpm", "0"), "--rpm")
        assert run("team_admin", "clear", "--team", "acme/platform").returncode == 0
        stored = Vault.load(admin.vault_path, load_secret(admin.key_file)).sections["limits"]["levels"]
        assert "team:acme/platform" not in stored
        one_line_error(run("team_admin", "clear", "--team", "acme/platform"), "no entry")
        one_line_error(run("org_admin", "status"), "drop --admin-url")
    finally:
        admin.stop()
