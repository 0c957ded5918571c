"""The home's token issuer: an Ed25519 signing key and the tokens it mints.

The private key only ever lives in a 0600 PEM file; verifiers get :meth:`IssuerKey.public_jwk`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from supervisor.auth.jwt import SCOPE_PATTERN, TENANT_PATTERN
from supervisor.errors import ConfigError
from supervisor.keyfiles import load_ed25519, write_private_key

__all__ = ["IssuerKey", "jwks_document"]

#: jti entropy: 128 bits, so token ids never collide in the audit log.
_TOKEN_ID_BYTES = 16


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class IssuerKey:
    """An Ed25519 private key that signs IRE access tokens (alg EdDSA)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._private_key = private_key
        raw = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._x = _b64url(raw)
        # RFC 7638: SHA-256 over the required members, sorted, without whitespace.
        members = {"crv": "Ed25519", "kty": "OKP", "x": self._x}
        canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
        self._kid = _b64url(hashlib.sha256(canonical.encode("ascii")).digest())

    def __repr__(self) -> str:
        return f"IssuerKey(kid={self._kid!r})"

    @classmethod
    def generate(cls) -> IssuerKey:
        """Create a fresh key from the operating system's CSPRNG."""
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> IssuerKey:
        """Read an unencrypted PKCS#8 PEM key; ConfigError when missing, invalid or not Ed25519."""
        return cls(load_ed25519(path, "issuer key"))

    def save(self, path: Path) -> None:
        """Write the key as PKCS#8 PEM to a new file readable by its owner only."""
        write_private_key(path, self._private_key, "issuer key")

    @property
    def kid(self) -> str:
        """The RFC 7638 JWK thumbprint of the public key."""
        return self._kid

    def public_jwk(self) -> dict[str, str]:
        """The public key as a JWK, ready for a JWKS document."""
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self._x,
            "kid": self._kid,
            "alg": "EdDSA",
            "use": "sig",
        }

    def issue(
        self,
        *,
        issuer: str,
        audience: str,
        subject: str,
        tenant: str,
        scopes: Iterable[str],
        ttl_seconds: int,
        now: float | None = None,
    ) -> str:
        """Sign a token for ``subject`` in ``tenant``, valid for ``ttl_seconds`` from ``now``."""
        scope_list = sorted(set(scopes))
        # A scope holding a space would split into extra scopes once joined: refused.
        bad = [s for s in scope_list if not SCOPE_PATTERN.fullmatch(s)]
        if bad:
            raise ConfigError(f"got scopes {bad!r}, expected {SCOPE_PATTERN.pattern!r}")
        if not TENANT_PATTERN.fullmatch(tenant):
            raise ConfigError(f"got tenant {tenant!r}, expected {TENANT_PATTERN.pattern!r}")
        if ttl_seconds <= 0:
            raise ConfigError(f"got ttl_seconds {ttl_seconds!r}, expected > 0")
        issued_at = int(time.time() if now is None else now)
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject,
            "tenant": tenant,
            "scope": " ".join(scope_list),
            "iat": issued_at,
            "exp": issued_at + ttl_seconds,
            "jti": secrets.token_urlsafe(_TOKEN_ID_BYTES),
        }
        return jwt.encode(claims, self._private_key, algorithm="EdDSA", headers={"kid": self._kid})


def jwks_document(keys: Iterable[Mapping[str, str]]) -> dict[str, Any]:
    """Wrap public JWKs into a JWKS document, ``{"keys": [...]}``."""
    return {"keys": [dict(key) for key in keys]}
