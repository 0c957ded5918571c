"""The path every authenticated RPC takes, for every service: one place, one order.

authenticate → handler (which asks the policy and does the work) → map errors through the
one status table → append the audit record → reply. The audit record is appended before
the reply leaves; a call that cannot be recorded is refused.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from supervisor.audit import AuditRecord, AuditWriter, Outcome
from supervisor.auth import bearer_token
from supervisor.errors import AuditWriteError, QuotaExceededError, TokenInvalidError
from supervisor.service import Authenticator, Caller
from supervisor.transport.retry import quota_trailers
from supervisor.transport.status import mapping_for, public_message

log = structlog.get_logger(__name__)

__all__ = ["CallRunner", "Handler"]

T = TypeVar("T")
Handler = Callable[[Caller, AuditRecord], "T | Awaitable[T]"]


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
    if len(values) > 1:
        # Two credentials on one call: refuse rather than guess which one a proxy checked.
        raise TokenInvalidError(f"got {len(values)} authorization headers, expected one")
    return str(values[0]) if values else None


class CallRunner:
    def __init__(self, authenticator: Authenticator, audit: AuditWriter) -> None:
        self._authenticator = authenticator
        self._audit = audit

    async def run(self, context: grpc.aio.ServicerContext, action: str, handler: Handler[T]) -> T:
        request_id = uuid.uuid4().hex
        record = AuditRecord(time=time.time(), request_id=request_id, action=action, peer=context.peer() or "")
        started = time.perf_counter()
        result: Any = None
        failure: tuple[grpc.StatusCode, str] | None = None
        extra: tuple[tuple[str, str | bytes], ...] = ()
        with structlog.contextvars.bound_contextvars(request_id=request_id, action=action):
            try:
                caller = self._authenticator.authenticate(bearer_token(_authorization(context)), record)
                structlog.contextvars.bind_contextvars(tenant=caller.principal.tenant)
                result = handler(caller, record)
                if inspect.isawaitable(result):
                    result = await result
                record.outcome, record.status = Outcome.ALLOWED, grpc.StatusCode.OK.name
            except Exception as exc:  # noqa: BLE001 - every failure is mapped and audited
                mapping = mapping_for(exc)
                record.outcome, record.status = mapping.outcome, mapping.code.name
                level = log.error if mapping.code == grpc.StatusCode.INTERNAL else log.info
                level(
                    "call refused",
                    status=mapping.code.name,
                    error=str(exc),
                    error_type=type(exc).__name__,
                    exc_info=mapping.code == grpc.StatusCode.INTERNAL,
                )
                failure = (mapping.code, public_message(exc, mapping, request_id))
                if isinstance(exc, QuotaExceededError):
                    extra = quota_trailers(exc, failure[1])
            record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            try:
                self._audit.append(record.to_dict())
            except AuditWriteError as exc:
                # No audit, no answer: a call that cannot be recorded is not answered.
                log.error("audit write failed; refusing the call", error=str(exc))
                failure = (grpc.StatusCode.UNAVAILABLE, f"audit log unavailable (request id {request_id})")
                extra = ()
        trailers: tuple[tuple[str, str | bytes], ...] = (("x-request-id", request_id), *extra)
        if failure is not None:
            await context.abort(failure[0], failure[1], trailing_metadata=trailers)
        context.set_trailing_metadata(trailers)
        return result  # type: ignore[no-any-return]
