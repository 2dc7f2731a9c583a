"""The embedded ledger: one SQLite file in WAL mode (the gateway's default: ``ledger.sqlite3`` beside
the traces directory, i.e. ``codexgate-data/ledger.sqlite3``).

All SQLite work runs in ONE dedicated worker thread that owns the connection; the async methods
hand it work and await the result, so mitmproxy's event loop never blocks on the file. Every
mutation is one ``BEGIN IMMEDIATE`` transaction, which takes SQLite's write lock up front: two
gateway processes sharing the file (or the CLI) serialise on it, so the check-and-reserve is
atomic across processes too. Durability: with the default ``synchronous=NORMAL`` (WAL) every
committed reservation and settlement is in the WAL file when ``reserve``/``settle`` return, so it
survives SIGKILL of the gateway and a restart reads the same spend; only an OS crash or power
loss can roll back the last commits (which ``ledger rebuild`` recovers from the traces).
``durability="full"`` (``synchronous=FULL``) also survives power loss, at one fsync per call.

Tables: ``spend(level, period_start, spent_usd)``; ``reservations(res_id, level, period_start,
cost_usd, tokens, created, expires, owner)`` — one row per level; ``events(level, ts, tokens,
res_id)`` — the sliding RPM/TPM window, with ``rate_totals(level, requests, tokens)`` kept equal
to its count and token sum so a check never scans the window; ``expired(res_id, level, period_start, cost_usd,
expired_at)`` — estimates charged for reservations whose owner never settled.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from codexgate.limits.config import Level
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import (
    RATE_WINDOW_SECONDS,
    Denial,
    Ledger,
    LevelState,
    LevelStatus,
    LevelWindow,
    Reservation,
    _aware,
    check_level,
    level_windows,
    make_status,
    new_reservation_id,
)

T = TypeVar("T")

_ADD_SPEND = (
    "INSERT INTO spend (level, period_start, spent_usd) VALUES (?, ?, ?) "
    "ON CONFLICT (level, period_start) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd"
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spend (
  level TEXT NOT NULL, period_start INTEGER NOT NULL, spent_usd REAL NOT NULL DEFAULT 0,
  PRIMARY KEY (level, period_start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservations (
  res_id TEXT NOT NULL, level TEXT NOT NULL, period_start INTEGER NOT NULL, cost_usd REAL NOT NULL,
  tokens INTEGER NOT NULL, created REAL NOT NULL, expires REAL NOT NULL, owner TEXT NOT NULL,
  PRIMARY KEY (res_id, level)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_level ON reservations (level);
CREATE INDEX IF NOT EXISTS reservations_expires ON reservations (expires);
CREATE TABLE IF NOT EXISTS events (level TEXT NOT NULL, ts REAL NOT NULL, tokens INTEGER NOT NULL,
  res_id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_level_ts ON events (level, ts);
CREATE INDEX IF NOT EXISTS events_res ON events (res_id);
CREATE TABLE IF NOT EXISTS rate_totals (level TEXT PRIMARY KEY, requests INTEGER NOT NULL,
  tokens INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expired (res_id TEXT NOT NULL, level TEXT NOT NULL, period_start INTEGER NOT NULL,
  cost_usd REAL NOT NULL, expired_at REAL NOT NULL, PRIMARY KEY (res_id, level)) WITHOUT ROWID;
"""


