"""The path every authenticated RPC takes, for every service: one place, one order.

authenticate → handler (which asks the policy and does the work) → map errors through the
one status table → append the audit record → reply. The audit record is appended before
the reply leaves; a call that cannot be recorded is refused. The calls that finish in the
same turn of the event loop (those one worker reply answered, say) append their records
together at the end of it, and then reply together (supervisor/audit/turn.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import itertools
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from supervisor.audit import AuditRecord, AuditWriter, Outcome
from supervisor.audit.turn import TurnAppender
from supervisor.auth import bearer_token
from supervisor.errors import (
    AuditWriteError,
    PolicyDeniedError,
    QuotaExceededError,
    ShuttingDownError,
    TokenInvalidError,
)
from supervisor.logs import CALL_CONTEXT, bind_call
from supervisor.metrics import Metrics
from supervisor.service import Authenticator, Caller
from supervisor.transport.retry import quota_trailers
from supervisor.transport.status import mapping_for, public_message
from supervisor.workers.pool import QUEUE_SECONDS

log = structlog.get_logger(__name__)

__all__ = ["CallRunner", "Handler"]

T = TypeVar("T")
# On shutdown, how long no call must arrive before the listener closes (see drain()).
DRAIN_QUIET_SECONDS = 0.5
Handler = Callable[[Caller, AuditRecord], "T | Awaitable[T]"]
# Request ids: 32 hex digits, unique (a counter) and unpredictable (keyed BLAKE2b of it
# under a key drawn once per process): os.urandom per call would be a getrandom() syscall
# on the hot path. A forked child draws its own key, so parent and child never collide.
_id_key = os.urandom(32)
_id_counter = itertools.count()


def _new_id_key() -> None:
    global _id_key
    _id_key = os.urandom(32)


os.register_at_fork(after_in_child=_new_id_key)


def _request_id() -> str:
    return hashlib.blake2b(next(_id_counter).to_bytes(8, "little"), key=_id_key, digest_size=16).hexdigest()


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
    if len(values) > 1:
        # Two credentials on one call: refuse rather than guess which one a proxy checked.
        raise TokenInvalidError(f"got {len(values)} authorization headers, expected one")
    return str(values[0]) if values else None


class CallRunner:
    def __init__(self, authenticator: Authenticator, audit: AuditWriter, metrics: Metrics | None = None) -> None:
        self._authenticator = authenticator
        self._turn = TurnAppender(audit)
        self._metrics = metrics
        self._draining = False
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._last_arrival = 0.0

    async def drain(self, timeout: float) -> bool:
        """Refuse new calls (UNAVAILABLE, before they start) and wait for those in flight.

        Once none is in flight, it waits until none has arrived for ``DRAIN_QUIET_SECONDS``:
        a call already on the wire when the listener closes would otherwise be cancelled
        by gRPC instead of refused. True when every call finished within ``timeout``.
        """
        self._draining = True
        deadline = time.monotonic() + timeout
        while True:
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return False
            quiet_until = self._last_arrival + DRAIN_QUIET_SECONDS
            if time.monotonic() >= min(quiet_until, deadline):
                return True
            await asyncio.sleep(min(quiet_until, deadline) - time.monotonic())

    def _count_refusal(self, exc: Exception, record: AuditRecord) -> None:
        if self._metrics is None:
            return
        if isinstance(exc, PolicyDeniedError):
            self._metrics.observe_refusal(record.tenant, record.action, "policy")
        elif isinstance(exc, QuotaExceededError):
            self._metrics.observe_refusal(record.tenant, record.action, "quota", exc.limit)

    async def run(self, context: grpc.aio.ServicerContext, action: str, handler: Handler[T]) -> T:
        request_id = _request_id()
        record = AuditRecord(time=time.time(), request_id=request_id, action=action, peer=context.peer() or "")
        started = time.perf_counter()
        self._in_flight += 1
        self._idle.clear()
        self._last_arrival = time.monotonic()  # not loop.time(): get_running_loop is a getpid() syscall
        try:
            return await self._run(context, action, handler, record, started)
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    async def _run(
        self, context: grpc.aio.ServicerContext, action: str, handler: Handler[T], record: AuditRecord, started: float
    ) -> T:
        request_id = record.request_id
        result: Any = None
        failure: tuple[grpc.StatusCode, str] | None = None
        extra: tuple[tuple[str, str | bytes], ...] = ()
        context_token = CALL_CONTEXT.set({"request_id": request_id, "action": action})
        try:
            try:
                if self._draining:
                    raise ShuttingDownError("the server is shutting down; retry on another replica")
                caller = self._authenticator.authenticate(bearer_token(_authorization(context)), record)
                bind_call(tenant=caller.principal.tenant)
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
                self._count_refusal(exc, record)
                if isinstance(exc, QuotaExceededError):
                    extra = quota_trailers(exc, failure[1])
            elapsed = time.perf_counter() - started
            record.latency_ms = round(elapsed * 1000, 3)
            try:
                await self._turn.append(record.to_dict(detached=False))  # encoded at the end of this turn
                if self._metrics is not None:
                    self._metrics.audit_write.observe(time.perf_counter() - started - elapsed)
            except AuditWriteError as exc:
                # No audit, no answer: a call that cannot be recorded is not answered.
                log.error("audit write failed; refusing the call", error=str(exc))
                failure = (grpc.StatusCode.UNAVAILABLE, f"audit log unavailable (request id {request_id})")
                extra = ()
            if self._metrics is not None:
                status = failure[0].name if failure is not None else grpc.StatusCode.OK.name
                # Only a model the registry found names a series (its sha256 is then known):
                # a name from the request alone would let callers grow the label set.
                model = record.model if record.model_sha256 else ""
                self._metrics.observe_call(record.tenant, model, action, status, elapsed, QUEUE_SECONDS.get())
        finally:
            CALL_CONTEXT.reset(context_token)
        trailers: tuple[tuple[str, str | bytes], ...] = (("x-request-id", request_id), *extra)
        if failure is not None:
            await context.abort(failure[0], failure[1], trailing_metadata=trailers)
        context.set_trailing_metadata(trailers)
        return result  # type: ignore[no-any-return]
