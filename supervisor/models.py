"""Model registration: verify the signature, read the graph, ask the admission policy,
store the verified bytes."""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import structlog

from supervisor.audit import AuditRecord
from supervisor.errors import ConfigError, InvalidInputError
from supervisor.home import Home
from supervisor.modelgraph import GraphFacts, read_graph_facts
from supervisor.policy import Authorizer
from supervisor.policy.embedded import EmbeddedEngine
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import load_policy_set
from supervisor.policy.reload import load_and_compile
from supervisor.registry import ModelRecord, Registry, Tenant
from supervisor.registry.records import check_model_name, check_version
from supervisor.signing import verify_model_dir

log = structlog.get_logger(__name__)


def find_onnx(path: Path) -> Path:
    """The single ``.onnx`` file in directory ``path``."""
    if not path.is_dir():
        raise InvalidInputError(f"{path} is not a directory; expected a directory holding one .onnx file")
    found = sorted(p for p in path.iterdir() if p.suffix == ".onnx" and p.is_file())
    if len(found) != 1:
        raise InvalidInputError(f"{path} holds {len(found)} .onnx files, expected exactly one")
    return found[0]


def _next_version(registry: Registry, tenant: str, name: str) -> str:
    numbers = [int(v) for v in registry.model_versions(tenant, name) if v.isdigit()]
    return str(max(numbers, default=0) + 1)


def register_model(
    home: Home,
    registry: Registry,
    tenant: str,
    name: str,
    path: Path,
    version: str = "",
    signature: Path | None = None,
) -> ModelRecord:
    """Register the model in directory ``path`` for ``tenant`` (outside an event loop)."""
    return asyncio.run(register_model_async(home, registry, tenant, name, path, version, signature))


# Authorizers for registrations outside a server, by (policy directory, revision): a batch
# of registrations compiles the home's set once. A changed set has a new revision.
_LOCAL: dict[tuple[Path, str], Authorizer] = {}


def _local_authorizer(home: Home) -> Authorizer:
    policy = home.settings().policy
    if policy.engine != "embedded":
        raise ConfigError(
            f"policy.engine is {policy.engine!r}: register through the server's admin API, "
            "whose engine decides admission"
        )
    key = (home.policies_dir, load_policy_set(home.policies_dir).revision)
    if key not in _LOCAL:
        try:
            compiled = load_and_compile(
                home.policies_dir, use_vm=policy.compiled, deadline_seconds=policy.timeout_seconds
            )
        except PolicySetError as exc:
            raise ConfigError(f"the policy set in {home.policies_dir} is unusable: {exc}") from exc
        _LOCAL.clear()
        _LOCAL[key] = Authorizer(EmbeddedEngine(compiled, timeout_seconds=policy.timeout_seconds))
    return _LOCAL[key]


async def _admit(
    home: Home, tenant: Tenant, record: ModelRecord, facts: GraphFacts, authorizer: Authorizer | None
) -> None:
    audit = AuditRecord(time=time.time(), request_id="", action="model.register", tenant=tenant.name)
    await (authorizer or _local_authorizer(home)).admit("model.register", tenant, record, facts, audit)


async def register_model_async(
    home: Home,
    registry: Registry,
    tenant: str,
    name: str,
    path: Path,
    version: str = "",
    signature: Path | None = None,
    authorizer: Authorizer | None = None,
) -> ModelRecord:
    """Register the model in directory ``path`` for ``tenant``.

    The model must be signed by a signer trusted platform-wide or for ``tenant``, unless
    the home was created with the unsafe development setting that allows unsigned models;
    and ``ire.admission`` must admit it, on facts read from its graph. ``authorizer`` is a
    running server's; without one, the home's policy set is loaded for this decision.
    """
    settings = home.settings()
    tenant_record = registry.get_tenant(tenant)
    check_model_name(name)
    version = check_version(version) if version else _next_version(registry, tenant, name)
    onnx_path = find_onnx(path)
    limit = settings.limits.max_model_bytes
    size = onnx_path.stat().st_size
    if size > limit:
        raise InvalidInputError(f"{onnx_path} is {size} bytes, limit is {limit}")
    store = home.store()
    signer = signature_sha256 = ""
    if signature is None and settings.models.unsafe_allow_unsigned:
        log.warning("UNSAFE: registering an unsigned model", tenant=tenant, model=name, version=version)
        data = onnx_path.read_bytes()
    else:
        verified = verify_model_dir(path, signature, registry.signers_for(tenant), onnx_path, tenant=tenant)
        data, signer = verified.onnx_bytes, verified.signer.name
        signature_sha256 = store.put(verified.bundle, suffix=".sig")
    facts = read_graph_facts(data, max_bytes=limit)
    record = ModelRecord(
        tenant=tenant,
        name=name,
        version=version,
        sha256=hashlib.sha256(data).hexdigest(),
        byte_size=len(data),
        inputs=facts.inputs,
        outputs=facts.outputs,
        registered_at=time.time(),
        signer=signer,
        signature_sha256=signature_sha256,
    )
    await _admit(home, tenant_record, record, facts, authorizer)
    store.put(data)
    registry.add_model(record)
    # Whether "auto" dynamic batching will merge the model's calls, said at onboarding
    # rather than first found in the server's log.
    log.info(
        "model registered",
        tenant=tenant,
        model=name,
        version=version,
        dynamic_batching_auto="merged" if facts.rows_independent else f"call by call: {facts.rows_reason}",
    )
    return record
