"""The inference data plane: what every transport calls.

It knows tenants, models and workers, and nothing about gRPC. The caller's identity comes
only from the verified token; the tenant named in the token selects the model namespace.
Every call is decided by policy once its model is known, so the policy sees the model's
real facts; a model outside the caller's namespace is NOT_FOUND before any decision, so
the policy cannot be used to probe for it.

A prediction then takes, in order: tensor validation, quota admission, the admission
policy for loading the model (once per model and policy revision), the worker, and the
check of the worker's reply. What a failed call took from the quota is given back as
``supervisor/quota/store.py`` documents.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import structlog

from protos.inference import grpc_predict_v2_pb2 as oip
from supervisor.audit import AuditRecord
from supervisor.auth import Principal
from supervisor.errors import TenantNotFoundError, TenantSuspendedError, TokenInvalidError, TokenRevokedError
from supervisor.logs import bind_call
from supervisor.modelgraph import GraphFacts, read_graph_facts
from supervisor.policy import Authorizer, RequestFacts
from supervisor.policy.document import peer_address
from supervisor.quota.admission import Quotas
from supervisor.registry import ModelRecord, ModelStore, Registry, Tenant
from supervisor.settings import Settings
from supervisor.signing.load import load_model_bytes
from supervisor.tensors import checked_response, decode_request, put_aside_back
from supervisor.workers import WorkerPool
from supervisor.workers.batching import Batcher, stackable

log = structlog.get_logger(__name__)


class Caller(NamedTuple):
    """Who is calling: the verified principal, its tenant's registry record, its address."""

    # A NamedTuple: one is made on every call, and a frozen dataclass costs more to build.
    principal: Principal
    tenant: Tenant
    peer: str  # IP address, '' when not an IP connection


class Verifier(Protocol):
    def verify(self, token: str | None, *, now: float | None = None) -> Principal: ...


# Models whose load-time admission passed, per (tenant, sha256, policy revision); bounded.
MAX_ADMITTED_LOADS = 4096


class Authenticator:
    """Turns a bearer token into a :class:`Caller`, or raises an AuthenticationError."""

    def __init__(self, verifier: Verifier, registry: Registry) -> None:
        self._verifier = verifier
        self._registry = registry

    def authenticate(self, token: str | None, record: AuditRecord) -> Caller:
        """Verify the bearer token; check it is not revoked and its tenant exists and is active.

        The revocation set is read through the registry's cache, refreshed whenever the
        database changes, so a revocation applies to tokens the verifier has cached too.
        """
        principal = self._verifier.verify(token)
        record.tenant = principal.tenant
        record.principal = principal.subject
        if principal.token_id in self._registry.revoked_token_ids():
            raise TokenRevokedError(f"token {principal.token_id!r} has been revoked")
        try:
            tenant = self._registry.get_tenant(principal.tenant)
        except TenantNotFoundError as exc:
            raise TokenInvalidError(f"token names tenant {principal.tenant!r}, which does not exist") from exc
        if tenant.suspended:
            raise TenantSuspendedError(f"tenant {tenant.name!r} is suspended")
        return Caller(principal, tenant, peer_address(record.peer))


@dataclass(frozen=True)
class ModelView:
    record: ModelRecord
    versions: list[str]


def declared_batch(request: oip.ModelInferRequest) -> int:
    """The largest first dimension the caller declares; the tensors are checked later."""
    batch = 0
    for tensor in request.inputs:
        shape = tensor.shape
        if shape and shape[0] > batch:
            batch = shape[0]
    return batch


