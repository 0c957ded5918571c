"""The OIP v2 gRPC servicer: converts calls, runs them through the data plane, audits them.

Every RPC that touches a tenant's models goes through
:class:`~supervisor.transport.calls.CallRunner`, which authenticates, maps errors through
the one status table, and appends the audit record before the reply leaves; the service
asks the policy once the model is known. Liveness, readiness and server metadata are
probes that reveal nothing about tenants; they need no token and are not audited.
"""

from __future__ import annotations

import grpc

from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.audit import AuditRecord
from supervisor.errors import NotFoundError
from supervisor.service import Caller, InferenceService
from supervisor.transport.calls import CallRunner

SERVER_NAME = "ire"
EXTENSIONS = ["model_repository_metadata_none"]


class InferenceServicer(oip_grpc.GRPCInferenceServiceServicer):
    def __init__(self, service: InferenceService, calls: CallRunner, version: str) -> None:
        self._service = service
        self._calls = calls
        self._version = version
        self.ready = True

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
        async def handler(caller: Caller, record: AuditRecord) -> oip.ModelReadyResponse:
            try:
                return oip.ModelReadyResponse(
                    ready=await self._service.ready(caller, request.name, request.version, record)
                )
            except NotFoundError:
                return oip.ModelReadyResponse(ready=False)

        return await self._calls.run(context, "model_ready", handler)

    async def ModelMetadata(
        self, request: oip.ModelMetadataRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelMetadataResponse:
        async def handler(caller: Caller, record: AuditRecord) -> oip.ModelMetadataResponse:
            view = await self._service.metadata(caller, request.name, request.version, record)
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

        return await self._calls.run(context, "model_metadata", handler)

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelInferResponse:
        return await self._calls.run(
            context, "predict", lambda caller, record: self._service.infer(caller, request, record)
        )
