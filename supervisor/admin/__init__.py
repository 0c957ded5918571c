"""The admin plane: tenants, quotas, credentials, models, policy and audit, by policy."""

from __future__ import annotations

from supervisor.admin._base import PolicyReloader
from supervisor.admin.credentials import SCOPES, IssuedToken
from supervisor.admin.labels import MAX_LABELS, check_labels
from supervisor.admin.service import AdminService
from supervisor.admin.tenants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, QuotaView

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_LABELS",
    "MAX_PAGE_SIZE",
    "SCOPES",
    "AdminService",
    "IssuedToken",
    "PolicyReloader",
    "QuotaView",
    "check_labels",
]
