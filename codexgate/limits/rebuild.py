"""``codexgate ledger rebuild``: recompute spend of every budget level's current window from the
Parquet traces, and overwrite the ledger's spend with it.

DuckDB reads ``TRACES/**/*.parquet`` with ``hive_partitioning=true, union_by_name=true``. A row
counts toward a level when its identity columns match the level's scope (see
``codexgate.limits.config``) and its ``start_time`` lies in ``[window start, window end)``. Its
cost is ``cost_usd``, or, when the model had no price (``cost_usd`` NULL), the configured fallback
rate times its input + output tokens — the same rule the gateway uses when it settles. Refusals
have no tokens and cost nothing.

This is how a reservation orphaned by a crash is reconciled to the truth: the expired estimate
is replaced by what the traces say. Run it while no gateway is serving the levels, or accept that
calls settled during the rebuild are counted once more or lost for that window.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path
from typing import Any

from codexgate.limits.config import Level, Settings
from codexgate.limits.ledger import Ledger, level_windows

_MATCH = {
    "org": ("org = ?", lambda s: [s]),
    "team": ("org = ? AND team = ?", lambda s: s.split("/", 1)),
    "project": ("org = ? AND project = ?", lambda s: s.split("/", 1)),
    "developer": ("org = ? AND developer = ?", lambda s: s.split("/", 1)),
    "key": ("key_id = ?", lambda s: [s]),
}


class RebuildError(Exception):
    """The traces cannot be read; one line."""


def spend_from_traces(
    traces: str | Path, levels: list[Level], now: datetime, settings: Settings
) -> list[dict[str, Any]]:
    """Spend and call count of each budget level's current window, from the traces (blocking)."""
    import duckdb

    root = Path(traces)
    if not root.is_dir():
        raise RebuildError(f"traces directory {root} does not exist")
    if not any(root.rglob("*.parquet")):
        raise RebuildError(f"no Parquet traces under {root}")
    glob = str(root / "**" / "*.parquet").replace("'", "''")
    con = duckdb.connect()
    try:
        con.execute(
            f"CREATE VIEW t AS SELECT * FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
        )
        out = []
        for w in level_windows([lv for lv in levels if lv.limits.budget_usd is not None], now):
            cond, params = _MATCH[w.level.level]
            start = datetime.fromtimestamp(w.period_start, now.tzinfo)
            where = f"{cond} AND start_time >= ?" + (" AND start_time < ?" if w.resets_at else "")
            args = [*params(w.level.scope), start] + ([w.resets_at] if w.resets_at else [])
            spent, calls = con.execute(
                "SELECT COALESCE(SUM(COALESCE(cost_usd, (COALESCE(gen_ai_usage_input_tokens, 0) "
                "+ COALESCE(gen_ai_usage_output_tokens, 0)) / 1000.0 * ?)), 0), COUNT(*) "
                f"FROM t WHERE {where}",
                [settings.fallback_usd_per_1k_tokens, *args],
            ).fetchone()
            out.append(
                {
                    "level": w.level.id,
                    "period_start": w.period_start,
                    "window_start": start.isoformat(),
                    "spent_usd": float(spent),
                    "calls": int(calls),
                }
            )
        return out
    except duckdb.Error as exc:
        raise RebuildError(f"cannot read traces under {root}: {str(exc).splitlines()[0]}") from None
    finally:
        con.close()


async def rebuild(
    ledger: Ledger, levels: list[Level], traces: str | Path, now: datetime, settings: Settings
) -> list[dict[str, Any]]:
    """Recompute and store the spend of each budget level's current window; returns the rows."""
    rows = await asyncio.to_thread(spend_from_traces, traces, levels, now, settings)
    for r in rows:
        await ledger.set_spent(r["level"], r["period_start"], r["spent_usd"])
    return rows
