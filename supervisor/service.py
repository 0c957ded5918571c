"""The inference data plane: what every transport calls.

It knows tenants, models and workers, and nothing about gRPC. The caller's identity comes
only from the verified token; the tenant named in the token selects the model namespace.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from protos import worker_pb2 as pb
from protos.inference import grpc_predict_v2_pb2 as oip
from supervisor.audit import AuditRecord
from supervisor.auth import Principal, TokenVerifier
from supervisor.errors import ModelIntegrityError, PermissionDeniedError, TenantNotFoundError, TokenInvalidError
from supervisor.registry import ModelRecord, ModelStore, Registry
from supervisor.settings import Settings
from supervisor.tensors import check_worker_outputs, decode_request, digest_tensors, encode_response
from supervisor.workers import WorkerPool

log = structlog.get_logger(__name__)

PREDICT_SCOPE = "predict"


@dataclass(frozen=True)
class ModelView:
    record: ModelRecord
    versions: list[str]


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        verifier: TokenVerifier,
        registry: Registry,
        store: ModelStore,
        pool: WorkerPool,
    ) -> None:
        self._settings = settings
        self._verifier = verifier
        self._registry = registry
        self._store = store
        self._pool = pool

    def authenticate(self, token: str | None, record: AuditRecord) -> Principal:
        """Verify the bearer token and check that its tenant exists."""
        principal = self._verifier.verify(token)
        record.tenant = principal.tenant
        record.principal = principal.subject
        try:
            self._registry.get_tenant(principal.tenant)
        except TenantNotFoundError as exc:
            raise TokenInvalidError(f"token names tenant {principal.tenant!r}, which does not exist") from exc
        if PREDICT_SCOPE not in principal.scopes:
            raise PermissionDeniedError(f"token has scopes {sorted(principal.scopes)}, expected {PREDICT_SCOPE!r}")
        return principal

    def _find(self, principal: Principal, name: str, version: str, record: AuditRecord) -> ModelRecord:
        record.model = name
        record.model_version = version
        structlog.contextvars.bind_contextvars(model=name)
        model = self._registry.find_model(principal.tenant, name, version)
        record.model_version = model.version
        record.model_sha256 = model.sha256
        return model

    def metadata(self, principal: Principal, name: str, version: str, record: AuditRecord) -> ModelView:
        model = self._find(principal, name, version, record)
        return ModelView(model, self._registry.model_versions(principal.tenant, name))

    def ready(self, principal: Principal, name: str, version: str, record: AuditRecord) -> bool:
        self._find(principal, name, version, record)
        return True

    def _load_bytes(self, model: ModelRecord) -> bytes:
        try:
            return self._store.read_verified(model.sha256, self._settings.limits.max_model_bytes)
        except ModelIntegrityError as exc:
            log.error(
                "security event: model integrity check failed",
                tenant=model.tenant,
                model=model.name,
                version=model.version,
                error=str(exc),
            )
            raise

    async def infer(
        self, principal: Principal, request: oip.ModelInferRequest, record: AuditRecord
    ) -> oip.ModelInferResponse:
        model = self._find(principal, request.model_name, request.model_version, record)
        limits = self._settings.limits
        decoded = decode_request(
            request,
            model.inputs,
            model.outputs,
            max_request_bytes=self._settings.server.max_request_bytes,
            max_tensor_elements=limits.max_tensor_elements,
        )
        record.input_sha256 = digest_tensors(decoded.inputs)
        record.detail["batch"] = decoded.batch
        result = await self._pool.infer(
            principal.tenant,
            model.sha256,
            lambda: self._load_bytes(model),
            pb.InferRequest(model_key=model.sha256, inputs=decoded.inputs, outputs=decoded.outputs),
        )
        check_worker_outputs(result, decoded.outputs, model.outputs, max_tensor_elements=limits.max_tensor_elements)
        record.output_sha256 = digest_tensors(result.outputs)
        return encode_response(request, model.version, result)
