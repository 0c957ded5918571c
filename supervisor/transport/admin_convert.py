"""Registry records and admin views to ``ire.admin.v1`` messages."""

from __future__ import annotations

from typing import Any

from protos import admin_pb2 as pb
from supervisor.admin import QuotaView
from supervisor.modelgraph import TensorSpec
from supervisor.registry import ModelRecord, Tenant, TrustedSigner

__all__ = ["model_pb", "quota_pb", "signer_pb", "tenant_pb"]


def tenant_pb(tenant: Tenant) -> pb.Tenant:
    return pb.Tenant(
        name=tenant.name,
        tier=tenant.tier,
        labels=dict(tenant.labels),
        created_at=tenant.created_at,
        suspended=tenant.suspended,
    )


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def quota_pb(view: QuotaView) -> pb.Quota:
    quota = pb.Quota(
        tenant=view.tenant.name,
        tier=view.tenant.tier,
        overrides={k: _text(v) for k, v in view.overrides.items()},
        limits={k: _text(v) for k, v in view.limits.items()},
        usage_known=view.usage is not None,
    )
    if view.usage is not None:
        quota.daily_used = view.usage.daily_used
        quota.in_flight = view.usage.in_flight
        quota.rate_tokens = view.usage.rate_tokens
    return quota


def signer_pb(signer: TrustedSigner) -> pb.Signer:
    return pb.Signer(
        name=signer.name,
        tenant=signer.tenant,
        public_key_pem=signer.public_key_pem,
        key_hint=signer.key_hint,
        added_at=signer.added_at,
    )


def _specs(specs: tuple[TensorSpec, ...]) -> list[pb.TensorSpec]:
    return [pb.TensorSpec(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in specs]


def model_pb(model: ModelRecord) -> pb.Model:
    return pb.Model(
        tenant=model.tenant,
        name=model.name,
        version=model.version,
        sha256=model.sha256,
        byte_size=model.byte_size,
        signer=model.signer,
        registered_at=model.registered_at,
        inputs=_specs(model.inputs),
        outputs=_specs(model.outputs),
    )
