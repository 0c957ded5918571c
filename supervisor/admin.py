"""The admin plane: what the admin API calls. Every action is decided by policy first.

It knows tenants and the policy set, and nothing about gRPC. Each method asks
``ire.authz`` with the action's name and what it acts on (``input.resource``) before it
reads or changes anything; a refusal leaves no trace but the audit record.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from supervisor.audit import AuditRecord
from supervisor.errors import InvalidInputError
from supervisor.policy import Authorizer, ReloadResult, RequestFacts
from supervisor.registry import Registry, Tenant
from supervisor.service import Caller

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_LABELS", "MAX_PAGE_SIZE", "AdminService", "PolicyReloader", "check_labels"]

DEFAULT_PAGE_SIZE = 100
# One page is built in memory and sent in one message.
MAX_PAGE_SIZE = 1000
# Labels reach every policy decision on the tenant's calls: keep them few and plain.
MAX_LABELS = 32
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._:/@ -]{0,128}")


class PolicyReloader(Protocol):
    async def reload(self, trigger: str) -> ReloadResult: ...


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidInputError(f"got {len(labels)} labels, expected at most {MAX_LABELS}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidInputError(f"label key {key!r} is invalid; expected {_LABEL_KEY.pattern}")
        if not _LABEL_VALUE.fullmatch(value):
            raise InvalidInputError(f"label {key!r} has value {value!r}; expected {_LABEL_VALUE.pattern}")
    return dict(labels)


class AdminService:
    def __init__(self, registry: Registry, authorizer: Authorizer, policy: PolicyReloader) -> None:
        self._registry = registry
        self._authorizer = authorizer
        self._policy = policy

    async def _authorize(self, action: str, caller: Caller, record: AuditRecord, resource: dict[str, Any]) -> None:
        record.detail["resource"] = resource
        await self._authorizer.authorize(
            action, caller.principal, caller.tenant, record, request=RequestFacts(peer=caller.peer), resource=resource
        )

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

    async def reload_policy(self, caller: Caller, record: AuditRecord) -> ReloadResult:
        await self._authorize("admin.policy.reload", caller, record, {"kind": "policy"})
        result = await self._policy.reload("admin api")
        record.detail["reload"] = {"revision": result.revision, "previous": result.previous, "changed": result.changed}
        return result
