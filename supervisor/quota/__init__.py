"""Tenant quotas: limits per tier and tenant, and admission stores (memory or Redis)."""

from supervisor.quota.limits import TIER_DEFAULTS, QuotaLimits, effective_limits, parse_overrides
from supervisor.quota.store import QuotaStore, Ticket, Usage

__all__ = [
    "TIER_DEFAULTS",
    "QuotaLimits",
    "QuotaStore",
    "Ticket",
    "Usage",
    "effective_limits",
    "parse_overrides",
]
