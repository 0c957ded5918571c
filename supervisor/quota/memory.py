"""The embedded quota store: exact in one process, daily counters persisted in SQLite.

All state changes happen synchronously on the event loop thread, with no await between
check and update, so concurrent calls in one supervisor cannot both take the last unit.
Daily counters are written to SQLite by a background task every ``flush_seconds`` and at
close, so a restart keeps the day's usage; a crash loses at most that interval.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from supervisor.quota.bucket import Bucket, refill, wait_for_token
from supervisor.quota.limits import QuotaLimits
from supervisor.quota.store import Ticket, Usage, exceeded, seconds_to_next_day, utc_day

log = structlog.get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily_usage (
    tenant TEXT NOT NULL,
    day INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (tenant, day)
);
"""
# A concurrency slot freed this long after being taken is a caller bug; the hint is short
# because slots free as soon as calls end.
CONCURRENCY_RETRY_SECONDS = 0.05


@dataclass
class _TenantState:
    bucket: Bucket | None = None
    in_flight: set[str] = field(default_factory=set)
    day: int = -1
    daily_used: int = 0


class MemoryQuotaStore:
    def __init__(self, path: Path, *, flush_seconds: float = 0.5, clock: Callable[[], float] = time.time) -> None:
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._clock = clock
        self._flush_seconds = flush_seconds
        self._tenants: dict[str, _TenantState] = {}
        self._dirty: set[str] = set()
        self._ids = itertools.count(1)
        self._flusher: asyncio.Task[None] | None = None

    def _state(self, tenant: str, now: float) -> _TenantState:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _TenantState()
        day = utc_day(now)
        if state.day != day:
            row = self._db.execute(
                "SELECT used FROM daily_usage WHERE tenant = ? AND day = ?", (tenant, day)
            ).fetchone()
            state.day, state.daily_used = day, (row[0] if row else 0)
        return state

    async def admit(self, tenant: str, limits: QuotaLimits) -> Ticket:
        now = self._clock()
        state = self._state(tenant, now)
        if len(state.in_flight) >= limits.concurrency:
            raise exceeded(
                "concurrency",
                f"{len(state.in_flight)} calls in flight, limit is {limits.concurrency}",
                CONCURRENCY_RETRY_SECONDS,
            )
        if state.daily_used >= limits.daily:
            raise exceeded(
                "daily",
                f"{state.daily_used} predictions today (UTC), limit is {limits.daily}",
                seconds_to_next_day(now),
            )
        bucket = refill(state.bucket, limits.rate, limits.burst, now)
        if bucket.tokens < 1.0:
            state.bucket = bucket
            raise exceeded(
                "rate", f"limit is {limits.rate:g}/s with burst {limits.burst}", wait_for_token(bucket, limits.rate)
            )
        state.bucket = Bucket(bucket.tokens - 1.0, bucket.updated)
        ticket_id = str(next(self._ids))
        state.in_flight.add(ticket_id)
        state.daily_used += 1
        ticket = Ticket(
            tenant, ticket_id, state.day, Usage(len(state.in_flight), state.daily_used, state.day, bucket.tokens - 1.0)
        )
        self._dirty.add(tenant)
        self._ensure_flusher()
        return ticket

    async def release(self, ticket: Ticket, *, success: bool) -> None:
        state = self._tenants.get(ticket.tenant)
        if state is None or ticket.id not in state.in_flight:
            return
        state.in_flight.discard(ticket.id)
        if not success and state.day == ticket.day and state.daily_used > 0:
            state.daily_used -= 1
            self._dirty.add(ticket.tenant)

    async def usage(self, tenant: str, limits: QuotaLimits) -> Usage:
        now = self._clock()
        state = self._state(tenant, now)
        tokens = refill(state.bucket, limits.rate, limits.burst, now).tokens
        return Usage(len(state.in_flight), state.daily_used, state.day, tokens)

    def _ensure_flusher(self) -> None:
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush_loop(self) -> None:
        while self._dirty:
            await asyncio.sleep(self._flush_seconds)
            self.flush()

    def flush(self) -> None:
        dirty, self._dirty = self._dirty, set()
        rows = [(t, self._tenants[t].day, self._tenants[t].daily_used) for t in dirty]
        try:
            self._db.executemany(
                "INSERT INTO daily_usage (tenant, day, used) VALUES (?, ?, ?) "
                "ON CONFLICT (tenant, day) DO UPDATE SET used = excluded.used",
                rows,
            )
        except sqlite3.Error as exc:
            self._dirty |= dirty
            log.error("cannot persist daily quota usage", error=str(exc))

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
        self.flush()
        self._db.close()
