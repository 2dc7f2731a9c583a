"""Circuit breaker per routing target.

A target's circuit opens after ``failures`` consecutive failures, or when at least
``min_calls`` calls in the last ``window_s`` seconds failed at a ratio of ``ratio`` or more.
While open, calls skip the target. After ``cooldown_s`` it is half-open: one probe call is let
through (others still skip); a success closes the circuit, a failure opens it again for another
cooldown.

State lives in a store: ``MemoryStore`` (in-process, the default) or ``RedisStore`` (shared by
every gateway instance using the same Redis). The clock is injectable (``clock() -> seconds``)
so tests can move time without sleeping. A store that fails (Redis down) never blocks traffic:
``allow`` then answers True (fail open for availability; the retry loop still bounds the cost),
and the failure is counted in ``Breaker.store_errors``.

Layer: imports only the standard library and ``redis`` (no gateway code).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerConfig:
    failures: int = 5  # consecutive failures that open the circuit (0: never by count)
    ratio: float = 0.5  # failure ratio that opens it ... (0: never by ratio)
    min_calls: int = 20  # ... over at least this many calls ...
    window_s: float = 60.0  # ... in this window
    cooldown_s: float = 30.0  # open -> half-open after this long

    @property
    def enabled(self) -> bool:
        return self.failures > 0 or self.ratio > 0


class Store(Protocol):
    async def allow(self, key: str, now: float, cfg: BreakerConfig) -> bool: ...
    async def record(self, key: str, ok: bool, now: float, cfg: BreakerConfig) -> None: ...
    async def state(self, key: str, now: float, cfg: BreakerConfig) -> str: ...


@dataclass
class _Circuit:
    opened_at: float | None = None
    probing: bool = False
    consecutive: int = 0
    calls: deque[tuple[float, bool]] = field(default_factory=deque)  # in the window, oldest first
    failed: int = 0  # failures among ``calls``


class MemoryStore:
    """In-process state (one gateway instance)."""

    def __init__(self) -> None:
        self._c: dict[str, _Circuit] = {}

    async def state(self, key: str, now: float, cfg: BreakerConfig) -> str:
        c = self._c.get(key)
        if c is None or c.opened_at is None:
            return CLOSED
        return HALF_OPEN if now - c.opened_at >= cfg.cooldown_s else OPEN

    async def allow(self, key: str, now: float, cfg: BreakerConfig) -> bool:
        c = self._c.get(key)
        if c is None or c.opened_at is None:
            return True
        if now - c.opened_at < cfg.cooldown_s or c.probing:
            return False
        c.probing = True  # the one half-open probe
        return True

    async def record(self, key: str, ok: bool, now: float, cfg: BreakerConfig) -> None:
        c = self._c.setdefault(key, _Circuit())
        if c.opened_at is not None:
            if c.probing:  # the probe's verdict decides
                c.probing = False
                if ok:
                    self._c[key] = _Circuit()
                else:
                    c.opened_at = now
            return
        calls = c.calls
        while calls and now - calls[0][0] >= cfg.window_s:  # O(1) amortised per call
            c.failed -= not calls.popleft()[1]
        calls.append((now, ok))
        c.failed += not ok
        c.consecutive = 0 if ok else c.consecutive + 1
        if _should_open(c.consecutive, len(calls), c.failed, cfg):
            c.opened_at, c.probing, c.consecutive, c.failed = now, False, 0, 0
            calls.clear()


def _should_open(consecutive: int, calls: int, failed: int, cfg: BreakerConfig) -> bool:
    if cfg.failures > 0 and consecutive >= cfg.failures:
        return True
    if cfg.ratio > 0 and calls >= max(1, cfg.min_calls):
        return failed / calls >= cfg.ratio
    return False


# One Lua script per operation keeps each decision atomic across instances.
# Keys: P..'o' opened_at (string), P..'p' probe flag, P..'n' consecutive failures,
# P..'c' sorted set of calls (score = time, member = "time:ok:nonce").
_ALLOW = """
local opened = redis.call('GET', KEYS[1] .. 'o')
if not opened then return 1 end
if tonumber(ARGV[1]) - tonumber(opened) < tonumber(ARGV[2]) then return 0 end
if redis.call('SET', KEYS[1] .. 'p', '1', 'NX', 'EX', math.max(1, math.ceil(tonumber(ARGV[2])))) then return 1 end
return 0
"""
_RECORD = """
local P = KEYS[1]
local now, ok = tonumber(ARGV[1]), ARGV[2] == '1'
local failures, ratio, min_calls = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local window, ttl = tonumber(ARGV[6]), tonumber(ARGV[7])
if redis.call('GET', P .. 'o') then
  if redis.call('GET', P .. 'p') then
    redis.call('DEL', P .. 'p')
    if ok then redis.call('DEL', P .. 'o', P .. 'n', P .. 'c') else redis.call('SET', P .. 'o', ARGV[1], 'EX', ttl) end
  end
  return 0
