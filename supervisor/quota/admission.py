"""Quota admission as the data plane uses it: limits from the registry, a store behind it.

A quota store that cannot answer refuses the call (fail closed), unless the home sets
``quota.unsafe_fail_open``, in which case the call is admitted and a warning is logged
every time.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from supervisor.errors import ConfigError, QuotaStoreUnavailableError
from supervisor.quota.limits import QuotaLimits, effective_limits
from supervisor.quota.memory import MemoryQuotaStore
from supervisor.quota.redis import RedisQuotaStore
from supervisor.quota.store import QuotaStore, Ticket, Usage, check_request
from supervisor.registry import Registry
from supervisor.settings import QuotaSettings

log = structlog.get_logger(__name__)


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
    def __init__(self, store: QuotaStore, registry: Registry, settings: QuotaSettings) -> None:
        self._store = store
        self._registry = registry
        self._fail_open = settings.unsafe_fail_open

    def limits(self, tenant: str) -> QuotaLimits:
        return effective_limits(self._registry.get_tenant(tenant).tier, self._registry.quota_overrides(tenant))

    async def admit(self, tenant: str, request_bytes: int, batch: int) -> Ticket | None:
        """Admit one call or raise QuotaExceededError; ``None`` only in unsafe fail-open mode."""
        limits = self.limits(tenant)
        check_request(limits, request_bytes, batch)
        try:
            return await self._store.admit(tenant, limits)
        except QuotaStoreUnavailableError as exc:
            if not self._fail_open:
                raise
            log.warning("UNSAFE: quota store unavailable, admitting without a quota check", error=str(exc))
            return None

    async def release(self, ticket: Ticket | None, *, success: bool) -> None:
        if ticket is not None:
            await self._store.release(ticket, success=success)

    async def usage(self, tenant: str) -> Usage | None:
        """Current counters, or ``None`` when the store cannot say."""
        try:
            return await self._store.usage(tenant, self.limits(tenant))
        except QuotaStoreUnavailableError:
            return None

    async def close(self) -> None:
        await self._store.close()
