"""Model registration: read a model directory, check it, store it, record it."""

from __future__ import annotations

import time
from pathlib import Path

from supervisor.errors import InvalidInputError
from supervisor.home import Home
from supervisor.modelgraph import read_graph_facts
from supervisor.registry import ModelRecord, Registry
from supervisor.registry.records import check_model_name, check_version


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
    home: Home, registry: Registry, tenant: str, name: str, path: Path, version: str = ""
) -> ModelRecord:
    """Register the model in directory ``path`` for ``tenant``."""
    settings = home.settings()
    registry.get_tenant(tenant)
    check_model_name(name)
    onnx_path = find_onnx(path)
    limit = settings.limits.max_model_bytes
    size = onnx_path.stat().st_size
    if size > limit:
        raise InvalidInputError(f"{onnx_path} is {size} bytes, limit is {limit}")
    data = onnx_path.read_bytes()
    facts = read_graph_facts(data, max_bytes=limit)
    version = check_version(version) if version else _next_version(registry, tenant, name)
    digest = home.store().put(data)
    record = ModelRecord(
        tenant=tenant,
        name=name,
        version=version,
        sha256=digest,
        byte_size=len(data),
        inputs=facts.inputs,
        outputs=facts.outputs,
        registered_at=time.time(),
    )
    registry.add_model(record)
    return record
