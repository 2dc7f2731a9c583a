"""Circuit breaker per target: opens after N consecutive failures or a failure ratio over a
minimum of calls, skips while open, lets one probe through after the cooldown (injectable
clock), closes on a good probe; two instances sharing a real redis-server share the state."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from codexgate.routing.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, BreakerConfig, MemoryStore, RedisStore
from tests.helpers.redis import REDIS_SERVER, SKIP_REASON, redis_server


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def _fail(b: Breaker, key: str, n: int) -> None:
    for _ in range(n):
        assert await b.allow(key)
        await b.record(key, False)


async def _consecutive_cycle(make_breaker) -> None:
    clock = Clock()
    b = make_breaker(BreakerConfig(failures=3, ratio=0, cooldown_s=30), clock)
    await _fail(b, "a", 2)
    await b.record("a", True)  # a success resets the count
    await _fail(b, "a", 2)
    assert await b.state("a") == CLOSED
    await _fail(b, "a", 1)
    assert await b.state("a") == OPEN
    assert not await b.allow("a")  # skipped while open
    assert await b.allow("b")  # per target
    clock.now += 29.9
    assert not await b.allow("a")
    clock.now += 0.2
    assert await b.state("a") == HALF_OPEN
    assert await b.allow("a")  # the one probe ...
    assert not await b.allow("a")  # ... and nobody else while it runs
    await b.record("a", False)  # failed probe: open for another cooldown
    assert await b.state("a") == OPEN and not await b.allow("a")
    clock.now += 30.1
    assert await b.allow("a")
    await b.record("a", True)  # good probe closes it
    assert await b.state("a") == CLOSED and await b.allow("a") and await b.allow("a")


def test_memory_breaker_opens_skips_probes_and_closes() -> None:
    asyncio.run(_consecutive_cycle(lambda cfg, clock: Breaker(cfg, MemoryStore(), clock)))


def test_failure_ratio_needs_the_minimum_number_of_calls_in_the_window() -> None:
    async def run() -> None:
        clock = Clock()
        b = Breaker(BreakerConfig(failures=0, ratio=0.5, min_calls=6, window_s=10, cooldown_s=5), clock=clock)
        for ok in (True, False, True, False, True):  # 2/5 failed, and fewer than 6 calls
            await b.record("t", ok)
        assert await b.state("t") == CLOSED
        await b.record("t", False)  # 3/6 = 0.5
        assert await b.state("t") == OPEN
        clock.now += 5
        assert await b.allow("t")
        await b.record("t", True)
        # old calls fall out of the window
        for ok in (False, False, False):
            await b.record("t", ok)
        clock.now += 11
        for ok in (True, True, True, False, True, True):
            await b.record("t", ok)
        assert await b.state("t") == CLOSED

    asyncio.run(run())


def test_a_disabled_breaker_never_skips() -> None:
    async def run() -> None:
        b = Breaker(BreakerConfig(failures=0, ratio=0))
        await _fail(b, "x", 50)
        assert await b.allow("x")

    asyncio.run(run())


needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason=SKIP_REASON)


@needs_redis
def test_redis_breaker_cycle(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:

        async def run() -> None:
            stores = []

            def make(cfg, clock):
                stores.append(RedisStore(url, prefix="t1:"))
                return Breaker(cfg, stores[-1], clock)

            await _consecutive_cycle(make)
            for s in stores:
                await s.close()

        asyncio.run(run())


@needs_redis
def test_two_instances_share_the_circuit_through_redis(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis") as url:

        async def run() -> None:
            clock = Clock()
            cfg = BreakerConfig(failures=4, ratio=0, cooldown_s=20)
            one = Breaker(cfg, RedisStore(url), clock)
            two = Breaker(cfg, RedisStore(url), clock)
            await _fail(one, "openai", 2)
            await _fail(two, "openai", 2)  # four consecutive failures, seen by two instances
            assert not await one.allow("openai") and not await two.allow("openai")
            clock.now += 20
            probes = [await one.allow("openai"), await two.allow("openai")]
            assert sorted(probes) == [False, True]  # exactly one probe across the instances
            prober = one if probes[0] else two
            await prober.record("openai", True)
            assert await one.allow("openai") and await two.allow("openai")
            assert one.store_errors == two.store_errors == 0
            for b in (one, two):
                await b.store.close()  # type: ignore[attr-defined]

        asyncio.run(run())


def test_an_unreachable_redis_lets_traffic_through_and_counts_the_error() -> None:
    async def run() -> None:
        b = Breaker(BreakerConfig(failures=1), RedisStore("redis://127.0.0.1:9/0"))
        await b.record("a", False)
        assert await b.allow("a")
        assert b.store_errors == 2

    asyncio.run(run())
