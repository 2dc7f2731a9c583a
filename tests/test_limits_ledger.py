"""The limits ledger against real backends: a real SQLite file (WAL) and a real redis-server.
Every test runs on both; times are injected (``now``) except where real processes race."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import textwrap
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from codexgate.limits.config import Level, LevelLimits
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import RATE_WINDOW_SECONDS, Denial, Ledger, Reservation, codex_usage_headers
from codexgate.limits.redis_ledger import RedisLedger
from codexgate.limits.sqlite_ledger import SqliteLedger
from tests.helpers.redis import REDIS_SERVER, SKIP_REASON, redis_server

REPO = Path(__file__).resolve().parents[1]
PY = str(REPO / ".venv" / "bin" / "python")
T0 = datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if REDIS_SERVER is None:
        pytest.skip(SKIP_REASON)
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


Factory = Callable[..., Ledger]


@pytest.fixture(params=["sqlite", "redis"])
def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Factory, str]]:
    """(factory(ttl_seconds=...) -> a ledger on a fresh store, its target string)."""
    if request.param == "sqlite":
        target = str(tmp_path / "ledger.sqlite3")

        def factory(ttl_seconds: float = 900.0) -> Ledger:
            return SqliteLedger(target, ttl_seconds=ttl_seconds)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = f"t{time.monotonic_ns()}:"
        target = f"{url}|{prefix}"

        def factory(ttl_seconds: float = 900.0) -> Ledger:
            return RedisLedger(url, ttl_seconds=ttl_seconds, prefix=prefix)

    yield factory, target


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def team(name: str, **kw: object) -> Level:
    return Level("team", f"acme/{name}", LevelLimits(**kw))  # type: ignore[arg-type]


# ------------------------------------------------------------------ budget under concurrency


def test_50_concurrent_reservations_never_exceed_budget(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    est = Estimate(1000, 1000, 0.01)
    budget = 0.105  # fits 10 estimates, not 11
    levels = [Level("org", "acme", LevelLimits(budget_usd=10.0, period="day")), team("a", budget_usd=budget, period="day")]

    async def main() -> tuple[int, float, float, list[float]]:
        ledger = factory()
        try:
            # wave 1: 50 reservations at once; at most budget/estimate may be held
            results = await asyncio.gather(*[ledger.reserve(levels, est, T0) for _ in range(50)])
            held = [r for r in results if isinstance(r, Reservation)]
            (_, st) = await ledger.status(levels, T0)
            reserved_peak = st.reserved_usd
            assert all(r.level.id == "team:acme/a" and r.kind == "budget" for r in results if isinstance(r, Denial))
            # settle with real costs at 40-100 % of the estimate (the estimate bounds output), one at 150 %
            actuals = [est.cost_usd * (0.4 + 0.06 * i) for i in range(len(held))]
            actuals[-1] = est.cost_usd * 1.5
            await asyncio.gather(*[ledger.settle(r, c, 1500) for r, c in zip(held, actuals, strict=True)])
            # wave 2: 50 concurrent workers that each reserve and settle until refused
            async def worker(i: int) -> list[float]:
                spent = []
                while True:
                    r = await ledger.reserve(levels, est, T0)
                    if isinstance(r, Denial):
                        return spent
                    await asyncio.sleep(0.001 * (i % 3))
                    c = est.cost_usd * 0.7
                    await ledger.settle(r, c, 1000)
                    spent.append(c)

            more = await asyncio.gather(*[worker(i) for i in range(50)])
            (_, st) = await ledger.status(levels, T0)
            return len(held), reserved_peak, st.spent_usd, actuals + [c for w in more for c in w]
        finally:
            await ledger.close()

    n_held, reserved_peak, spent, all_costs = run(main())
    assert n_held == int(budget // est.cost_usd)
    assert reserved_peak <= budget + 1e-9
    assert spent == pytest.approx(sum(all_costs))
    assert spent <= budget + max(all_costs) + 1e-9


_WORKER = textwrap.dedent(
    """
    import asyncio, sys, json
    from datetime import datetime, UTC
    from codexgate.limits.config import Level, LevelLimits
    from codexgate.limits.estimate import Estimate
    from codexgate.limits.ledger import Reservation
    target, n, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    levels = [Level("team", "acme/shared", LevelLimits(budget_usd=0.105, period="total"))]
    est = Estimate(1000, 1000, 0.01)

    def make():
        if target.startswith("redis://"):
            from codexgate.limits.redis_ledger import RedisLedger
            url, prefix = target.split("|")
            return RedisLedger(url, prefix=prefix, ttl_seconds=float(sys.argv[4]) if len(sys.argv) > 4 else 900)
        from codexgate.limits.sqlite_ledger import SqliteLedger
        return SqliteLedger(target, ttl_seconds=float(sys.argv[4]) if len(sys.argv) > 4 else 900)

    async def main():
        ledger = make()
        now = datetime.now(UTC)
        if mode == "race":
            sys.stdout.write("ready\\n"); sys.stdout.flush(); sys.stdin.readline()
            rs = await asyncio.gather(*[ledger.reserve(levels, est, now) for _ in range(n)])
            held = [r for r in rs if isinstance(r, Reservation)]
            print(json.dumps({"held": len(held)}), flush=True)
            sys.stdin.readline()  # settle only once both processes have reserved
            await asyncio.gather(*[ledger.settle(r, 0.009, 1800) for r in held])
            print("settled", flush=True)
        else:  # "orphan": settle one call, reserve another, then wait to be killed
            r = await ledger.reserve(levels, est, now)
            await ledger.settle(r, 0.008, 1600)
            r2 = await ledger.reserve(levels, est, now)
            assert isinstance(r2, Reservation)
            print("reserved", flush=True)
            await asyncio.sleep(60)
        await ledger.close()
    asyncio.run(main())
    """
)


def _spawn(target: str, n: int, mode: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PY, "-c", _WORKER, target, str(n), mode, *extra],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
    )


def test_two_processes_share_one_budget(make_ledger: tuple[Factory, str]) -> None:
    factory, target = make_ledger
    run(_init(factory))  # the store exists before the workers start
    procs = [_spawn(target, 25, "race") for _ in range(2)]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready", p.stderr.read() if p.stderr else ""
    for p in procs:  # release both at once
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    held = []
    for p in procs:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line.startswith('{"held"'), (line, p.stderr.read() if p.stderr else "")
        held.append(json.loads(line)["held"])
    for p in procs:
        out, err = p.communicate("settle\n", timeout=60)
        assert p.returncode == 0 and out.strip() == "settled", err
    level = Level("team", "acme/shared", LevelLimits(budget_usd=0.105, period="total"))

    async def status() -> float:
        ledger = factory()
        try:
            (st,) = await ledger.status([level], datetime.now(UTC))
            return st.spent_usd
        finally:
            await ledger.close()

    spent = run(status())
    assert sum(held) == int(0.105 // 0.01), held  # 10 in total across both processes
    assert spent == pytest.approx(sum(held) * 0.009)


async def _init(factory: Factory) -> None:
    ledger = factory()
    await ledger.status([team("x", rpm=1)], T0)
    await ledger.close()


def test_sigkill_between_reserve_and_settle(make_ledger: tuple[Factory, str]) -> None:
    factory, target = make_ledger
    run(_init(factory))
    ttl = 5.0
    p = _spawn(target, 1, "orphan", str(ttl))
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "reserved", p.stderr.read() if p.stderr else ""
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
    level = Level("team", "acme/shared", LevelLimits(budget_usd=0.105, period="total"))

    async def after() -> tuple:
        ledger = factory(ttl_seconds=ttl)  # "restart"
        try:
            now = datetime.now(UTC)
            (before,) = await ledger.status([level], now)
            (expired,) = await ledger.status([level], now + timedelta(seconds=ttl + 1))
            return before, expired
        finally:
            await ledger.close()

    before, expired = run(after())
    # restart: the settled call's spend is kept, the orphan still holds its estimate
    assert before.spent_usd == pytest.approx(0.008)
    assert before.reserved_usd == pytest.approx(0.01) and before.concurrent == 1
    # past the TTL the orphan expires: its estimate is charged (conservative), nothing stays held
    assert expired.spent_usd == pytest.approx(0.008 + 0.01)
    assert expired.reserved_usd == 0 and expired.concurrent == 0


def test_late_settle_corrects_an_expired_reservation(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [team("a", budget_usd=1.0, period="day")]
    est = Estimate(100, 100, 0.05)

    async def main() -> tuple:
        ledger = factory(ttl_seconds=30)
        try:
            r = await ledger.reserve(lv, est, T0)
            assert isinstance(r, Reservation)
            n = await ledger.expire_stale(T0 + timedelta(seconds=31))
            (st1,) = await ledger.status(lv, T0 + timedelta(seconds=31))
            await ledger.settle(r, 0.02, 150)
            (st2,) = await ledger.status(lv, T0 + timedelta(seconds=32))
            return n, st1, st2
        finally:
            await ledger.close()

    n, st1, st2 = run(main())
    assert n == 1
    assert st1.spent_usd == pytest.approx(est.cost_usd) and st1.reserved_usd == 0
    assert st2.spent_usd == pytest.approx(0.02)


# ------------------------------------------------------------------ rate limits


def test_rpm_window_and_retry_after(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [team("a", rpm=3)]
    est = Estimate(10, 10, 0.0)

    async def main() -> tuple:
        ledger = factory()
        try:
            ok = [await ledger.reserve(lv, est, T0 + timedelta(seconds=s)) for s in (0, 10, 20)]
            denied = await ledger.reserve(lv, est, T0 + timedelta(seconds=30))
            still = await ledger.reserve(lv, est, T0 + timedelta(seconds=59.9))
            again = await ledger.reserve(lv, est, T0 + timedelta(seconds=60.5))
            return ok, denied, still, again
        finally:
            await ledger.close()

    ok, denied, still, again = run(main())
    assert all(isinstance(r, Reservation) for r in ok)
    assert isinstance(denied, Denial) and denied.kind == "rpm" and denied.level_id == "team:acme/a"
    # the oldest request (t=0) leaves the 60 s window at t=60: 30 s after t=30
    assert denied.retry_after == pytest.approx(RATE_WINDOW_SECONDS - 30, abs=1e-3)
    h = denied.headers()
    assert h["retry-after"] == "30" and h["x-ratelimit-limit-requests"] == "3"
    assert h["x-ratelimit-remaining-requests"] == "0"
    assert isinstance(still, Denial) and still.retry_after == pytest.approx(0.1, abs=1e-3)
    assert isinstance(again, Reservation)


def test_tpm_window_uses_actual_tokens_after_settle(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [team("a", tpm=1000)]
    est = Estimate(200, 200, 0.0)  # 400 tokens

    async def main() -> tuple:
        ledger = factory()
        try:
            a = await ledger.reserve(lv, est, T0)
            b = await ledger.reserve(lv, est, T0 + timedelta(seconds=5))
            c = await ledger.reserve(lv, est, T0 + timedelta(seconds=6))
            await ledger.settle(a, 0.0, 100)  # a used 100 tokens, not 400
            d = await ledger.reserve(lv, est, T0 + timedelta(seconds=7))
            return a, b, c, d
        finally:
            await ledger.close()

    a, b, c, d = run(main())
    assert isinstance(a, Reservation) and isinstance(b, Reservation)
    assert isinstance(c, Denial) and c.kind == "tpm"
    # 800 in window + 400 > 1000: dropping a's 400 suffices, at t=60: 54 s after t=6
    assert c.retry_after == pytest.approx(54, abs=1e-3)
    assert c.remaining == 200 and c.headers()["x-ratelimit-remaining-tokens"] == "200"
    assert isinstance(d, Reservation)  # 100 + 400 + 400 <= 1000


def test_concurrency_limit_and_release(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [team("a", max_concurrent=2)]
    est = Estimate(1, 1, 0.0)

    async def main() -> tuple:
        ledger = factory()
        try:
            a = await ledger.reserve(lv, est, T0)
            b = await ledger.reserve(lv, est, T0)
            c = await ledger.reserve(lv, est, T0)
            await ledger.release(a)
            d = await ledger.reserve(lv, est, T0)
            return a, b, c, d
        finally:
            await ledger.close()

    a, b, c, d = run(main())
    assert isinstance(c, Denial) and c.kind == "concurrency" and c.retry_after is not None
    assert isinstance(d, Reservation)


def test_one_team_never_affects_another(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    a = [team("a", budget_usd=0.05, period="day", rpm=2)]
    b = [team("b", budget_usd=0.05, period="day", rpm=2)]
    est = Estimate(10, 10, 0.02)

    async def main() -> tuple:
        ledger = factory()
        try:
            ra = [await ledger.reserve(a, est, T0) for _ in range(4)]
            rb = [await ledger.reserve(b, est, T0) for _ in range(2)]
            sa, sb = await ledger.status(a + b, T0)
            return ra, rb, sa, sb
        finally:
            await ledger.close()

    ra, rb, sa, sb = run(main())
    assert [isinstance(r, Reservation) for r in ra] == [True, True, False, False]
    assert all(isinstance(r, Reservation) for r in rb)
    assert sb.reserved_usd == pytest.approx(2 * est.cost_usd) and sb.requests_in_window == 2


def test_all_or_nothing_across_levels(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    org = Level("org", "acme", LevelLimits(budget_usd=10.0, period="month", max_concurrent=100))
    lv = [org, team("a", rpm=1)]
    est = Estimate(10, 10, 0.5)

    async def main() -> tuple:
        ledger = factory()
        try:
            first = await ledger.reserve(lv, est, T0)
            second = await ledger.reserve(lv, est, T0)
            so, _ = await ledger.status(lv, T0)
            return first, second, so
        finally:
            await ledger.close()

    first, second, so = run(main())
    assert isinstance(first, Reservation)
    assert isinstance(second, Denial) and second.level_id == "team:acme/a"
    # the org level holds only the first reservation: the refused one left nothing behind
    assert so.concurrent == 1 and so.reserved_usd == pytest.approx(est.cost_usd)


# ------------------------------------------------------------------ period rollover


@pytest.mark.parametrize(
    ("tz", "spend_at", "boundary"),
    [
        # UTC day
        ("UTC", datetime(2026, 12, 1, 9, 0, tzinfo=UTC), datetime(2026, 12, 2, 0, 0, tzinfo=UTC)),
        # Los Angeles, 1 Nov 2026: DST ends at 02:00 PDT, the day is 25 h long; midnight PST = 08:00 UTC
        ("America/Los_Angeles", datetime(2026, 11, 1, 12, 0, tzinfo=UTC), datetime(2026, 11, 2, 8, 0, tzinfo=UTC)),
        # Los Angeles, 8 Mar 2026: DST starts, the day is 23 h long; midnight PDT = 07:00 UTC
        ("America/Los_Angeles", datetime(2026, 3, 8, 12, 0, tzinfo=UTC), datetime(2026, 3, 9, 7, 0, tzinfo=UTC)),
    ],
)
def test_day_budget_resets_exactly_at_local_midnight(
    make_ledger: tuple[Factory, str], tz: str, spend_at: datetime, boundary: datetime
) -> None:
    factory, _ = make_ledger
    lv = [team("a", budget_usd=1.0, period="day", tz=tz)]
    est = Estimate(10, 10, 0.6)
    tick = timedelta(microseconds=1000)

    async def main() -> tuple:
        ledger = factory()
        try:
            r = await ledger.reserve(lv, est, spend_at)
            assert isinstance(r, Reservation)
            await ledger.settle(r, 0.6, 20)
            before = await ledger.reserve(lv, est, boundary - tick)
            (st_before,) = await ledger.status(lv, boundary - tick)
            after = await ledger.reserve(lv, est, boundary)
            return before, st_before, after
        finally:
            await ledger.close()

    before, st_before, after = run(main())
    assert isinstance(before, Denial) and before.kind == "budget" and before.resets_at == boundary
    assert before.retry_after is None and "retry-after" not in before.headers()
    assert st_before.spent_usd == pytest.approx(0.6)
    assert isinstance(after, Reservation)
    (st_after,) = after.status
    assert st_after.spent_usd == 0 and st_after.window_start == boundary
    assert boundary.astimezone(ZoneInfo(tz)).hour == 0


def test_total_budget_never_resets(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [Level("key", "k1", LevelLimits(budget_usd=1.0, period="total"))]

    async def main() -> Reservation | Denial:
        ledger = factory()
        try:
            r = await ledger.reserve(lv, Estimate(1, 1, 0.9), T0)
            assert isinstance(r, Reservation)
            await ledger.settle(r, 0.9, 2)
            return await ledger.reserve(lv, Estimate(1, 1, 0.2), T0 + timedelta(days=400))
        finally:
            await ledger.close()

    d = run(main())
    assert isinstance(d, Denial) and d.resets_at is None and "does not reset" in d.message()


def test_warn_flag_and_codex_usage_headers(make_ledger: tuple[Factory, str]) -> None:
    factory, _ = make_ledger
    lv = [
        Level("org", "acme", LevelLimits(budget_usd=100.0, period="month")),
        team("a", budget_usd=1.0, period="day", soft_threshold=0.5),
    ]

    async def main() -> tuple[Reservation, Reservation]:
        ledger = factory()
        try:
            r1 = await ledger.reserve(lv, Estimate(1, 1, 0.3), T0)
            r2 = await ledger.reserve(lv, Estimate(1, 1, 0.3), T0)
            assert isinstance(r1, Reservation) and isinstance(r2, Reservation)
            return r1, r2
        finally:
            await ledger.close()

    r1, r2 = run(main())
    assert r1.warn == () and r2.warn == ("team:acme/a",)
    h = codex_usage_headers(r2)
    assert h["x-codex-primary-used-percent"] == "60.0"  # team: 0.6 of 1.0
    assert h["x-codex-primary-window-minutes"] == str(24 * 60)
    assert h["x-codex-primary-reset-at"] == str(int(datetime(2026, 12, 2, tzinfo=UTC).timestamp()))
    assert h["x-codex-secondary-used-percent"] == "0.6"  # org: 0.6 of 100
