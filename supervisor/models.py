"""Model registration: verify the signature, read the graph, store the verified bytes."""

from __future__ import annotations

import time
from pathlib import Path

import structlog

from supervisor.errors import InvalidInputError
from supervisor.home import Home
from supervisor.modelgraph import read_graph_facts
from supervisor.registry import ModelRecord, Registry
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
    """Register the model in directory ``path`` for ``tenant``.

    The model must be signed by a signer trusted platform-wide or for ``tenant``, unless
    the home was created with the unsafe development setting that allows unsigned models.
    """
    settings = home.settings()
    registry.get_tenant(tenant)
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
    digest = store.put(data)
    record = ModelRecord(
        tenant=tenant,
        name=name,
        version=version,
        sha256=digest,
        byte_size=len(data),
        inputs=facts.inputs,
        outputs=facts.outputs,
        registered_at=time.time(),
        signer=signer,
        signature_sha256=signature_sha256,
    )
    registry.add_model(record)
    return record
