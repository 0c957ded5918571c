"""The one interface both cgroup versions implement."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from sandbox.devices import Device
from sandbox.profile import Profile


class Cgroup(Protocol):
    """One worker's group (a directory per hierarchy on v1, one directory on v2)."""

    @property
    def name(self) -> str: ...

    @property
    def paths(self) -> tuple[Path, ...]: ...

    def set_limits(self, profile: Profile) -> None:
        """Write memory, CPU and pids limits."""

    def allow_devices(self, devices: Sequence[Device]) -> bool:
        """Deny every device to the group except ``devices`` (read and write); say whether
        the kernel enforces it (cgroup v1's devices controller; v2 needs an eBPF program)."""

    def attach(self, pid: int) -> None:
        """Move ``pid`` (a whole process) into the group."""

    def pids(self) -> set[int]:
        """Processes in the group now."""

    def oom_kills(self) -> int:
        """How many times the kernel's OOM killer ended a process of this group."""

    def cpu_usage_ns(self) -> int:
        """CPU time used by the group, in nanoseconds."""

    def kill(self) -> None:
        """SIGKILL every process of the group, including ones forking while it runs."""

    def remove(self) -> None:
        """Delete the group; it must be empty."""


class CgroupDriver(Protocol):
    """Creates groups below IRE's own parent group, in this process's own scope."""

    @property
    def version(self) -> int: ...

    @property
    def controllers(self) -> tuple[str, ...]: ...

    def create(self, name: str) -> Cgroup:
        """Create an empty group ``name`` in this scope (no limits yet)."""

    def remove_stale(self) -> list[str]:
        """Kill and remove scopes of processes that no longer exist; return their names."""

    def close(self) -> None:
        """Remove this process's scope (its groups must be gone)."""
