"""The confinement profile: the resource limits one worker (or one probed command) gets.

Defaults come per tenant tier; a tenant's quotas override them through
:func:`profile_for`, the single place the two meet.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from sandbox.errors import SandboxError

MiB = 1024 * 1024
GiB = 1024 * MiB


@dataclass(frozen=True)
class Profile:
    # Memory the worker's cgroup may use (anonymous memory, page cache and its tmpfs);
    # above it the kernel's OOM killer ends the worker and the call gets RESOURCE_EXHAUSTED.
    memory_bytes: int
    # CPU time per wall-clock time, in CPUs (0.5 = half of one CPU), enforced by CFS quota.
    cpu: float
    # Tasks (processes and threads) in the cgroup: bounds fork bombs and thread storms.
    pids: int
    # RLIMIT_NOFILE: open file descriptors.
    open_files: int
    # RLIMIT_FSIZE: the largest file the worker may write (its tmpfs is bounded too).
    file_size_bytes: int
    # Wall-clock seconds for one unit of work: one call to a worker, one `ire sandbox run`.
    wall_seconds: float
    # Size of the private tmpfs mounted on /tmp; it counts against memory_bytes as well.
    tmp_bytes: int

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise SandboxError(f"profile field {f.name}: got {value!r}, expected a positive number")


TIER_DEFAULTS: Mapping[str, Profile] = MappingProxyType(
    {
        "free": Profile(
            memory_bytes=512 * MiB,
            cpu=0.5,
            pids=64,
            open_files=256,
            file_size_bytes=64 * MiB,
            wall_seconds=30.0,
            tmp_bytes=16 * MiB,
        ),
        "standard": Profile(
            memory_bytes=2 * GiB,
            cpu=1.0,
            pids=128,
            open_files=1024,
            file_size_bytes=256 * MiB,
            wall_seconds=60.0,
            tmp_bytes=64 * MiB,
        ),
        "premium": Profile(
            memory_bytes=8 * GiB,
            cpu=2.0,
            pids=256,
            open_files=4096,
            file_size_bytes=1 * GiB,
            wall_seconds=120.0,
            tmp_bytes=256 * MiB,
        ),
    }
)

_FIELDS = frozenset(f.name for f in dataclasses.fields(Profile))


def profile_for(tier: str, overrides: Mapping[str, int | float] | None = None) -> Profile:
    """The tier's default profile with a tenant's quota ``overrides`` applied."""
    base = TIER_DEFAULTS.get(tier)
    if base is None:
        raise SandboxError(f"tier {tier!r} has no confinement profile; expected one of {sorted(TIER_DEFAULTS)}")
    values: dict[str, Any] = dict(overrides or {})
    unknown = set(values) - _FIELDS
    if unknown:
        raise SandboxError(f"unknown profile fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
    return dataclasses.replace(base, **values)


_SIZE = re.compile(r"^(\d+)([KMGT]?)(i?B)?$", re.IGNORECASE)
_UNITS = {"": 1, "K": 1024, "M": MiB, "G": GiB, "T": 1024 * GiB}


def parse_size(text: str) -> int:
    """``256M``, ``1G``, ``512MiB`` or a plain byte count, in powers of 1024."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise SandboxError(f"size {text!r} is not understood; expected e.g. 256M, 1G or 1048576")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]
