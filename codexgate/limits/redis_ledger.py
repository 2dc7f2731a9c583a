"""The shared ledger for several gateway instances: Redis, through ``redis``'s asyncio client.

Every operation is one Lua script, which Redis runs atomically (no other command interleaves),
so check-and-reserve on all levels is all or nothing across every instance. The scripts follow
``codexgate.limits.ledger.check_level`` line by line; the same test suite runs on both backends.
Times come from the caller (``now``), so instances need synchronised clocks (NTP) — the same
assumption the trace timestamps already make. Single Redis (or a primary with replicas); the
scripts build key names from their arguments, so Redis Cluster is not supported.

Keys (prefix ``cg:`` by default): ``sp:{level}:{period_start}`` spend (float string);
``rs:{level}`` hash res_id -> "cost|tokens|period_start"; ``exp`` zset "res_id|level" by
expiry time; ``ev:{level}`` zset res_id by request time, ``et:{level}`` hash res_id ->
tokens and ``es:{level}`` their sum (the sliding RPM/TPM window); ``ex`` hash "res_id|level" -> "period_start|cost" of
expired reservations whose estimate was charged.
"""

from __future__ import annotations

from datetime import datetime

import redis.asyncio as aioredis

from codexgate.limits.config import Level
from codexgate.limits.estimate import Estimate
from codexgate.limits.ledger import (
    Denial,
    Ledger,
    LevelStatus,
    Reservation,
    _aware,
    level_windows,
    make_status,
    new_reservation_id,
)

_COMMON = r"""
local P = ARGV[1]
local function expire(now)
  local due = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', '(' .. now)
  for _, m in ipairs(due) do
    local sep = string.find(m, '|', 1, true)
    local rid, lvl = string.sub(m, 1, sep - 1), string.sub(m, sep + 1)
    local v = redis.call('HGET', P .. 'rs:' .. lvl, rid)
    if v then
      local c, t, ps = string.match(v, '^([^|]+)|([^|]+)|([^|]+)$')
      redis.call('INCRBYFLOAT', P .. 'sp:' .. lvl .. ':' .. ps, c)
      redis.call('HSET', P .. 'ex', m, ps .. '|' .. c)
      redis.call('HDEL', P .. 'rs:' .. lvl, rid)
    end
    redis.call('ZREM', P .. 'exp', m)
  end
  return #due
end
local function state(lvl, ps, now)
  local ev, et, es = P .. 'ev:' .. lvl, P .. 'et:' .. lvl, P .. 'es:' .. lvl
  local old = redis.call('ZRANGEBYSCORE', ev, '-inf', now - 60)
  if #old > 0 then
    local drop = 0
    for _, m in ipairs(old) do
      drop = drop + tonumber(redis.call('HGET', et, m) or '0')
      redis.call('HDEL', et, m)
    end
    redis.call('ZREMRANGEBYSCORE', ev, '-inf', now - 60)
    redis.call('DECRBY', es, drop)
  end
  local spent = tonumber(redis.call('GET', P .. 'sp:' .. lvl .. ':' .. ps) or '0')
  local reserved, conc = 0, 0
  for _, v in ipairs(redis.call('HVALS', P .. 'rs:' .. lvl)) do
    reserved = reserved + tonumber(string.match(v, '^([^|]+)|'))
    conc = conc + 1
  end
  return spent, reserved, conc, redis.call('ZCARD', ev), tonumber(redis.call('GET', es) or '0')
end
local function events(lvl)
  local evs = redis.call('ZRANGE', P .. 'ev:' .. lvl, 0, -1, 'WITHSCORES')
  local ts, toks = {}, {}
  for j = 1, #evs, 2 do
    ts[#ts + 1] = tonumber(evs[j + 1])
    toks[#toks + 1] = tonumber(redis.call('HGET', P .. 'et:' .. lvl, evs[j]) or '0')
  end
  return ts, toks
end
local function retry_after(ts, toks, now, dr, dt)
  local r, t = 0, 0
  for j = 1, #ts do
    r = r + 1; t = t + toks[j]
    if r >= dr and t >= dt then return math.max(0, ts[j] + 60 - now) end
  end
  return 60
end
"""

