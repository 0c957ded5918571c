"""cgroups v1 and v2 behind one interface; the version is detected from the mount table."""

from __future__ import annotations

import os
from pathlib import Path

from sandbox.cgroups._files import kill_all
from sandbox.cgroups._mounts import Hierarchy, hierarchies, own_groups
from sandbox.cgroups._protocol import Cgroup, CgroupDriver
from sandbox.cgroups._v1 import V1Driver
from sandbox.cgroups._v2 import V2Driver
from sandbox.errors import SandboxError

__all__ = [
    "Cgroup",
    "CgroupDriver",
    "Hierarchy",
    "V1Driver",
    "V2Driver",
    "detect",
    "detect_version",
    "kill_all",
    "open_driver",
]


def _mounted() -> list[Hierarchy]:
    return hierarchies(Path("/proc/self/mountinfo").read_text())


def detect_version(found: list[Hierarchy] | None = None) -> int:
    """1 when a v1 memory hierarchy is mounted, 2 for a unified hierarchy with memory, else 0.

    A hybrid host (v1 controllers plus an empty v2 mount, like these machines) is v1.
    """
    found = _mounted() if found is None else found
    if any(h.version == 1 and "memory" in h.controllers for h in found):
        return 1
    if any(h.version == 2 and "memory" in h.controllers for h in found):
        return 2
    return 0


def detect() -> tuple[int, list[Hierarchy]]:
    found = _mounted()
    return detect_version(found), found


def open_driver(parent: str, kind: str = "l") -> CgroupDriver:
    """The driver for this host, scoped to this process as ``<kind>-<pid>`` under ``parent``."""
    if not parent or parent.startswith("/") or ".." in Path(parent).parts:
        raise SandboxError(f"cgroup parent {parent!r} must be a relative path without '..'")
    version, found = detect()
    scope = f"{kind}-{os.getpid()}"
    if version == 1:
        own = own_groups(Path("/proc/self/cgroup").read_text())
        return V1Driver(found, own, parent, scope)
    if version == 2:
        mount = next(h.mountpoint for h in found if h.version == 2 and "memory" in h.controllers)
        return V2Driver(mount, parent, scope)
    raise SandboxError("no usable cgroup hierarchy (neither v1 memory nor v2 with memory) is mounted")
