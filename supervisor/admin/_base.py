"""What every part of the admin plane shares: its dependencies and the policy check.

Each method asks ``ire.authz`` with the action's name and what it acts on
(``input.resource``) before it reads or changes anything; the transport audits every
call, allowed or not.
"""

from __future__ import annotations

from typing import Any, Protocol

from supervisor.audit import AuditRecord, AuditWriter
from supervisor.home import Home
from supervisor.policy import Authorizer, ReloadResult, RequestFacts
from supervisor.quota.admission import Quotas
from supervisor.registry import Registry
from supervisor.service import Caller


class PolicyReloader(Protocol):
    async def reload(self, trigger: str) -> ReloadResult: ...


class AdminBase:
    def __init__(
        self,
        home: Home,
        registry: Registry,
        authorizer: Authorizer,
        policy: PolicyReloader,
        quotas: Quotas,
        audit: AuditWriter,
    ) -> None:
        self._home = home
        self._settings = home.settings()
        self._registry = registry
        self._authorizer = authorizer
        self._policy = policy
        self._quotas = quotas
        self._audit = audit

    async def _authorize(self, action: str, caller: Caller, record: AuditRecord, resource: dict[str, Any]) -> None:
        record.detail["resource"] = resource
        await self._authorizer.authorize(
            action, caller.principal, caller.tenant, record, request=RequestFacts(peer=caller.peer), resource=resource
        )