_RESERVE = _COMMON + r"""
local rid, now, ttl = ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local cost_s, tokens, n = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7])
local cost = tonumber(cost_s)
expire(now)
local st = {}
for i = 1, n do
  local b = 8 + (i - 1) * 7
  local lvl, ps = ARGV[b], ARGV[b + 1]
  local budget, maxc, rpm, tpm = tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4]), tonumber(ARGV[b + 5])
  local spent, reserved, conc, nreq, used = state(lvl, ps, now)
  if budget >= 0 then
    local remaining = budget - spent - reserved
    if cost > remaining + 1e-12 then return {0, i, 'budget', tostring(budget), tostring(remaining), ''} end
  end
  if maxc >= 0 and conc >= maxc then return {0, i, 'concurrency', tostring(maxc), '0', '1'} end
  if rpm >= 0 and nreq >= rpm then
    local ts, toks = events(lvl)
    return {0, i, 'rpm', tostring(rpm), '0', tostring(retry_after(ts, toks, now, nreq - rpm + 1, 0))}
  end
  if tpm >= 0 and used > 0 and used + tokens > tpm then
    local ts, toks = events(lvl)
    return {0, i, 'tpm', tostring(tpm), tostring(math.max(0, tpm - used)),
            tostring(retry_after(ts, toks, now, 0, used + tokens - tpm))}
  end
  st[i] = {spent, reserved, nreq, used, conc}
end
local out = {1}
for i = 1, n do
  local b = 8 + (i - 1) * 7
  local lvl, ps, rate = ARGV[b], ARGV[b + 1], ARGV[b + 6]
  redis.call('HSET', P .. 'rs:' .. lvl, rid, cost_s .. '|' .. tokens .. '|' .. ps)
  redis.call('ZADD', P .. 'exp', now + ttl, rid .. '|' .. lvl)
  if rate == '1' then
    redis.call('ZADD', P .. 'ev:' .. lvl, now, rid)
    redis.call('HSET', P .. 'et:' .. lvl, rid, tokens)
    redis.call('INCRBY', P .. 'es:' .. lvl, tokens)
  end
  local s = st[i]
  out[#out + 1] = tostring(s[1]); out[#out + 1] = tostring(s[2]); out[#out + 1] = tostring(s[3])
  out[#out + 1] = tostring(s[4]); out[#out + 1] = tostring(s[5])
end
return out
"""

_SETTLE = _COMMON + r"""
local rid, cost, tokens, n = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
for i = 1, n do
  local lvl, ps = ARGV[5 + 2 * i - 1], ARGV[5 + 2 * i]
  local m = rid .. '|' .. lvl
  if redis.call('HDEL', P .. 'rs:' .. lvl, rid) == 1 then
    if cost ~= 0 then redis.call('INCRBYFLOAT', P .. 'sp:' .. lvl .. ':' .. ps, ARGV[3]) end
    redis.call('ZREM', P .. 'exp', m)
  else
    local e = redis.call('HGET', P .. 'ex', m)
    if e then
      local eps, ec = string.match(e, '^([^|]+)|([^|]+)$')
      redis.call('INCRBYFLOAT', P .. 'sp:' .. lvl .. ':' .. eps, tostring(cost - tonumber(ec)))
      redis.call('HDEL', P .. 'ex', m)
    end
  end
  local prev = redis.call('HGET', P .. 'et:' .. lvl, rid)
  if prev then
    redis.call('HSET', P .. 'et:' .. lvl, rid, tokens)
    redis.call('INCRBY', P .. 'es:' .. lvl, tonumber(tokens) - tonumber(prev))
  end
end
return 1
"""

_STATUS = _COMMON + r"""
local now, n = tonumber(ARGV[2]), tonumber(ARGV[3])
expire(now)
local out = {}
for i = 1, n do
  local spent, reserved, conc, nreq, used = state(ARGV[3 + 2 * i - 1], ARGV[3 + 2 * i], now)
  out[#out + 1] = tostring(spent); out[#out + 1] = tostring(reserved); out[#out + 1] = tostring(nreq)
  out[#out + 1] = tostring(used); out[#out + 1] = tostring(conc)
end
return out
"""

_EXPIRE = _COMMON + "return expire(tonumber(ARGV[2]))"

_SET_SPENT = _COMMON + r"""
local lvl, ps = ARGV[2], ARGV[3]
redis.call('SET', P .. 'sp:' .. lvl .. ':' .. ps, ARGV[4])
for _, m in ipairs(redis.call('HKEYS', P .. 'ex')) do
  if string.sub(m, -#lvl - 1) == '|' .. lvl then
    local eps = string.match(redis.call('HGET', P .. 'ex', m), '^([^|]+)|')
    if eps == ps then redis.call('HDEL', P .. 'ex', m) end
  end
end
return 1
"""


