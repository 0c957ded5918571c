"""The Redis quota store: exact across several supervisors sharing one Redis.

Each admission is one Lua script, so check-and-take is atomic in Redis no matter how many
supervisors call it. Time comes from Redis (``TIME``), so supervisors with skewed clocks
agree on buckets and days. Concurrency slots are leases in a sorted set: a supervisor that
dies mid-call cannot leak its slots past ``lease_seconds``.

Keys share the ``{tenant}`` hash tag, so one tenant's keys live on one cluster slot.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from supervisor.errors import QuotaStoreUnavailableError
from supervisor.quota.limits import QuotaLimits
from supervisor.quota.store import Ticket, Usage, exceeded

log = structlog.get_logger(__name__)

# KEYS: bucket, inflight, daily.  ARGV: rate, burst, concurrency, daily, ticket, lease_ms.
# Returns {1, day, in_flight, daily_used, tokens} when admitted (the usage after admission),
# or {0, limit, retry_ms, detail_a, detail_b}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local concurrency, daily = tonumber(ARGV[3]), tonumber(ARGV[4])
local lease = tonumber(ARGV[6])

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local in_flight = redis.call('ZCARD', KEYS[2])
if in_flight >= concurrency then
  return {0, 'concurrency', 50, in_flight, concurrency}
end
local used = tonumber(redis.call('HGET', KEYS[3], day) or '0')
if used >= daily then
  return {0, 'daily', (day + 1) * 86400000 - now, used, daily}
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, ts = tonumber(b[1]), tonumber(b[2])
if tokens == nil then
  tokens, ts = burst, now
end
if now > ts then
  tokens = math.min(burst, tokens + (now - ts) * rate / 1000)
  ts = now
end
if tokens < 1 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', ts)
  return {0, 'rate', math.ceil((1 - tokens) * 1000 / rate), 0, 0}
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'ts', ts)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 60000)
redis.call('ZADD', KEYS[2], now + lease, ARGV[5])
redis.call('PEXPIRE', KEYS[2], lease + 60000)
redis.call('HINCRBY', KEYS[3], day, 1)
redis.call('HDEL', KEYS[3], day - 2)
redis.call('PEXPIRE', KEYS[3], 3 * 86400000)
return {1, day, in_flight + 1, used + 1, tostring(tokens - 1)}
"""

# KEYS: inflight, daily.  ARGV: ticket, day, success.
_RELEASE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 and ARGV[3] == '0' then
  local used = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
  if used > 0 then
    redis.call('HINCRBY', KEYS[2], ARGV[2], -1)
  end
end
return removed
"""

# KEYS: bucket, inflight, daily.  ARGV: rate, burst.
_USAGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local day = math.floor(now / 86400000)
local in_flight = redis.call('ZCOUNT', KEYS[2], now, '+inf')
local used = tonumber(redis.call('HGET', KEYS[3], day) or '0')
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(ARGV[2])
if b[1] then
  tokens = math.min(tonumber(ARGV[2]), tonumber(b[1]) + math.max(0, now - tonumber(b[2])) * tonumber(ARGV[1]) / 1000)
end
return {in_flight, used, day, tostring(tokens)}
"""


def _keys(tenant: str) -> tuple[str, str, str]:
    base = f"ire:quota:{{{tenant}}}"
    return f"{base}:bucket", f"{base}:inflight", f"{base}:daily"


class RedisQuotaStore:
    def __init__(self, url: str, *, timeout_seconds: float = 0.25, lease_seconds: float = 120.0) -> None:
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds, retry_on_timeout=False
        )
        self._lease_ms = int(lease_seconds * 1000)
        self._admit = self._redis.register_script(_ADMIT)
        self._release = self._redis.register_script(_RELEASE)
        self._usage = self._redis.register_script(_USAGE)

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            return await script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            raise QuotaStoreUnavailableError(f"quota store unavailable: {type(exc).__name__}: {exc}") from exc

    async def admit(self, tenant: str, limits: QuotaLimits) -> Ticket:
        ticket = secrets.token_hex(12)
        result = await self._run(
            self._admit,
            list(_keys(tenant)),
            [limits.rate, limits.burst, limits.concurrency, limits.daily, ticket, self._lease_ms],
        )
        if int(result[0]) == 1:
            day = int(result[1])
            return Ticket(tenant, ticket, day, Usage(int(result[2]), int(result[3]), day, float(result[4])))
        limit = result[1].decode() if isinstance(result[1], bytes) else str(result[1])
        retry = int(result[2]) / 1000
        details = {
            "concurrency": f"{result[3]} calls in flight, limit is {limits.concurrency}",
            "daily": f"{result[3]} predictions today (UTC), limit is {limits.daily}",
            "rate": f"limit is {limits.rate:g}/s with burst {limits.burst}",
        }
        raise exceeded(limit, details.get(limit, limit), retry)

    async def release(self, ticket: Ticket, *, success: bool) -> None:
        _, inflight, daily = _keys(ticket.tenant)
        try:
            await self._run(self._release, [inflight, daily], [ticket.id, ticket.day, 1 if success else 0])
        except QuotaStoreUnavailableError as exc:
            # The lease expires on its own; the daily count stays (errs toward the limit).
            log.error("cannot release quota ticket", tenant=ticket.tenant, error=str(exc))

    async def usage(self, tenant: str, limits: QuotaLimits) -> Usage:
        result = await self._run(self._usage, list(_keys(tenant)), [limits.rate, limits.burst])
        return Usage(int(result[0]), int(result[1]), int(result[2]), float(result[3]))

    async def close(self) -> None:
        await self._redis.aclose()
