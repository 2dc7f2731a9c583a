"""The dashboard's live ledger panel (``dashboard.ledger_panel``): a real vault with limits on
several levels, a real SQLite ledger with settled and in-flight calls, and what each viewer sees."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analytics.access import ViewerScope
from codexgate.core.vault import Team, Vault
from codexgate.limits.config import levels_for_key
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import Reservation, open_ledger
from dashboard.ledger_panel import ledger_rows, ledger_target, visible


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Vault, str, dict[str, str]]:
    vault = Vault()
    for team in ("core", "web"):
        vault.teams[f"acme/{team}"] = Team(org="acme", name=team)
    ids = {}
    for dev, team in (("ann", "core"), ("ben", "web")):
        entry, _ = vault.create_key(org="acme", team=team, project="p", developer=dev)
        ids[dev] = entry.key_id
    day = {"budget_usd": 2.0, "period": "day"}
    vault.sections["limits"] = {"version": 1, "levels": {
        "org:acme": {"budget_usd": 100.0, "period": "month"}, "team:acme/core": day, "team:acme/web": day,
        "developer:acme/ann": {"rpm": 60}, f"key:{ids['ann']}": day, f"key:{ids['ben']}": day,
    }}
    target = str(tmp_path / "ledger.sqlite3")

    async def traffic() -> None:
        ledger = open_ledger(target)
        now = datetime.now(UTC)
        try:
            levels = levels_for_key(vault, vault.keys[ids["ann"]])
            done = await ledger.reserve(levels, Estimate(100, 100, 0.5), now)
            assert isinstance(done, Reservation)
            await ledger.settle(done, 0.25, 150)
            assert isinstance(await ledger.reserve(levels, Estimate(100, 100, 0.5), now), Reservation)  # in flight
        finally:
            await ledger.close()

    asyncio.run(traffic())
    return vault, target, ids


def test_org_admin_sees_every_level_with_live_figures(setup) -> None:
    vault, target, ids = setup
    rows = {r["level"]: r for r in ledger_rows(vault, ViewerScope(org="acme"), target)}
    assert set(rows) == {"org:acme", "team:acme/core", "team:acme/web", "developer:acme/ann",
                         f"key:{ids['ann']}", f"key:{ids['ben']}"}
    ann = rows[f"key:{ids['ann']}"]
    assert ann["spent_usd"] == pytest.approx(0.25) and ann["reserved_usd"] == pytest.approx(0.5)
    assert ann["remaining_usd"] == pytest.approx(2.0 - 0.75) and ann["concurrent"] == 1
    assert rows["developer:acme/ann"]["requests_in_window"] == 2
    assert rows[f"key:{ids['ben']}"]["spent_usd"] == 0


def test_team_admin_and_developer_see_only_their_levels(setup) -> None:
    vault, target, ids = setup
    team = {r["level"] for r in ledger_rows(vault, ViewerScope(org="acme", team="web"), target)}
    assert team == {"team:acme/web", f"key:{ids['ben']}"}
    dev = {r["level"] for r in ledger_rows(vault, ViewerScope(org="acme", developer="ann"), target)}
    assert dev == {"developer:acme/ann", f"key:{ids['ann']}"}
    assert ledger_rows(vault, ViewerScope(org="other"), target) == []
    lv = next(lv for lv in levels_for_key(vault, vault.keys[ids["ann"]]) if lv.level == "org")
    assert visible(lv, vault, ViewerScope()) and not visible(lv, vault, ViewerScope(org="acme", team="core"))


def test_ledger_target_defaults_beside_the_traces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODEXGATE_LEDGER", raising=False)
    assert ledger_target(tmp_path / "data" / "traces") == str(tmp_path / "data" / "ledger.sqlite3")
    monkeypatch.setenv("CODEXGATE_LEDGER", "redis://127.0.0.1:6379/0")
    assert ledger_target(tmp_path / "data" / "traces") == "redis://127.0.0.1:6379/0"


def test_attribution_page_shows_the_live_ledger(setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real Attribution page (Streamlit AppTest, auth off = unrestricted) with a vault and the
    ledger beside the traces directory: the panel lists every limited level with its live spend."""
    from streamlit.testing.v1 import AppTest

    from analytics.synth import write_dataset
    from codexgate.core.vault import generate_secret

    vault, target, ids = setup
    data_dir = Path(target).parent
    write_dataset(data_dir / "traces", 50, seed=3)
    secret = generate_secret()
    (tmp_path / "vault.key").write_bytes(secret)
    vault.save(tmp_path / "vault.enc", secret)
    for k in ("CODEXGATE_LEDGER", "CODEXGATE_VAULT_KEY", "CODEXGATE_ADMIN_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("CODEXGATE_DASHBOARD_AUTH", "off")
    monkeypatch.setenv("CODEXGATE_TRACES", str(data_dir / "traces"))
    monkeypatch.setenv("CODEXGATE_VAULT", str(tmp_path / "vault.enc"))
    monkeypatch.setenv("CODEXGATE_VAULT_KEY_FILE", str(tmp_path / "vault.key"))
    page = Path(__file__).resolve().parents[1] / "dashboard" / "pages" / "attribution.py"
    at = AppTest.from_file(str(page), default_timeout=60).run()
    assert not at.exception
    assert "Live limits (ledger)" in [h.value for h in at.header]
    shown = at.dataframe[-1].value
    assert set(shown["level"]) >= {f"key:{ids['ann']}", "team:acme/core", "org:acme"}
    ann = shown[shown["level"] == f"key:{ids['ann']}"].iloc[0]
    assert ann["spent_usd"] == pytest.approx(0.25) and ann["reserved_usd"] == pytest.approx(0.5)
