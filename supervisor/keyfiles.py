"""Private keys on disk: PKCS#8 PEM files created 0600, read back with their type checked.

Shared by the token issuer key, the audit key and local model-signing keys.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from supervisor.errors import ConfigError


def write_private_key(path: Path, key: PrivateKeyTypes, what: str) -> None:
    """Write ``key`` as unencrypted PKCS#8 PEM to a new file readable by its owner only.

    O_EXCL: never follow a planted symlink nor reuse a file another user may already hold
    open; mode 0600 from creation, so there is no window where the key is readable.
    """
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot create {what} {str(path)!r}: {exc}") from exc
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def load_ed25519(path: Path, what: str) -> Ed25519PrivateKey:
    """Read an unencrypted PEM Ed25519 key; ConfigError when missing, invalid or another type."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"cannot load {what} {str(path)!r}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what} {str(path)!r}: got {type(key).__name__}, expected Ed25519")
    return key
