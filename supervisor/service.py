"""The inference data plane: what every transport calls.

It knows tenants, models and workers, and nothing about gRPC. The caller's identity comes
only from the verified token; the tenant named in the token selects the model namespace.
Every call is decided by policy once its model is known, so the policy sees the model's
real facts; a model outside the caller's namespace is NOT_FOUND before any decision, so
the policy cannot be used to probe for it.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from protos import worker_pb2 as pb
from protos.inference import grpc_predict_v2_pb2 as oip
from supervisor.audit import AuditRecord
from supervisor.auth import Principal, TokenVerifier
from supervisor.errors import ModelIntegrityError, TenantNotFoundError, TokenInvalidError
from supervisor.policy import Authorizer, RequestFacts
from supervisor.policy.document import peer_address
from supervisor.registry import ModelRecord, ModelStore, Registry, Tenant
from supervisor.settings import Settings
from supervisor.tensors import check_worker_outputs, decode_request, digest_tensors, encode_response
from supervisor.workers import WorkerPool

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the verified principal, its tenant's registry record, its address."""

    principal: Principal
    tenant: Tenant
    peer: str  # IP address, '' when not an IP connection


class Authenticator:
    """Turns a bearer token into a :class:`Caller`, or raises an AuthenticationError."""

    def __init__(self, verifier: TokenVerifier, registry: Registry) -> None:
        self._verifier = verifier
        self._registry = registry

    def authenticate(self, token: str | None, record: AuditRecord) -> Caller:
        """Verify the bearer token and check that its tenant exists."""
        principal = self._verifier.verify(token)
        record.tenant = principal.tenant
        record.principal = principal.subject
        try:
            tenant = self._registry.get_tenant(principal.tenant)
        except TenantNotFoundError as exc:
            raise TokenInvalidError(f"token names tenant {principal.tenant!r}, which does not exist") from exc
        return Caller(principal, tenant, peer_address(record.peer))


@dataclass(frozen=True)
class ModelView:
    record: ModelRecord
    versions: list[str]


def declared_batch(request: oip.ModelInferRequest) -> int:
    """The largest first dimension the caller declares; the tensors are checked later."""
    return max((max(int(t.shape[0]), 0) for t in request.inputs if t.shape), default=0)


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ModelStore,
        pool: WorkerPool,
        authorizer: Authorizer,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._store = store
        self._pool = pool
        self._authorizer = authorizer

    def _find(self, caller: Caller, name: str, version: str, record: AuditRecord) -> ModelRecord:
        record.model = name
        record.model_version = version
        structlog.contextvars.bind_contextvars(model=name)
        model = self._registry.find_model(caller.principal.tenant, name, version)
        record.model_version = model.version
        record.model_sha256 = model.sha256
        return model

    async def _authorize(
        self, action: str, caller: Caller, model: ModelRecord, request: RequestFacts, record: AuditRecord
    ) -> None:
        await self._authorizer.authorize(action, caller.principal, caller.tenant, record, model=model, request=request)

    async def metadata(self, caller: Caller, name: str, version: str, record: AuditRecord) -> ModelView:
        model = self._find(caller, name, version, record)
        await self._authorize("model_metadata", caller, model, RequestFacts(peer=caller.peer), record)
        return ModelView(model, self._registry.model_versions(caller.principal.tenant, name))

    async def ready(self, caller: Caller, name: str, version: str, record: AuditRecord) -> bool:
        model = self._find(caller, name, version, record)
        await self._authorize("model_ready", caller, model, RequestFacts(peer=caller.peer), record)
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
        self, caller: Caller, request: oip.ModelInferRequest, record: AuditRecord
    ) -> oip.ModelInferResponse:
        model = self._find(caller, request.model_name, request.model_version, record)
        facts = RequestFacts(bytes=request.ByteSize(), batch=declared_batch(request), peer=caller.peer)
        await self._authorize("predict", caller, model, facts, record)
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
            caller.principal.tenant,
            model.sha256,
            lambda: self._load_bytes(model),
            pb.InferRequest(model_key=model.sha256, inputs=decoded.inputs, outputs=decoded.outputs),
        )
        check_worker_outputs(result, decoded.outputs, model.outputs, max_tensor_elements=limits.max_tensor_elements)
        record.output_sha256 = digest_tensors(result.outputs)
        return encode_response(request, model.version, result)
