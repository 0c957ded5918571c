"""EC P-256 signing keys for model signing, in the PEM files model-signing expects."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from supervisor.keyfiles import write_private_key


def generate_signing_key(private_path: Path, public_path: Path) -> None:
    """Write a new P-256 private key (mode 0600) and its public key."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_private_key(private_path, key, "signing key")
    public_path.write_bytes(
        key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