class InferenceService:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        store: ModelStore,
        pool: WorkerPool,
        authorizer: Authorizer,
        quotas: Quotas,
    ) -> None:
        self._settings = settings
        # Inputs this large go to the worker's input region without passing through the
        # worker message (supervisor/workers/region.py); 0 when there is no region.
        workers = settings.workers
        self._aside_min_bytes = workers.input_region_min_bytes if workers.input_region else 0
        self._registry = registry
        self._store = store
        self._pool = pool
        self._authorizer = authorizer
        self._quotas = quotas
        # Per admitted (tenant, model, policy revision): the model's graph facts, and whether
        # dynamic batching may merge its calls.
        self._load_admitted: OrderedDict[tuple[str, str, str], tuple[GraphFacts, bool]] = OrderedDict()
        workers = settings.workers
        batching = workers.dynamic_batching
        self._batcher = (
            Batcher(
                pool.infer,
                max_rows=workers.max_batch_rows,
                wait_seconds=workers.batch_wait_ms / 1000,
                target_rows=workers.batch_target_rows,
            )
            if batching != "off"
            else None
        )
        self._batch_unproven = batching == "on"  # else only models whose rows are proven independent

    def _find(self, caller: Caller, name: str, version: str, record: AuditRecord) -> ModelRecord:
        record.model = name
        record.model_version = version
        bind_call(model=name)
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
        """The model's bytes, checked against its signature, as a worker receives them."""
        return load_model_bytes(model, self._store, self._registry, self._settings)

    async def _admit_load(self, caller: Caller, model: ModelRecord, record: AuditRecord) -> bool:
        """Ask ``ire.admission`` whether this model may be loaded, once per policy revision.

        Returns whether dynamic batching may merge the model's calls: its inputs and outputs
        all have a dynamic first dimension, and its rows are proven independent (or
        ``workers.dynamic_batching`` is "on").
        """
        key = (caller.tenant.name, model.sha256, self._authorizer.engine.revision)
        if (admitted := self._load_admitted.get(key)) is not None:
            self._load_admitted.move_to_end(key)
            return admitted[1]
        facts = read_graph_facts(self._load_bytes(model), max_bytes=self._settings.limits.max_model_bytes)
        batchable = (
            self._batcher is not None
            and (facts.rows_independent or self._batch_unproven)
            and stackable([s.shape for s in model.inputs], [s.shape for s in model.outputs])
        )
        if self._batcher is not None and not self._batch_unproven:
            log.info(
                "dynamic batching " + ("on" if facts.rows_independent else "off") + " for this model",
                model=model.name,
                version=model.version,
                reason=facts.rows_reason or "its rows are proven independent",
            )
        decision = record.detail.get("policy")
        try:
            await self._authorizer.admit("model.load", caller.tenant, model, facts, record, principal=caller.principal)
        finally:
            record.detail["admission"] = record.detail.get("policy")
            if decision is not None:
                record.detail["policy"] = decision
        self._load_admitted[key] = (facts, batchable)
        if len(self._load_admitted) > MAX_ADMITTED_LOADS:
            self._load_admitted.popitem(last=False)
        return batchable

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
            size=facts.bytes,
            aside_min_bytes=self._aside_min_bytes,
        )
        record.input_sha256 = decoded.digest
        record.detail["batch"] = decoded.batch
        if not model.signer:
            record.detail["unsigned_model"] = True
        ticket = await self._quotas.admit(caller.tenant.name, facts.bytes, decoded.batch)
        if ticket is not None and ticket.usage is not None:
            record.detail["quota"] = ticket.usage.as_policy_input()
        success = False
        try:
            batchable = await self._admit_load(caller, model, record)
            message = decoded.message
            message.infer.model_key = model.sha256
            load = lambda: self._load_bytes(model)  # noqa: E731 - called only when the worker lacks the model
            if batchable and self._batcher is not None and (rows := decoded.rows):
                put_aside_back(message, decoded.aside)  # merged runs concatenate the bytes
                result, shared = await self._batcher.infer(
                    caller.principal.tenant, model.sha256, load, message, rows, decoded.output_bytes
                )
                if shared > 1:
                    record.detail["dynamic_batch"] = shared  # calls of this tenant in the same run
            else:
                result = await self._pool.infer(
                    caller.principal.tenant,
                    model.sha256,
                    load,
                    message,
                    decoded.aside,
                    output_bytes=decoded.output_bytes,
                )
            response, output_sha256 = checked_response(
                request,
                model.version,
                result,
                decoded.outputs,
                model.outputs,
                max_tensor_elements=limits.max_tensor_elements,
            )
            success = True
        finally:
            await self._quotas.release(ticket, success=success)
        if (placed := self._pool.placement(caller.principal.tenant)) is not None:
            record.detail["gpu_slice"] = placed
        record.output_sha256 = output_sha256
        return response
