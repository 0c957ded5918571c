"""Authentication: bearer-token verification and the home's token issuer."""

from supervisor.auth.issuer import IssuerKey, jwks_document
from supervisor.auth.jwt import (
    SCOPE_PATTERN,
    TENANT_PATTERN,
    Principal,
    TokenVerifier,
    VerifierSettings,
    bearer_token,
)

__all__ = [
    "SCOPE_PATTERN",
    "TENANT_PATTERN",
    "IssuerKey",
    "Principal",
    "TokenVerifier",
    "VerifierSettings",
    "bearer_token",
    "jwks_document",
]
