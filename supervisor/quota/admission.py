"""Quota admission as the data plane uses it: limits from the registry, a store behind it.

A quota store that cannot answer refuses the call (fail closed), unless the home sets
``quota.unsafe_fail_open``, in which case the call is admitted and a warning is logged
every time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog

from supervisor.errors import ConfigError, QuotaStoreUnavailableError
from supervisor.quota.limits import QuotaLimits, effective_limits
from supervisor.quota.memory import MemoryQuotaStore
from supervisor.quota.redis import RedisQuotaStore
from supervisor.quota.store import QuotaStore, Ticket, Usage, check_request
from supervisor.registry import Registry
from supervisor.settings import QuotaSettings

log = structlog.get_logger(__name__)

# Tenants whose last usage is kept for the policy input; the map is dropped past this.
MAX_TRACKED_TENANTS = 100_000


def open_store(settings: QuotaSettings, home_root: Path) -> QuotaStore:
    if settings.store == "embedded":
        return MemoryQuotaStore(home_root / "quota.db")
    if settings.store == "redis":
        return RedisQuotaStore(
            settings.redis_url,
            timeout_seconds=settings.redis_timeout_ms / 1000,
            lease_seconds=settings.lease_seconds,
        )
    raise ConfigError(f"quota.store: got {settings.store!r}, expected 'embedded' or 'redis'")


class Quotas:
    """Admission for the data plane; also the policy's ``input.usage`` source.

    The usage a policy sees is the tenant's counters as of its last admission or release
    in this supervisor: exact for the embedded store, and for Redis the fleet's counters
    as of this supervisor's last round trip (no extra round trip per decision).
    """

    def __init__(self, store: QuotaStore, registry: Registry, settings: QuotaSettings) -> None:
        self._store = store
        self._registry = registry
        self._fail_open = settings.unsafe_fail_open
        self._last: dict[str, Usage] = {}
        # Per tenant: the tier and overrides last read from the registry and their limits.
        self._limits: dict[str, tuple[str, dict[str, Any], QuotaLimits]] = {}

    def usage(self, tenant: str) -> dict[str, float | int]:
        """The policy's view of the tenant's counters (``{}`` before its first call)."""
        last = self._last.get(tenant)
        return last.as_policy_input() if last is not None else {}

    def limits(self, tenant: str) -> QuotaLimits:
        tier = self._registry.get_tenant(tenant).tier
        overrides = self._registry.quota_overrides(tenant)
        known = self._limits.get(tenant)
        if known is not None and known[0] == tier and known[1] == overrides:
            return known[2]  # parsing the overrides and dataclasses.replace cost ~10 µs a call
        limits = effective_limits(tier, overrides)
        if len(self._limits) >= MAX_TRACKED_TENANTS and tenant not in self._limits:
            self._limits.clear()
        self._limits[tenant] = (tier, overrides, limits)
        return limits

    async def admit(self, tenant: str, request_bytes: int, batch: int) -> Ticket | None:
        """Admit one call or raise QuotaExceededError; ``None`` only in unsafe fail-open mode."""
        limits = self.limits(tenant)
        check_request(limits, request_bytes, batch)
        try:
            ticket = await self._store.admit(tenant, limits)
        except QuotaStoreUnavailableError as exc:
            if not self._fail_open:
                raise
            log.warning("UNSAFE: quota store unavailable, admitting without a quota check", error=str(exc))
            return None
        if ticket.usage is not None:
            if len(self._last) >= MAX_TRACKED_TENANTS and tenant not in self._last:
                self._last.clear()
            self._last[tenant] = ticket.usage
        return ticket

    async def release(self, ticket: Ticket | None, *, success: bool) -> None:
        if ticket is None:
            return
        await self._store.release(ticket, success=success)
        last = self._last.get(ticket.tenant)
        if last is not None:
            daily = last.daily_used - (0 if success else 1)
            self._last[ticket.tenant] = Usage(max(0, last.in_flight - 1), max(0, daily), last.day, last.rate_tokens)

    async def current(self, tenant: str) -> Usage | None:
        """Current counters, or ``None`` when the store cannot say."""
        try:
            return await self._store.usage(tenant, self.limits(tenant))
        except QuotaStoreUnavailableError:
            return None

    async def close(self) -> None:
        await self._store.close()
