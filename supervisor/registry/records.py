"""Registry records."""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor.errors import InvalidInputError
from supervisor.modelgraph import TensorSpec

# Tenant and model names appear in paths, logs and metrics labels: keep them plain.
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

TIERS = ("free", "standard", "premium")


def check_tenant_name(name: str) -> str:
    if not _NAME.match(name):
        raise InvalidInputError(
            f"tenant name {name!r} is invalid; expected lowercase letters, digits and '-', 1-63 chars"
        )
    return name


def check_model_name(name: str) -> str:
    if not _MODEL_NAME.match(name):
        raise InvalidInputError(
            f"model name {name!r} is invalid; expected letters, digits, '.', '_' or '-', 1-128 chars"
        )
    return name


def check_version(version: str) -> str:
    if not _VERSION.match(version):
        raise InvalidInputError(
            f"model version {version!r} is invalid; expected letters, digits, '.', '_' or '-', 1-64 chars"
        )
    return version


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise InvalidInputError(f"tier {tier!r} is unknown; expected one of {list(TIERS)}")
    return tier


@dataclass(frozen=True)
class Tenant:
    name: str
    tier: str
    created_at: float
    # A small integer unique to the tenant for the life of the home (the SQLite rowid);
    # the sandbox derives the tenant's worker uid from it.
    number: int = 0
    labels: tuple[tuple[str, str], ...] = ()
    # A suspended tenant's tokens are refused on every call (admin API, `ire tenant suspend`).
    suspended: bool = False


@dataclass(frozen=True)
class ModelRecord:
    """A registered model version, owned by one tenant."""

    tenant: str
    name: str
    version: str
    sha256: str
    byte_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    registered_at: float
    # The trusted signer whose signature verified at registration; "" when the home allows
    # unsigned models (unsafe development mode) and this one was not signed.
    signer: str = ""
    # sha256 of the stored signature bundle; "" when unsigned.
    signature_sha256: str = ""


@dataclass(frozen=True)
class TrustedSigner:
    """A public key trusted to sign models, platform-wide (tenant "") or for one tenant."""

    name: str
    tenant: str
    public_key_pem: str
    # sha256 of the PEM: the key hint OpenSSF model-signing writes into its bundles.
    key_hint: str
    added_at: float
