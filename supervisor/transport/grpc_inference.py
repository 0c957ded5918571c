"""The OIP v2 gRPC servicer: converts calls, runs them through the data plane, audits them.

Every RPC that touches a tenant's models goes through :meth:`InferenceServicer._call`,
which authenticates, maps errors through the one status table, and appends the audit
record before the reply leaves. Liveness, readiness and server metadata are probes that
reveal nothing about tenants; they need no token and are not audited.
"""

from __future__ import annotations

import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
import structlog

from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.audit import AuditRecord, AuditWriter, Outcome
from supervisor.auth import Principal, bearer_token
from supervisor.errors import AuditWriteError, NotFoundError, TokenInvalidError
from supervisor.service import InferenceService
from supervisor.transport.status import mapping_for, public_message

log = structlog.get_logger(__name__)

T = TypeVar("T")
Handler = Callable[[Principal, AuditRecord], "T | Awaitable[T]"]

SERVER_NAME = "ire"
EXTENSIONS = ["model_repository_metadata_none"]


def _authorization(context: grpc.aio.ServicerContext) -> str | None:
    values = [v for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
    if len(values) > 1:
        # Two credentials on one call: refuse rather than guess which one a proxy checked.
        raise TokenInvalidError(f"got {len(values)} authorization headers, expected one")
    return str(values[0]) if values else None


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService, audit: AuditWriter, version: str) -> None:
        self._service = service
        self._audit = audit
        self._version = version
        self.ready = True

    async def _call(self, context: grpc.aio.ServicerContext, action: str, handler: Handler[T]) -> T:
        request_id = uuid.uuid4().hex
        record = AuditRecord(time=time.time(), request_id=request_id, action=action, peer=context.peer() or "")
        started = time.perf_counter()
        result: Any = None
        failure: tuple[grpc.StatusCode, str] | None = None
        with structlog.contextvars.bound_contextvars(request_id=request_id, action=action):
            try:
                principal = self._service.authenticate(bearer_token(_authorization(context)), record)
                structlog.contextvars.bind_contextvars(tenant=principal.tenant)
                result = handler(principal, record)
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
            record.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            try:
                self._audit.append(record.to_dict())
            except AuditWriteError as exc:
                # No audit, no prediction: a call that cannot be recorded is not answered.
                log.error("audit write failed; refusing the call", error=str(exc))
                failure = (grpc.StatusCode.UNAVAILABLE, f"audit log unavailable (request id {request_id})")
        trailers = (("x-request-id", request_id),)
        if failure is not None:
            await context.abort(failure[0], failure[1], trailing_metadata=trailers)
        context.set_trailing_metadata(trailers)
        return result  # type: ignore[no-any-return]

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: oip.ServerReadyRequest, context: grpc.aio.ServicerContext
    ) -> oip.ServerReadyResponse:
        return oip.ServerReadyResponse(ready=self.ready)

    async def ServerMetadata(
        self, request: oip.ServerMetadataRequest, context: grpc.aio.ServicerContext
    ) -> oip.ServerMetadataResponse:
        return oip.ServerMetadataResponse(name=SERVER_NAME, version=self._version, extensions=EXTENSIONS)

    async def ModelReady(
        self, request: oip.ModelReadyRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelReadyResponse:
        def handler(principal: Principal, record: AuditRecord) -> oip.ModelReadyResponse:
            try:
                return oip.ModelReadyResponse(
                    ready=self._service.ready(principal, request.name, request.version, record)
                )
            except NotFoundError:
                return oip.ModelReadyResponse(ready=False)

        return await self._call(context, "model_ready", handler)

    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelMetadataResponse:
        def handler(principal: Principal, record: AuditRecord) -> oip.ModelMetadataResponse:
            view = self._service.metadata(principal, request.name, request.version, record)
            meta = oip.ModelMetadataResponse
            return meta(
                name=view.record.name,
                versions=view.versions,
                platform="onnxruntime_onnx",
                inputs=[
                    meta.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape) for s in view.record.inputs
                ],
                outputs=[
                    meta.TensorMetadata(name=s.name, datatype=s.datatype, shape=s.shape) for s in view.record.outputs
                ],
            )

        return await self._call(context, "model_metadata", handler)

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelInferResponse:
        return await self._call(
            context, "predict", lambda principal, record: self._service.infer(principal, request, record)
        )