def _num(v: float | int | None) -> str:
    return "-1" if v is None else repr(float(v)) if isinstance(v, float) else str(v)


class RedisLedger(Ledger):
    """Redis ledger at ``url`` (``redis://host:port/db``). All state lives in Redis; this object
    only holds the connection pool and the registered scripts."""

    def __init__(self, url: str, *, ttl_seconds: float = 900.0, prefix: str = "cg:") -> None:
        self.ttl_seconds = float(ttl_seconds)
        self.prefix = prefix
        self._r = aioredis.Redis.from_url(url, decode_responses=True)
        self._reserve_s = self._r.register_script(_RESERVE)
        self._settle_s = self._r.register_script(_SETTLE)
        self._status_s = self._r.register_script(_STATUS)
        self._expire_s = self._r.register_script(_EXPIRE)
        self._set_spent_s = self._r.register_script(_SET_SPENT)

    async def reserve(self, levels: list[Level], estimate: Estimate, now: datetime) -> Reservation | Denial:
        now = _aware(now)
        windows = level_windows(levels, now)
        args: list[str] = [
            self.prefix, new_reservation_id(), repr(now.timestamp()), repr(self.ttl_seconds),
            repr(float(estimate.cost_usd)), str(int(estimate.tokens)), str(len(windows)),
        ]
        for w in windows:
            lim = w.level.limits
            rate = "1" if lim.rpm is not None or lim.tpm is not None else "0"
            args += [w.level.id, str(w.period_start), _num(lim.budget_usd), _num(lim.max_concurrent),
                     _num(lim.rpm), _num(lim.tpm), rate]
        out = await self._reserve_s(keys=[], args=args)
        if int(out[0]) == 0:
            w = windows[int(out[1]) - 1]
            kind, limit, remaining, ra = out[2], float(out[3]), float(out[4]), out[5]
            return Denial(w.level, kind, limit, remaining, float(ra) if ra else None,
                          w.resets_at if kind == "budget" else None)
        status = []
        for i, w in enumerate(windows):
            spent, reserved, nreq, used, conc = (float(x) for x in out[1 + 5 * i: 6 + 5 * i])
            status.append(make_status(w, spent, reserved + estimate.cost_usd, int(nreq) + 1,
                                      int(used) + estimate.tokens, int(conc) + 1))
        return Reservation(args[1], tuple(levels), tuple(w.period_start for w in windows), estimate, now,
                           tuple(status))

    async def _finish(self, res: Reservation, cost: float, tokens: int) -> None:
        args: list[str] = [self.prefix, res.id, repr(float(cost)), str(max(0, int(tokens))), str(len(res.levels))]
        for lv, ps in zip(res.levels, res.period_starts, strict=True):
            args += [lv.id, str(ps)]
        await self._settle_s(keys=[], args=args)

    async def settle(self, reservation: Reservation, actual_cost_usd: float | None, actual_tokens: int) -> None:
        await self._finish(reservation, actual_cost_usd or 0.0, actual_tokens)

    async def release(self, reservation: Reservation) -> None:
        await self._finish(reservation, 0.0, 0)

    async def status(self, levels: list[Level], now: datetime) -> list[LevelStatus]:
        now = _aware(now)
        windows = level_windows(levels, now)
        args = [self.prefix, repr(now.timestamp()), str(len(windows))]
        for w in windows:
            args += [w.level.id, str(w.period_start)]
        out = await self._status_s(keys=[], args=args)
        res = []
        for i, w in enumerate(windows):
            spent, reserved, nreq, used, conc = (float(x) for x in out[5 * i: 5 * i + 5])
            res.append(make_status(w, spent, reserved, int(nreq), int(used), int(conc)))
        return res

    async def expire_stale(self, now: datetime) -> int:
        return int(await self._expire_s(keys=[], args=[self.prefix, repr(_aware(now).timestamp())]))

    async def set_spent(self, level_id: str, period_start: int, spent_usd: float) -> None:
        await self._set_spent_s(keys=[], args=[self.prefix, level_id, str(period_start), repr(float(spent_usd))])

    async def close(self) -> None:
        await self._r.aclose()
