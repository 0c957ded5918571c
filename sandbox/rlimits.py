"""Per-process resource limits, set after the uid change and before Landlock and seccomp.

Limits are only ever lowered: root here lacks CAP_SYS_RESOURCE, so a hard limit cannot be
raised, and a worker must not be able to raise its soft limits back up either.
"""

from __future__ import annotations

import resource

from sandbox.profile import Profile


def _lower(which: int, value: int) -> None:
    _soft, hard = resource.getrlimit(which)
    if hard != resource.RLIM_INFINITY:
        value = min(value, hard)
    resource.setrlimit(which, (value, value))


def apply(profile: Profile) -> None:
    """Bound open files and file size, and forbid core dumps (they would hold model bytes)."""
    _lower(resource.RLIMIT_NOFILE, profile.open_files)
    _lower(resource.RLIMIT_FSIZE, profile.file_size_bytes)
    _lower(resource.RLIMIT_CORE, 0)
