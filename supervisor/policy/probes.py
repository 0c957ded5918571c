"""A fixed corpus of input documents that exercises every branch a typical policy takes.

Used to cross-check the compiled path (RVM) against the interpreter that ran the set's
tests: a compiled program that disagrees on any probe is not used. Pure, no I/O.
"""

from __future__ import annotations

import itertools
from typing import Any

from supervisor.auth import Principal
from supervisor.modelgraph import GraphFacts, TensorSpec
from supervisor.policy.document import RequestFacts, build_admission_input, build_input
from supervisor.policy.engine import Query
from supervisor.registry import ModelRecord, Tenant

__all__ = ["probe_documents"]

_TENANT_ACTIONS = ("predict", "model_metadata", "model_ready")
_ADMIN_ACTIONS = ("admin.tenant.create", "admin.tenant.list", "admin.policy.reload")
_SCOPES: tuple[frozenset[str], ...] = (
    frozenset(),
    frozenset({"predict"}),
    frozenset({"admin"}),
    frozenset({"predict", "admin"}),
)
_TIERS = ("free", "standard", "premium")
_NOW_NS = 1_764_000_000_000_000_000
_SPEC = (TensorSpec("input", "FP32", (-1, 64)),)


def _tenant(name: str, tier: str) -> Tenant:
    return Tenant(name=name, tier=tier, created_at=0.0, number=1, labels=(("team", "ml"),))


def _model(owner: str, byte_size: int = 4096) -> ModelRecord:
    return ModelRecord(
        tenant=owner,
        name="mlp",
        version="1",
        sha256="0" * 64,
        byte_size=byte_size,
        inputs=_SPEC,
        outputs=_SPEC,
        registered_at=0.0,
    )


def _authz() -> list[dict[str, Any]]:
    docs = []
    for action, scopes, tier, owner, big in itertools.product(
        (*_TENANT_ACTIONS, *_ADMIN_ACTIONS, "model_delete"), _SCOPES, _TIERS, ("acme", "globex"), (False, True)
    ):
        principal = Principal(subject="probe", tenant="acme", scopes=scopes, token_id="probe", expires_at=0)  # noqa: S106
        request = RequestFacts(bytes=64_000_000 if big else 300, batch=1000 if big else 1, peer="10.0.0.1")
        admin = action.startswith("admin.")
        docs.append(
            build_input(
                action,
                principal,
                _tenant("acme", tier),
                now_ns=_NOW_NS,
                model=None if admin else _model(owner),
                request=request,
                resource={"kind": "tenant", "name": owner, "tier": tier} if admin else None,
            )
        )
    docs.append({})
    docs.append({"version": 2, "action": "predict"})
    return docs


def _admission() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for action, tier, domains, external, size in itertools.product(
        ("model.register", "model.load", "model.delete"),
        _TIERS,
        (frozenset({""}), frozenset({"", "ai.onnx.ml", "custom.ops"})),
        ((), ("weights.bin",)),
        (4096, 200_000_000),
    ):
        graph = GraphFacts(
            ir_version=9,
            opsets=(("", 17),),
            operator_domains=domains,
            external_data=external,
            inputs=_SPEC,
            outputs=_SPEC,
            node_count=5,
            byte_size=size,
        )
        docs.append(build_admission_input(action, _tenant("acme", tier), _model("acme", size), graph, now_ns=_NOW_NS))
    docs.append({})
    return docs


def probe_documents(query: Query) -> list[dict[str, Any]]:
    return _authz() if query is Query.AUTHZ else _admission()