class SqliteLedger(Ledger):
    """SQLite ledger at ``path``. Invariant: ``self._conn`` is created, used and closed only
    in the single worker thread of ``self._pool``."""

    def __init__(
        self, path: str | os.PathLike[str], *, ttl_seconds: float = 900.0, durability: str = "normal"
    ) -> None:
        if durability not in ("normal", "full"):
            raise ValueError(f"durability must be 'normal' or 'full', not {durability!r}")
        self.durability = durability
        self.path = Path(path)
        self.ttl_seconds = float(ttl_seconds)
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="codexgate-ledger")
        self._closed = False
        self._pool.submit(self._open).result()  # fail fast (unwritable directory) at construction

    # ------------------------------------------------------------------ worker thread
    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=True)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.durability.upper()}")
        conn.executescript(_SCHEMA)
        self._conn = conn
        self._thread = threading.get_ident()

    @staticmethod
    def _tx(conn: sqlite3.Connection, fn: Callable[[], T]) -> T:
        conn.execute("BEGIN IMMEDIATE")
        try:
            out = fn()
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    def _expire(self, conn: sqlite3.Connection, now: float) -> int:
        rows = conn.execute(
            "SELECT res_id, level, period_start, cost_usd FROM reservations WHERE expires < ?", (now,)
        ).fetchall()
        for res_id, level, ps, cost in rows:
            self._add_spend(conn, level, ps, cost)
            conn.execute(
                "INSERT OR REPLACE INTO expired VALUES (?, ?, ?, ?, ?)", (res_id, level, ps, cost, now)
            )
        if rows:
            conn.execute("DELETE FROM reservations WHERE expires < ?", (now,))
        return len(rows)

    @staticmethod
    def _add_spend(conn: sqlite3.Connection, level: str, ps: int, amount: float) -> None:
        conn.execute(_ADD_SPEND, (level, ps, amount))

    @staticmethod
    def _states(conn: sqlite3.Connection, windows: list[LevelWindow], now: float) -> list[LevelState]:
        """Every level's state in five statements (a call's levels read together: each statement
        is a GIL round trip for the ledger thread, which competes with mitmproxy's loop)."""
        if not windows:
            return []
        ids = [w.level.id for w in windows]
        marks = ",".join("?" * len(ids))
        cutoff = now - RATE_WINDOW_SECONDS
        old = conn.execute(
            f"SELECT level, COUNT(*), SUM(tokens) FROM events WHERE level IN ({marks}) AND ts <= ? GROUP BY level",
            (*ids, cutoff),
        ).fetchall()
        if old:  # the sliding window moved: drop what left it and keep the totals equal to the window
            conn.execute(f"DELETE FROM events WHERE level IN ({marks}) AND ts <= ?", (*ids, cutoff))
            conn.executemany(
                "UPDATE rate_totals SET requests = requests - ?, tokens = tokens - ? WHERE level = ?",
                [(n, t, level) for level, n, t in old],
            )
        pairs = ",".join("(?, ?)" for _ in windows)
        spent = dict(
            conn.execute(
                f"SELECT level, spent_usd FROM spend WHERE (level, period_start) IN (VALUES {pairs})",
                [v for w in windows for v in (w.level.id, w.period_start)],
            ).fetchall()
        )
        held = {
            level: (reserved, n)
            for level, reserved, n in conn.execute(
                f"SELECT level, SUM(cost_usd), COUNT(*) FROM reservations WHERE level IN ({marks}) GROUP BY level",
                ids,
            ).fetchall()
        }
        totals = {
            level: (requests, tokens)
            for level, requests, tokens in conn.execute(
                f"SELECT level, requests, tokens FROM rate_totals WHERE level IN ({marks})", ids
            ).fetchall()
        }

        def events_of(level: str) -> Callable[[], list[tuple[float, int]]]:
            return lambda: conn.execute(
                "SELECT ts, tokens FROM events WHERE level = ? ORDER BY ts", (level,)
            ).fetchall()

        out = []
        for level in ids:
            reserved, concurrent = held.get(level, (0.0, 0))
            requests, tokens = totals.get(level, (0, 0))
            out.append(LevelState(spent.get(level, 0.0), reserved, concurrent, requests, tokens, events_of(level)))
        return out

    def _reserve(self, levels: list[Level], est: Estimate, now_dt: datetime) -> Reservation | Denial:
        conn = self._conn
        assert conn is not None
        now = now_dt.timestamp()
        windows = level_windows(levels, now_dt)

        def body() -> Reservation | Denial:
            self._expire(conn, now)
            states = self._states(conn, windows, now)
            for w, st in zip(windows, states, strict=True):
                denial = check_level(w, st, est, now)
                if denial is not None:
                    return denial
            res_id = new_reservation_id()
            conn.executemany(
                "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(res_id, w.level.id, w.period_start, est.cost_usd, est.tokens, now, now + self.ttl_seconds, self.owner)
                 for w in windows],
            )
            rated = [w.level.id for w in windows if w.level.limits.rpm is not None or w.level.limits.tpm is not None]
            if rated:
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?)", [(lv, now, est.tokens, res_id) for lv in rated])
                conn.executemany(
                    "INSERT INTO rate_totals VALUES (?, 1, ?) ON CONFLICT (level) DO UPDATE SET "
                    "requests = requests + 1, tokens = tokens + excluded.tokens",
                    [(lv, est.tokens) for lv in rated],
                )
            status = tuple(
                make_status(w, st.spent, st.reserved + est.cost_usd, st.requests + 1,
                            st.tokens + est.tokens, st.concurrent + 1)
                for w, st in zip(windows, states, strict=True)
            )
            return Reservation(
                res_id, tuple(levels), tuple(w.period_start for w in windows), est, now_dt, status
            )

        return self._tx(conn, body)

    def _settle(self, res: Reservation, cost: float | None, tokens: int) -> None:
        conn = self._conn
        assert conn is not None

        def body() -> None:
            held = {lv for (lv,) in conn.execute("SELECT level FROM reservations WHERE res_id = ?", (res.id,))}
            if cost:
                conn.executemany(
                    _ADD_SPEND,
                    [(lv.id, ps, cost) for lv, ps in zip(res.levels, res.period_starts, strict=True) if lv.id in held],
                )
            if len(held) < len(res.levels):  # expired before we settled: its estimate was charged; correct it
                mine = {lv.id for lv in res.levels} - held
                exp = [
                    (lv, ps, charged)
                    for lv, ps, charged in conn.execute(
                        "SELECT level, period_start, cost_usd FROM expired WHERE res_id = ?", (res.id,)
                    ).fetchall()
                    if lv in mine
                ]
                if exp:
                    conn.executemany(_ADD_SPEND, [(lv, ps, (cost or 0.0) - charged) for lv, ps, charged in exp])
                    conn.executemany(
                        "DELETE FROM expired WHERE res_id = ? AND level = ?", [(res.id, lv) for lv, _, _ in exp]
                    )
            if held:
                conn.execute("DELETE FROM reservations WHERE res_id = ?", (res.id,))
            new = max(0, int(tokens))
            moved = conn.execute("SELECT level, tokens FROM events WHERE res_id = ?", (res.id,)).fetchall()
            if moved:
                conn.executemany(
                    "UPDATE rate_totals SET tokens = tokens + ? WHERE level = ?", [(new - old, lv) for lv, old in moved]
                )
                conn.execute("UPDATE events SET tokens = ? WHERE res_id = ?", (new, res.id))

        self._tx(conn, body)

    def _status(self, levels: list[Level], now_dt: datetime) -> list[LevelStatus]:
        conn = self._conn
        assert conn is not None
        now = now_dt.timestamp()

        def body() -> list[LevelStatus]:
            self._expire(conn, now)
            out = []
            windows = level_windows(levels, now_dt)
            for w, st in zip(windows, self._states(conn, windows, now), strict=True):
                out.append(make_status(w, st.spent, st.reserved, st.requests, st.tokens, st.concurrent))
            return out

        return self._tx(conn, body)

    def _set_spent(self, level: str, ps: int, amount: float) -> None:
        conn = self._conn
        assert conn is not None

        def body() -> None:
            conn.execute(
                "INSERT INTO spend VALUES (?, ?, ?) ON CONFLICT (level, period_start) "
                "DO UPDATE SET spent_usd = excluded.spent_usd",
                (level, ps, amount),
            )
            conn.execute("DELETE FROM expired WHERE level = ? AND period_start = ?", (level, ps))

        self._tx(conn, body)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------------ async API
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise RuntimeError("ledger is closed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def reserve(self, levels: list[Level], estimate: Estimate, now: datetime) -> Reservation | Denial:
        return await self._run(self._reserve, levels, estimate, _aware(now))

    async def settle(self, reservation: Reservation, actual_cost_usd: float | None, actual_tokens: int) -> None:
        await self._run(self._settle, reservation, actual_cost_usd, actual_tokens)

    async def release(self, reservation: Reservation) -> None:
        await self._run(self._settle, reservation, 0.0, 0)

    async def status(self, levels: list[Level], now: datetime) -> list[LevelStatus]:
        return await self._run(self._status, levels, _aware(now))

    async def expire_stale(self, now: datetime) -> int:
        return await self._run(self._expire_stale, _aware(now))

    def _expire_stale(self, now_dt: datetime) -> int:
        conn = self._conn
        assert conn is not None
        return self._tx(conn, lambda: self._expire(conn, now_dt.timestamp()))

    async def set_spent(self, level_id: str, period_start: int, spent_usd: float) -> None:
        await self._run(self._set_spent, level_id, period_start, spent_usd)

    async def close(self) -> None:
        if not self._closed:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
            self._closed = True
            self._pool.shutdown(wait=True)