end
redis.call('ZREMRANGEBYSCORE', P .. 'c', '-inf', now - window)
redis.call('ZADD', P .. 'c', now, ARGV[1] .. ':' .. ARGV[2] .. ':' .. ARGV[8])
redis.call('EXPIRE', P .. 'c', ttl)
local n = 0
if ok then redis.call('SET', P .. 'n', 0, 'EX', ttl) else n = redis.call('INCR', P .. 'n'); redis.call('EXPIRE', P .. 'n', ttl) end
local open = failures > 0 and n >= failures
if not open and ratio > 0 then
  local calls = redis.call('ZRANGE', P .. 'c', 0, -1)
  if #calls >= math.max(1, min_calls) then
    local bad = 0
    for _, m in ipairs(calls) do if string.find(m, ':0:', 1, true) then bad = bad + 1 end end
    open = bad / #calls >= ratio
  end
end
if open then
  redis.call('SET', P .. 'o', ARGV[1], 'EX', ttl)
  redis.call('DEL', P .. 'n', P .. 'c', P .. 'p')
  return 1
end
return 0
"""


class RedisStore:
    """State in Redis, shared by every instance configured with the same URL and prefix."""

    def __init__(self, url: str, prefix: str = "codexgate:breaker:") -> None:
        import redis.asyncio as aioredis  # the dependency is declared; imported at construction

        self.client: Any = aioredis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        self.prefix = prefix
        self._allow = self.client.register_script(_ALLOW)
        self._record = self.client.register_script(_RECORD)
        self._nonce = 0

    def _key(self, key: str) -> str:
        return f"{self.prefix}{key}:"

    async def state(self, key: str, now: float, cfg: BreakerConfig) -> str:
        opened = await self.client.get(self._key(key) + "o")
        if opened is None:
            return CLOSED
        return HALF_OPEN if now - float(opened) >= cfg.cooldown_s else OPEN

    async def allow(self, key: str, now: float, cfg: BreakerConfig) -> bool:
        return bool(await self._allow(keys=[self._key(key)], args=[repr(now), repr(cfg.cooldown_s)]))

    async def record(self, key: str, ok: bool, now: float, cfg: BreakerConfig) -> None:
        self._nonce += 1
        ttl = int(max(cfg.window_s, cfg.cooldown_s) * 4) + 60
        await self._record(
            keys=[self._key(key)],
            args=[
                repr(now),
                "1" if ok else "0",
                cfg.failures,
                cfg.ratio,
                cfg.min_calls,
                cfg.window_s,
                ttl,
                f"{id(self)}-{self._nonce}",
            ],
        )

    async def close(self) -> None:
        await self.client.aclose()


class Breaker:
    """What the relay asks: may this target be tried now, and how did a try go."""

    def __init__(
        self, cfg: BreakerConfig, store: Store | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.cfg = cfg
        self.store: Store = store if store is not None else MemoryStore()
        self.clock = clock
        self.store_errors = 0

    async def allow(self, key: str) -> bool:
        if not self.cfg.enabled:
            return True
        try:
            return await self.store.allow(key, self.clock(), self.cfg)
        except Exception:  # the store is down: let traffic through (see module docstring)
            self.store_errors += 1
            return True

    async def record(self, key: str, ok: bool) -> None:
        if not self.cfg.enabled:
            return
        try:
            await self.store.record(key, ok, self.clock(), self.cfg)
        except Exception:
            self.store_errors += 1

    async def state(self, key: str) -> str:
        return await self.store.state(key, self.clock(), self.cfg)
