"""The home's audit key: Ed25519, signs checkpoints and retention records.

The private key lives only in a 0600 PEM file (``keys/audit.pem``); auditors get the
public key from ``ire audit pubkey`` and verify offline with it. It is a separate key from
the token issuer, so a stolen issuer key cannot forge the audit trail and vice versa.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from supervisor.errors import ConfigError
from supervisor.keyfiles import load_ed25519, write_private_key

__all__ = ["AuditKey", "AuditPublicKey"]


class AuditPublicKey:
    """Verifies audit signatures; ``key_id`` names the key in every checkpoint."""

    def __init__(self, key: Ed25519PublicKey) -> None:
        self._key = key
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.key_id = hashlib.sha256(raw).hexdigest()[:32]

    def __repr__(self) -> str:
        return f"AuditPublicKey(key_id={self.key_id!r})"

    @classmethod
    def from_pem(cls, data: bytes, source: str = "public key") -> AuditPublicKey:
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ConfigError(f"cannot load audit {source}: {exc}") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigError(f"audit {source}: got {type(key).__name__}, expected Ed25519")
        return cls(key)

    @classmethod
    def load(cls, path: Path) -> AuditPublicKey:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"cannot read audit public key {str(path)!r}: {exc}") from exc
        return cls.from_pem(data, f"public key {str(path)!r}")

    def pem(self) -> bytes:
        return self._key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            self._key.verify(signature, message)
        except InvalidSignature:
            return False
        return True


class AuditKey:
    """The private half; only the writer holds it."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public = AuditPublicKey(key.public_key())

    def __repr__(self) -> str:
        return f"AuditKey(key_id={self.public.key_id!r})"

    @property
    def key_id(self) -> str:
        return self.public.key_id

    @classmethod
    def generate(cls) -> AuditKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path) -> AuditKey:
        return cls(load_ed25519(path, "audit key"))

    def save(self, path: Path) -> None:
        write_private_key(path, self._key, "audit key")

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)
