"""Tenants and their quotas, through the admin API."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.admin._base import AdminBase
from supervisor.admin.labels import check_labels
from supervisor.audit import AuditRecord
from supervisor.errors import InvalidInputError
from supervisor.quota import effective_limits, parse_overrides
from supervisor.quota.store import Usage
from supervisor.registry import Tenant
from supervisor.service import Caller

DEFAULT_PAGE_SIZE = 100
# One page is built in memory and sent in one message.
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class QuotaView:
    tenant: Tenant
    overrides: dict[str, Any]
    limits: dict[str, Any]
    usage: Usage | None


def _quota_values(raw: Mapping[str, str]) -> dict[str, Any]:
    """Wire strings to quota values: numbers where they parse, else the string (``gpu``)."""
    out: dict[str, Any] = {}
    for key, text in raw.items():
        try:
            number = float(text)
        except ValueError:
            out[key] = text
            continue
        if not math.isfinite(number):
            raise InvalidInputError(f"quota {key}: got {text!r}, expected a finite number")
        out[key] = number
    return parse_overrides(out)


class TenantAdmin(AdminBase):
    # Tenants

    async def create_tenant(
        self, caller: Caller, name: str, tier: str, labels: Mapping[str, str], record: AuditRecord
    ) -> Tenant:
        tier = tier or "standard"
        resource = {"kind": "tenant", "name": name, "tier": tier, "labels": dict(labels)}
        await self._authorize("admin.tenant.create", caller, record, resource)
        return self._registry.create_tenant(name, tier, check_labels(labels))

    async def list_tenants(
        self, caller: Caller, page_size: int, page_token: str, record: AuditRecord
    ) -> tuple[list[Tenant], str]:
        """One page of tenants by name, after ``page_token`` (the last name of the previous page)."""
        await self._authorize("admin.tenant.list", caller, record, {"kind": "tenant"})
        if page_size < 0 or page_size > MAX_PAGE_SIZE:
            raise InvalidInputError(f"got page_size {page_size}, expected 0..{MAX_PAGE_SIZE}")
        size = page_size or DEFAULT_PAGE_SIZE
        after = [t for t in self._registry.list_tenants() if t.name > page_token]
        page = after[:size]
        return page, page[-1].name if len(after) > size else ""

    async def update_tenant(
        self, caller: Caller, name: str, tier: str, labels: Mapping[str, str], replace: bool, record: AuditRecord
    ) -> Tenant:
        resource = {"kind": "tenant", "name": name, "tier": tier, "labels": dict(labels)}
        await self._authorize("admin.tenant.update", caller, record, resource)
        current = self._registry.get_tenant(name)
        merged = dict(labels) if replace else {**dict(current.labels), **labels}
        return self._registry.update_tenant(name, tier or None, check_labels(merged))

    async def suspend_tenant(self, caller: Caller, name: str, suspended: bool, record: AuditRecord) -> Tenant:
        resource = {"kind": "tenant", "name": name, "suspended": suspended}
        await self._authorize("admin.tenant.suspend", caller, record, resource)
        return self._registry.set_suspended(name, suspended)

    async def delete_tenant(self, caller: Caller, name: str, record: AuditRecord) -> None:
        await self._authorize("admin.tenant.delete", caller, record, {"kind": "tenant", "name": name})
        self._registry.delete_tenant(name)

    # Quotas

    async def set_quota(
        self, caller: Caller, tenant: str, raw: Mapping[str, str], reset: bool, record: AuditRecord
    ) -> QuotaView:
        resource = {"kind": "quota", "tenant": tenant, "overrides": dict(raw), "reset": reset}
        await self._authorize("admin.quota.set", caller, record, resource)
        current = self._registry.get_tenant(tenant)
        overrides = {} if reset else self._registry.quota_overrides(tenant)
        overrides.update(_quota_values(raw))
        effective_limits(current.tier, overrides)  # refuse before storing anything invalid
        self._registry.set_quota_overrides(tenant, overrides)
        return await self._quota_view(tenant)

    async def get_quota(self, caller: Caller, tenant: str, record: AuditRecord) -> QuotaView:
        await self._authorize("admin.quota.get", caller, record, {"kind": "quota", "tenant": tenant})
        return await self._quota_view(tenant)

    async def _quota_view(self, tenant: str) -> QuotaView:
        record = self._registry.get_tenant(tenant)
        overrides = self._registry.quota_overrides(tenant)
        limits = dataclasses.asdict(effective_limits(record.tier, overrides))
        return QuotaView(record, overrides, limits, await self._quotas.current(tenant))
