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
    Reservation,
    _aware,
    check_level,
    level_windows,
    make_status,
    new_reservation_id,
)

T = TypeVar("T")

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
        conn.execute(
            "INSERT INTO spend (level, period_start, spent_usd) VALUES (?, ?, ?) "
            "ON CONFLICT (level, period_start) DO UPDATE SET spent_usd = spent_usd + excluded.spent_usd",
            (level, ps, amount),
        )

    @staticmethod
    def _state(conn: sqlite3.Connection, level: str, ps: int, now: float) -> LevelState:
        cutoff = now - RATE_WINDOW_SECONDS
        old_n, old_t = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(tokens), 0) FROM events WHERE level = ? AND ts <= ?", (level, cutoff)
        ).fetchone()
        if old_n:
            conn.execute("DELETE FROM events WHERE level = ? AND ts <= ?", (level, cutoff))
            conn.execute(
                "UPDATE rate_totals SET requests = requests - ?, tokens = tokens - ? WHERE level = ?",
                (old_n, old_t, level),
            )
        spent = conn.execute(
            "SELECT spent_usd FROM spend WHERE level = ? AND period_start = ?", (level, ps)
        ).fetchone()
        reserved, concurrent = conn.execute(
            "SELECT COALESCE(SUM(cost_usd), 0), COUNT(*) FROM reservations WHERE level = ?", (level,)
        ).fetchone()
        totals = conn.execute("SELECT requests, tokens FROM rate_totals WHERE level = ?", (level,)).fetchone()
        requests, tokens = totals or (0, 0)

        def events() -> list[tuple[float, int]]:
            return conn.execute("SELECT ts, tokens FROM events WHERE level = ? ORDER BY ts", (level,)).fetchall()

        return LevelState(spent[0] if spent else 0.0, reserved, concurrent, requests, tokens, events)

    def _reserve(self, levels: list[Level], est: Estimate, now_dt: datetime) -> Reservation | Denial:
        conn = self._conn
        assert conn is not None
        now = now_dt.timestamp()
        windows = level_windows(levels, now_dt)

        def body() -> Reservation | Denial:
            self._expire(conn, now)
            states = []
            for w in windows:
                st = self._state(conn, w.level.id, w.period_start, now)
                denial = check_level(w, st, est, now)
                if denial is not None:
                    return denial
                states.append(st)
            res_id = new_reservation_id()
            status = []
            for w, st in zip(windows, states, strict=True):
                lim = w.level.limits
                conn.execute(
                    "INSERT INTO reservations VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (res_id, w.level.id, w.period_start, est.cost_usd, est.tokens, now,
                     now + self.ttl_seconds, self.owner),
                )
                if lim.rpm is not None or lim.tpm is not None:
                    conn.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (w.level.id, now, est.tokens, res_id))
                    conn.execute(
                        "INSERT INTO rate_totals VALUES (?, 1, ?) ON CONFLICT (level) DO UPDATE SET "
                        "requests = requests + 1, tokens = tokens + excluded.tokens",
                        (w.level.id, est.tokens),
                    )
                status.append(
                    make_status(w, st.spent, st.reserved + est.cost_usd, st.requests + 1,
                                st.tokens + est.tokens, st.concurrent + 1)
                )
            return Reservation(
                res_id, tuple(levels), tuple(w.period_start for w in windows), est, now_dt, tuple(status)
            )

        return self._tx(conn, body)

    def _settle(self, res: Reservation, cost: float | None, tokens: int) -> None:
        conn = self._conn
        assert conn is not None

        def body() -> None:
            for lv, ps in zip(res.levels, res.period_starts, strict=True):
                held = conn.execute(
                    "SELECT 1 FROM reservations WHERE res_id = ? AND level = ?", (res.id, lv.id)
                ).fetchone()
                if held:
                    if cost:
                        self._add_spend(conn, lv.id, ps, cost)
                    continue
                exp = conn.execute(
                    "SELECT period_start, cost_usd FROM expired WHERE res_id = ? AND level = ?", (res.id, lv.id)
                ).fetchone()
                if exp:  # expired before we settled: its estimate was charged; correct it
                    self._add_spend(conn, lv.id, exp[0], (cost or 0.0) - exp[1])
                    conn.execute("DELETE FROM expired WHERE res_id = ? AND level = ?", (res.id, lv.id))
            conn.execute("DELETE FROM reservations WHERE res_id = ?", (res.id,))
            new = max(0, int(tokens))
            for level, old in conn.execute("SELECT level, tokens FROM events WHERE res_id = ?", (res.id,)).fetchall():
                conn.execute("UPDATE rate_totals SET tokens = tokens + ? WHERE level = ?", (new - old, level))
            conn.execute("UPDATE events SET tokens = ? WHERE res_id = ?", (new, res.id))

        self._tx(conn, body)

    def _status(self, levels: list[Level], now_dt: datetime) -> list[LevelStatus]:
        conn = self._conn
        assert conn is not None
        now = now_dt.timestamp()

        def body() -> list[LevelStatus]:
            self._expire(conn, now)
            out = []
            for w in level_windows(levels, now_dt):
                st = self._state(conn, w.level.id, w.period_start, now)
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
        def fn() -> int:
            conn = self._conn
            assert conn is not None
            return self._tx(conn, lambda: self._expire(conn, _aware(now).timestamp()))

        return await self._run(fn)

    async def set_spent(self, level_id: str, period_start: int, spent_usd: float) -> None:
        await self._run(self._set_spent, level_id, period_start, spent_usd)

    async def close(self) -> None:
        if not self._closed:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._close)
            self._closed = True
            self._pool.shutdown(wait=True)
