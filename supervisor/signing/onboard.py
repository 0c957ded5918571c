"""Sign and register in one step, with a local signing key: what the demo, the benchmarks
and the tests do. A platform team signs in its own pipeline and registers with
``ire model register --signature``; this shortcut exists so that every model the project
itself serves is signed too."""

from __future__ import annotations

from pathlib import Path

from supervisor.home import Home
from supervisor.models import register_model
from supervisor.registry import ModelRecord, Registry
from supervisor.signing.bundle import trusted_signer
from supervisor.signing.keys import generate_signing_key
from supervisor.signing.model_dir import sign_model_dir


def local_signer(registry: Registry, key_dir: Path, name: str = "local-signer", tenant: str = "") -> Path:
    """Create (once) a P-256 key in ``key_dir``, trust it, and return the private key's path."""
    private, public = key_dir / f"{name}.pem", key_dir / f"{name}.pub.pem"
    if not private.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        generate_signing_key(private, public)
        registry.add_signer(trusted_signer(name, tenant, public.read_bytes()))
    return private


def sign_and_register(
    home: Home, registry: Registry, tenant: str, name: str, model_dir: Path, key: Path, version: str = ""
) -> ModelRecord:
    """Sign ``model_dir`` with ``key`` (signature beside the directory) and register it."""
    signature = model_dir.with_name(model_dir.name + ".sig")
    sign_model_dir(model_dir, key, signature)
    return register_model(home, registry, tenant, name, model_dir, version, signature)
