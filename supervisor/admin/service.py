"""The admin plane: what the admin API calls. Every action is decided by policy first.

It knows tenants, credentials, models and the policy set, and nothing about gRPC.
"""

from __future__ import annotations

from supervisor.admin.catalog import CatalogAdmin
from supervisor.admin.credentials import CredentialAdmin
from supervisor.admin.tenants import TenantAdmin

__all__ = ["AdminService"]


class AdminService(TenantAdmin, CredentialAdmin, CatalogAdmin):
    """Every admin action: tenants and quotas, tokens and signers, models, policy, audit."""
