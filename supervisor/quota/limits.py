"""What a tenant may use: defaults per tier, overridden per tenant by platform teams.

Every limit is finite: there is no "unlimited" value, so a typo cannot remove a bound.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sandbox.profile import TIER_DEFAULTS as SANDBOX_TIERS
from supervisor.errors import InvalidInputError

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class QuotaLimits:
    # Token bucket: sustained requests per second, and the burst it allows.
    rate: float
    burst: int
    # Calls in flight at once.
    concurrency: int
    # Predictions per UTC day; only calls that succeed are counted.
    daily: int
    # Largest ModelInfer request and batch (first dimension) the tenant may send.
    max_request_bytes: int
    max_batch: int
    # Models the tenant may register, and the largest one.
    max_models: int
    max_model_bytes: int
    # Handed to the sandbox profile of the tenant's worker.
    memory_bytes: int
    cpu: float
    pids: int
    # Handed to the GPU allocator: "" (none), a MIG profile such as "1g.18gb", or "gpu".
    gpu: str = ""


def _worker_limits(tier: str) -> dict[str, Any]:
    """A tier's worker memory, CPU and pids: the sandbox's tier profile is the one source."""
    profile = SANDBOX_TIERS[tier]
    return {"memory_bytes": profile.memory_bytes, "cpu": profile.cpu, "pids": profile.pids}


TIER_DEFAULTS: Mapping[str, QuotaLimits] = {
    "free": QuotaLimits(
        rate=10,
        burst=20,
        concurrency=4,
        daily=10_000,
        max_request_bytes=1 * MiB,
        max_batch=32,
        max_models=2,
        max_model_bytes=64 * MiB,
        **_worker_limits("free"),
    ),
    "standard": QuotaLimits(
        rate=200,
        burst=400,
        concurrency=32,
        daily=5_000_000,
        max_request_bytes=8 * MiB,
        max_batch=64,
        max_models=20,
        max_model_bytes=512 * MiB,
        **_worker_limits("standard"),
    ),
    "premium": QuotaLimits(
        rate=5_000,
        burst=10_000,
        concurrency=256,
        daily=500_000_000,
        max_request_bytes=16 * MiB,
        max_batch=1024,
        max_models=200,
        max_model_bytes=1 * GiB,
        **_worker_limits("premium"),
    ),
}

_FIELDS = {f.name: f.type for f in dataclasses.fields(QuotaLimits)}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([KMG]i?B?|[KMG])?$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": MiB, "g": GiB}
_GPU = re.compile(r"^(|gpu|\d+g\.\d+gb)$")


def parse_size(text: str) -> int:
    """``256M``, ``2Gi``, ``1048576`` → bytes."""
    match = _SIZE.match(text.strip())
    if not match:
        raise InvalidInputError(f"size {text!r} is invalid; expected e.g. 512M, 2G or a byte count")
    unit = (match.group(2) or "")[:1].lower()
    return int(float(match.group(1)) * _UNITS[unit])


def parse_overrides(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Validate per-tenant overrides: known fields, right types, positive values."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        kind = _FIELDS.get(key)
        if kind is None:
            raise InvalidInputError(f"unknown quota {key!r}; known: {sorted(_FIELDS)}")
        if kind == "str":
            if not isinstance(value, str) or not _GPU.match(value):
                raise InvalidInputError(f"quota {key}: got {value!r}, expected '', 'gpu' or a MIG profile like 1g.18gb")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise InvalidInputError(f"quota {key}: got {type(value).__name__} {value!r}, expected a number")
        elif value <= 0 or (kind == "int" and int(value) != value):
            raise InvalidInputError(f"quota {key}: got {value!r}, expected a positive {kind}")
        else:
            value = int(value) if kind == "int" else float(value)
        out[key] = value
    return out


def effective_limits(tier: str, overrides: Mapping[str, Any] | None = None) -> QuotaLimits:
    base = TIER_DEFAULTS.get(tier)
    if base is None:
        raise InvalidInputError(f"tier {tier!r} has no quota defaults; known: {sorted(TIER_DEFAULTS)}")
    return dataclasses.replace(base, **parse_overrides(overrides or {}))
