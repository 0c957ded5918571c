"""Tenants and models: the embedded SQLite registry and the content-addressed model store."""

from supervisor.registry.records import ModelRecord, Tenant, TrustedSigner
from supervisor.registry.sqlite import Registry
from supervisor.registry.store import ModelStore

__all__ = ["ModelRecord", "ModelStore", "Registry", "Tenant", "TrustedSigner"]
