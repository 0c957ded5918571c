"""The input document every decision is made on: a stable, versioned contract.

Pure functions, no I/O. The shape is documented in ``docs/policies.md``; a change that
removes or retypes a field needs a new :data:`INPUT_VERSION`, so that policies written for
the old shape refuse the new one instead of misreading it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

from supervisor.auth import Principal
from supervisor.modelgraph import GraphFacts
from supervisor.registry import ModelRecord, Tenant

__all__ = [
    "INPUT_VERSION",
    "NO_USAGE",
    "RequestFacts",
    "UsageSource",
    "build_admission_input",
    "build_input",
    "graph_document",
    "model_document",
    "peer_address",
    "tenant_document",
]

INPUT_VERSION = 1


class RequestFacts(NamedTuple):
    """What the policy may know about the request itself, before its tensors are decoded.

    ``batch`` is the first dimension of the first input as the caller declared it; the
    request is validated against the model only after the decision.
    """

    # A NamedTuple: one is made on every call, and a frozen dataclass costs more to build.
    bytes: int = 0
    batch: int = 0
    peer: str = ""


class UsageSource(Protocol):
    """The tenant's current quota counters, as the policy sees them (``input.usage``)."""

    def usage(self, tenant: str) -> Mapping[str, Any]: ...


class _NoUsage:
    """Until quotas exist, every tenant's usage is ``{}``; the quota store replaces this."""

    def usage(self, tenant: str) -> Mapping[str, Any]:
        return {}


NO_USAGE: UsageSource = _NoUsage()


def peer_address(peer: str) -> str:
    """The IP address in a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``); '' otherwise."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        host = rest.rsplit(":", 1)[0]
    elif kind == "ipv6":
        host = rest.rsplit(":", 1)[0].strip("[]")
    else:
        return ""
    return _normalized_ip(host)


@functools.lru_cache(maxsize=4096)
def _normalized_ip(host: str) -> str:
    """Parsing costs several µs a call; a client keeps its address, so it is remembered (bounded)."""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""


def principal_document(principal: Principal) -> dict[str, Any]:
    return {"sub": principal.subject, "scopes": sorted(principal.scopes), "tenant": principal.tenant}


def tenant_document(tenant: Tenant) -> dict[str, Any]:
    return {"id": tenant.name, "tier": tenant.tier, "labels": dict(tenant.labels)}


def model_document(model: ModelRecord | None) -> dict[str, Any]:
    """The model's registry facts; ``{}`` for actions on no model (admin actions)."""
    if model is None:
        return {}
    return {
        "name": model.name,
        "version": model.version,
        "owner": model.tenant,
        "sha256": model.sha256,
        # Filled by model signing; '' until a model records its signer.
        "signer": str(getattr(model, "signer", "") or ""),
        "labels": dict(getattr(model, "labels", ()) or {}),
        "byte_size": model.byte_size,
    }


def build_input(
    action: str,
    principal: Principal,
    tenant: Tenant,
    *,
    now_ns: int,
    model: ModelRecord | None = None,
    request: RequestFacts | None = None,
    usage: Mapping[str, Any] | None = None,
    resource: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The input document for ``action`` by ``principal`` of ``tenant``.

    ``tenant`` comes from the registry, looked up by the verified token's tenant claim;
    nothing in it is taken from the request.
    """
    facts = request or RequestFacts()
    return {
        "version": INPUT_VERSION,
        "action": action,
        "principal": principal_document(principal),
        "tenant": tenant_document(tenant),
        "model": model_document(model),
        "request": {"bytes": facts.bytes, "batch": facts.batch, "peer": facts.peer},
        "usage": dict(usage or {}),
        "resource": dict(resource or {}),
        "time": {"ns": now_ns},
    }


def graph_document(facts: GraphFacts) -> dict[str, Any]:
    """Facts read from the ONNX bytes without running them, for ``ire.admission``."""
    return {
        "ir_version": facts.ir_version,
        "opsets": dict(facts.opsets),
        "operator_domains": sorted(facts.operator_domains),
        "external_data": list(facts.external_data),
        "node_count": facts.node_count,
        "byte_size": facts.byte_size,
    }


def build_admission_input(
    action: str,
    tenant: Tenant,
    model: ModelRecord,
    graph: GraphFacts,
    *,
    now_ns: int,
    principal: Principal | None = None,
) -> dict[str, Any]:
    """The input document of ``ire.admission`` (``model.register`` or ``model.load``)."""
    return {
        "version": INPUT_VERSION,
        "action": action,
        "principal": principal_document(principal) if principal is not None else {},
        "tenant": tenant_document(tenant),
        "model": model_document(model),
        "graph": graph_document(graph),
        "time": {"ns": now_ns},
    }
