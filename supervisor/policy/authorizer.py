"""Ask the policy engine, record the answer in the audit record, refuse unless allowed.

Nothing here knows about gRPC. A denial raises PolicyDeniedError carrying the policy's
reasons; an engine failure of any kind raises PolicyUnavailableError("policy
unavailable"). Both are PERMISSION_DENIED at the edge, and both are audited with the
revision that was in force.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import structlog

from supervisor.audit import AuditRecord
from supervisor.auth import Principal
from supervisor.errors import PolicyDeniedError, PolicyUnavailableError
from supervisor.modelgraph import GraphFacts
from supervisor.policy.decision import UNAVAILABLE, Decision, MalformedDecisionError, parse_decision
from supervisor.policy.document import NO_USAGE, RequestFacts, UsageSource, build_admission_input, build_input
from supervisor.policy.engine import PolicyEngine, Query
from supervisor.policy.errors import PolicyEngineError
from supervisor.registry import ModelRecord, Tenant

log = structlog.get_logger(__name__)

__all__ = ["AUDIT_KEY", "Authorizer"]

#: Where the decision goes in ``AuditRecord.detail``.
AUDIT_KEY = "policy"
_DENIED = "denied by policy"
# Allowing decisions kept for reuse (see Authorizer.authorize); the map is dropped past this.
MAX_REUSED_DECISIONS = 4096


class _Reused(NamedTuple):
    principal: Principal
    tenant: Tenant
    model: ModelRecord | None
    decision: Decision


class Authorizer:
    def __init__(
        self,
        engine: PolicyEngine,
        *,
        show_reasons: bool = True,
        usage: UsageSource = NO_USAGE,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self._engine = engine
        self._show_reasons = show_reasons
        self._usage = usage
        self._clock_ns = clock_ns
        self._reused: dict[tuple[Any, ...], _Reused] = {}

    @property
    def engine(self) -> PolicyEngine:
        return self._engine

    async def authorize(
        self,
        action: str,
        principal: Principal,
        tenant: Tenant,
        record: AuditRecord,
        *,
        model: ModelRecord | None = None,
        request: RequestFacts | None = None,
        resource: Mapping[str, Any] | None = None,
    ) -> Decision:
        """Decide ``action`` with ``ire.authz``; return the allowing decision or raise.

        When the revision's decisions depend only on the call's action, principal, tenant,
        model and request facts (``engine.stable_revision``), an allowing decision is
        reused for the same principal, tenant and model objects and the same facts,
        without building the input document again. Those objects are the token cache's
        and the registry cache's, immutable: a changed tenant, model or token is a new
        object, and a new revision is a new key. Their ids are safe in the key because the
        entry holds the objects, so no other object can take an id while it is there.
        A denial is never reused: it is decided, logged and audited every time.
        """
        revision = self._engine.stable_revision(Query.AUTHZ) if resource is None else None
        key: tuple[Any, ...] = ()
        if revision is not None:
            key = (revision, action, id(principal), id(tenant), id(model), request)
            reused = self._reused.get(key)
            if (
                reused is not None
                and reused.principal is principal
                and reused.tenant is tenant
                and reused.model is model
            ):
                self._audit(record, Query.AUTHZ, reused.decision)
                return reused.decision
        document = build_input(
            action,
            principal,
            tenant,
            now_ns=self._clock_ns(),
            model=model,
            request=request,
            usage=self._usage.usage(tenant.name),
            resource=resource,
        )
        decision = await self.decide(Query.AUTHZ, document, record)
        if revision is not None and decision.revision == revision:
            if len(self._reused) >= MAX_REUSED_DECISIONS:
                self._reused.clear()
            self._reused[key] = _Reused(principal, tenant, model, decision)
        return decision

    async def admit(
        self,
        action: str,
        tenant: Tenant,
        model: ModelRecord,
        graph: GraphFacts,
        record: AuditRecord,
        *,
        principal: Principal | None = None,
    ) -> Decision:
        """Decide ``model.register`` or ``model.load`` with ``ire.admission``; raise unless admitted."""
        document = build_admission_input(action, tenant, model, graph, now_ns=self._clock_ns(), principal=principal)
        return await self.decide(Query.ADMISSION, document, record)

    async def decide(self, query: Query, document: Mapping[str, Any], record: AuditRecord) -> Decision:
        """Evaluate ``query`` on ``document``; audit it; raise unless it allows."""
        engine = self._engine
        try:
            evaluation = await engine.evaluate(query, document)
            decision = parse_decision(evaluation.value, evaluation.revision)
        except (PolicyEngineError, MalformedDecisionError) as exc:
            self._unavailable(record, query, exc.cause, str(exc))
            raise PolicyUnavailableError(UNAVAILABLE) from exc
        except Exception as exc:
            self._unavailable(record, query, "crash", repr(exc))
            raise PolicyUnavailableError(UNAVAILABLE) from exc
        self._audit(record, query, decision)
        if not decision.allow:
            log.info("policy denied", query=query.value, revision=decision.revision[:12], reasons=decision.reasons)
            shown = _DENIED + (": " + "; ".join(decision.reasons) if self._show_reasons and decision.reasons else "")
            raise PolicyDeniedError(shown, decision.reasons)
        return decision

    def _audit(self, record: AuditRecord, query: Query, decision: Decision) -> None:
        record.detail[AUDIT_KEY] = {
            "engine": self._engine.name,
            "query": query.value,
            "revision": decision.revision,
            "decision": "allow" if decision.allow else "deny",
            "reasons": list(decision.reasons),
        }

    def _unavailable(self, record: AuditRecord, query: Query, cause: str, error: str) -> None:
        revision = self._engine.revision
        record.detail[AUDIT_KEY] = {
            "engine": self._engine.name,
            "query": query.value,
            "revision": revision,
            "decision": "unavailable",
            "cause": cause,
            "error": error[:1000],
        }
        log.warning("policy unavailable; refusing the call", query=query.value, cause=cause, error=error[:1000])
