"""The quota store interface, shared by the embedded and Redis stores.

Admission checks every limit first and takes nothing unless all pass, so a rejected call
costs the tenant nothing. Which limits give back on failure:

- rate (token bucket): never; it limits attempts.
- concurrency: always; the slot is freed when the call ends, whatever the outcome.
- daily: given back when the call fails after admission; only successes count.
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple, Protocol

from supervisor.errors import QuotaExceededError
from supervisor.quota.limits import QuotaLimits


class Usage(NamedTuple):
    # A NamedTuple, as Ticket below: several are made per call, and a frozen dataclass
    # costs more to build.
    in_flight: int
    daily_used: int
    day: int
    rate_tokens: float

    def as_policy_input(self) -> dict[str, float | int]:
        return {"in_flight": self.in_flight, "daily_used": self.daily_used, "rate_tokens": round(self.rate_tokens, 3)}


class Ticket(NamedTuple):
    """What one admitted call holds until it is released, and the usage it left behind."""

    tenant: str
    id: str
    day: int
    usage: Usage | None = None


class QuotaStore(Protocol):
    async def admit(self, tenant: str, limits: QuotaLimits) -> Ticket:
        """Take one call's share, or raise :class:`QuotaExceededError` naming the limit."""

    async def release(self, ticket: Ticket, *, success: bool) -> None:
        """End the call: free its concurrency slot; give the daily count back unless it succeeded."""

    async def usage(self, tenant: str, limits: QuotaLimits) -> Usage:
        """Current counters; ``limits`` is needed to refill the bucket to now."""

    async def close(self) -> None: ...


def utc_day(now: float) -> int:
    """Days since the epoch, UTC: daily counters roll over at UTC midnight."""
    return int(now // 86400)


def seconds_to_next_day(now: float) -> float:
    return (utc_day(now) + 1) * 86400 - now


def day_label(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def exceeded(limit: str, detail: str, retry_after: float) -> QuotaExceededError:
    return QuotaExceededError(
        f"quota {limit!r} exceeded: {detail}; retry after {retry_after:.3f} s", limit, retry_after
    )


def check_request(limits: QuotaLimits, request_bytes: int, batch: int) -> None:
    """The per-request limits, which need no state."""
    if request_bytes > limits.max_request_bytes:
        raise QuotaExceededError(
            f"quota 'max_request_bytes' exceeded: request is {request_bytes} bytes, limit is "
            f"{limits.max_request_bytes}",
            "max_request_bytes",
            0.0,
        )
    if batch > limits.max_batch:
        raise QuotaExceededError(
            f"quota 'max_batch' exceeded: batch is {batch}, limit is {limits.max_batch}", "max_batch", 0.0
        )
