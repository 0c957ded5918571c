"""cgroup v2: one unified hierarchy.

IRE's parent group is ``<mount>/<parent>`` (``/sys/fs/cgroup/ire`` by default; on a
systemd host with ``Delegate=yes``, point the setting at the delegated subtree). v2 lets
only groups without processes hand controllers to children, so IRE's groups hold no
process of their own except the workers at the leaves. ``cgroup.kill`` (Linux 5.14)
stops a whole group; older kernels get freeze, kill, thaw through ``cgroup.freeze``.

These machines run v1, so this driver is exercised by unit tests against a directory
tree that mimics v2's files (tests/test_sandbox_cgroups.py), not by a live kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.cgroups import _files
from sandbox.devices import Device
from sandbox.errors import SandboxError
from sandbox.profile import Profile

REQUIRED = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000


@dataclass(frozen=True)
class V2Cgroup:
    name: str
    path: Path

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.path,)

    def set_limits(self, profile: Profile) -> None:
        _files.write(self.path / "memory.max", str(profile.memory_bytes))
        if (self.path / "memory.swap.max").exists():
            _files.write(self.path / "memory.swap.max", "0")
        quota = max(1000, int(profile.cpu * CPU_PERIOD_US))
        _files.write(self.path / "cpu.max", f"{quota} {CPU_PERIOD_US}")
        _files.write(self.path / "pids.max", str(profile.pids))

    def allow_devices(self, devices: Sequence[Device]) -> bool:
        """Not enforced: cgroup v2 has no devices files, only an eBPF program attached
        with BPF_CGROUP_DEVICE, designed in docs/gpu.md and not built yet. The worker's
        ``/dev`` view, ``nodev`` on every other mount and Landlock still bound what it opens."""
        del devices
        return False

    def attach(self, pid: int) -> None:
        _files.write(self.path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        return _files.procs(self.path)

    def oom_kills(self) -> int:
        return _files.keyed(self.path / "memory.events").get("oom_kill", 0)

    def cpu_usage_ns(self) -> int:
        return _files.keyed(self.path / "cpu.stat").get("usage_usec", 0) * 1000

    def kill(self) -> None:
        try:
            _files.write(self.path / "cgroup.kill", "1")
        except FileNotFoundError:
            self._freeze_kill_thaw()
        _files.wait_until(lambda: not self.pids(), 2.0)

    def _freeze_kill_thaw(self) -> None:
        _files.write(self.path / "cgroup.freeze", "1")
        try:
            _files.wait_until(lambda: _files.keyed(self.path / "cgroup.events").get("frozen") == 1, 1.0)
            _files.kill_all(self.pids())
        finally:
            _files.write(self.path / "cgroup.freeze", "0")

    def remove(self) -> None:
        _files.rmdir(self.path)


class V2Driver:
    """Groups at ``<mount>/<parent>/<scope>/<name>``."""

    version = 2

    def __init__(self, mountpoint: Path, parent: str, scope: str) -> None:
        self._root = mountpoint
        self._parent = mountpoint / parent
        self._scope = self._parent / scope
        available = set(_files.read(mountpoint / "cgroup.controllers").split())
        missing = [c for c in REQUIRED if c not in available]
        if missing:
            raise SandboxError(f"cgroup v2 controllers {missing} are not available at {mountpoint}")
        self._scope.mkdir(parents=True, exist_ok=True)
        # Each level from the mount down to the scope hands the controllers to its children.
        level = mountpoint
        for part in [*Path(parent).parts, scope]:
            self._enable(level)
            level = level / part
        self._enable(self._scope)

    @staticmethod
    def _enable(group: Path) -> None:
        enabled = set(_files.read(group / "cgroup.subtree_control").split())
        wanted = [c for c in REQUIRED if c not in enabled]
        if wanted:
            _files.write(group / "cgroup.subtree_control", " ".join(f"+{c}" for c in wanted))

    @property
    def controllers(self) -> tuple[str, ...]:
        return REQUIRED

    def create(self, name: str) -> V2Cgroup:
        path = self._scope / name
        path.mkdir()
        return V2Cgroup(name, path)

    def remove_stale(self) -> list[str]:
        removed = []
        for scope in self._parent.iterdir():
            if scope.is_dir() and scope != self._scope and _files.scope_is_stale(scope.name):
                for group in [g for g in scope.iterdir() if g.is_dir()]:
                    stale = V2Cgroup(group.name, group)
                    stale.kill()
                    stale.remove()
                _files.rmdir(scope)
                removed.append(str(scope))
        return removed

    def close(self) -> None:
        _files.rmdir(self._scope)
        _files.rmdir_if_empty(self._parent)
