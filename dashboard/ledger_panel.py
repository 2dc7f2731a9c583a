"""Live ledger status (what the gateway enforces right now) for the Attribution page, next to the
spend derived from the traces: per limited level the viewer may see, the budget, spent, reserved
(calls in flight), remaining and reset time, and the RPM/TPM/concurrency in use.

The ledger is the gateway's: ``$CODEXGATE_LEDGER`` (a SQLite file or ``redis://`` URL), else
``ledger.sqlite3`` beside the live traces directory (the gateway's default). Read-only use: a
status read only expires reservations whose TTL has passed, as every ledger client does.

Visibility follows the viewer's scope: an org admin sees every level of the org; a team admin the
team and its keys; a developer their own developer level and keys.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from analytics.access import ViewerScope
from codexgate.core.vault import Vault
from codexgate.limits.config import Level, LimitsError, config_of
from codexgate.limits.ledger import open_ledger

LEDGER_ENV = "CODEXGATE_LEDGER"


def ledger_target(traces_dir: str | Path) -> str:
    return os.environ.get(LEDGER_ENV) or str(Path(traces_dir).expanduser().resolve().parent / "ledger.sqlite3")


def visible(level: Level, vault: Vault, scope: ViewerScope) -> bool:
    """Whether ``scope`` may see ``level`` (levels wider than the viewer's scope are hidden)."""
    if scope.unrestricted:
        return True
    if level.level == "key":
        key = vault.keys.get(level.scope)
        return key is not None and scope.allows(key.org, key.team, key.developer)
    org, _, rest = level.scope.partition("/")
    if level.level == "team":
        return scope.developer is None and scope.allows(org, rest, None)
    if level.level == "developer":
        return scope.team is None and scope.allows(org, None, rest)
    return scope.team is None and scope.developer is None and scope.allows(org, None, None)  # org, project


def ledger_rows(vault: Vault, scope: ViewerScope, target: str, now: datetime | None = None) -> list[dict[str, Any]]:
    """One dict per visible limited level (``LevelStatus.to_dict``). Raises ``LimitsError`` for an
    invalid limits section and the ledger's own errors when it cannot be read."""
    levels = [lv for lv in config_of(vault).all_levels(vault) if visible(lv, vault, scope)]
    if not levels:
        return []

    async def read() -> list[dict[str, Any]]:
        ledger = open_ledger(target)
        try:
            return [s.to_dict() for s in await ledger.status(levels, now or datetime.now(UTC))]
        finally:
            await ledger.close()

    return asyncio.run(read())


def render(scope: ViewerScope) -> None:
    """Streamlit section "Live limits (ledger)"; one line of explanation instead of a traceback."""
    import streamlit as st

    from dashboard import auth, data

    st.header("Live limits (ledger)")
    try:
        vault = auth.load_vault()
    except Exception as exc:  # noqa: BLE001 - unreadable vault: one line
        st.info(f"The vault cannot be read: {exc}")
        return
    if vault is None:
        st.info("Set CODEXGATE_VAULT and its key to see the limits the gateway enforces.")
        return
    target = ledger_target(data.live_traces_dir())
    if not target.startswith(("redis://", "rediss://", "unix://")) and not Path(target).exists():
        st.info(f"No ledger at {target} yet (the gateway creates it; or set {LEDGER_ENV}).")
        return
    try:
        rows = ledger_rows(vault, scope, target)
    except LimitsError as exc:
        st.error(f"The vault's limits section is invalid: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - ledger unreachable: one line
        st.error(f"The ledger cannot be read ({type(exc).__name__}).")
        return
    if not rows:
        st.info("No limits apply to what you can see.")
        return
    for r in rows:
        if r["budget_usd"] is None:
            continue
        used = r["used_fraction"] or 0.0
        resets = r["resets_at"] or "never (total)"
        st.progress(
            min(1.0, max(0.0, used)),
            text=f"{r['level']} · {r['period']} budget ${r['budget_usd']:,.2f}: ${r['spent_usd']:,.4f} spent, "
            f"${r['reserved_usd']:,.4f} in flight ({used:.0%}) · resets {resets}",
        )
    st.dataframe(rows, hide_index=True, width="stretch")
