"""cgroup v1: one hierarchy per controller (memory, cpu, cpuacct, pids, freezer, devices).

v1 has no ``cgroup.kill``: a group is stopped by freezing it, SIGKILLing every process,
then thawing it, so that a fork bomb cannot outrun the kill loop. IRE's parent group sits
below the group IRE was started in, per hierarchy, so a host-level limit on IRE still
bounds its workers (v1 has no rule against processes in inner groups).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.cgroups import _files
from sandbox.cgroups._mounts import Hierarchy
from sandbox.devices import Device
from sandbox.errors import SandboxError
from sandbox.profile import Profile

# Controllers a worker's group needs: limits (memory, cpu, pids), accounting (cpuacct),
# the freezer for killing the whole group, and devices for the device allow-list.
REQUIRED = ("memory", "cpu", "cpuacct", "pids", "freezer", "devices")
CFS_PERIOD_US = 100_000


@dataclass(frozen=True)
class V1Cgroup:
    name: str
    dirs: Mapping[str, Path]  # controller -> directory

    @property
    def paths(self) -> tuple[Path, ...]:
        return tuple(dict.fromkeys(self.dirs.values()))

    def set_limits(self, profile: Profile) -> None:
        memory = self.dirs["memory"]
        _files.write(memory / "memory.limit_in_bytes", str(profile.memory_bytes))
        if (memory / "memory.memsw.limit_in_bytes").exists():
            # Memory plus swap at the same bound: swap cannot extend the limit.
            _files.write(memory / "memory.memsw.limit_in_bytes", str(profile.memory_bytes))
        cpu = self.dirs["cpu"]
        _files.write(cpu / "cpu.cfs_period_us", str(CFS_PERIOD_US))
        _files.write(cpu / "cpu.cfs_quota_us", str(max(1000, int(profile.cpu * CFS_PERIOD_US))))
        _files.write(self.dirs["pids"] / "pids.max", str(profile.pids))

    def allow_devices(self, devices: Sequence[Device]) -> bool:
        # "a" empties the list the group inherited from its parent (which may be "a *:* rwm"):
        # from then on every open or mknod of a device not allowed below fails with EPERM,
        # whatever the node's path or the process's capabilities. No "m": no mknod at all.
        group = self.dirs["devices"]
        _files.write(group / "devices.deny", "a")
        for device in devices:
            _files.write(group / "devices.allow", device.cgroup_v1_rule())
        return True

    def attach(self, pid: int) -> None:
        for path in self.paths:
            _files.write(path / "cgroup.procs", str(pid))

    def pids(self) -> set[int]:
        return _files.procs(self.dirs["pids"])

    def oom_kills(self) -> int:
        return _files.keyed(self.dirs["memory"] / "memory.oom_control").get("oom_kill", 0)

    def cpu_usage_ns(self) -> int:
        return int(_files.read(self.dirs["cpuacct"] / "cpuacct.usage"))

    def kill(self) -> None:
        freezer = self.dirs["freezer"] / "freezer.state"
        if not self.pids():
            return
        _files.write(freezer, "FROZEN")
        try:
            _files.wait_until(lambda: _files.read(freezer).strip() == "FROZEN", 1.0)
            _files.kill_all(self.pids())
        finally:
            _files.write(freezer, "THAWED")
        if not _files.wait_until(lambda: not self.pids(), 2.0):
            _files.kill_all(self.pids())  # stragglers that were mid-fork when frozen

    def remove(self) -> None:
        for path in self.paths:
            _files.rmdir(path)


class V1Driver:
    """Groups at ``<own group>/<parent>/<scope>/<name>`` in every required hierarchy."""

    version = 1

    def __init__(self, hierarchies: list[Hierarchy], own: Mapping[str, str], parent: str, scope: str) -> None:
        self._scope = scope
        self._parents: dict[str, Path] = {}
        for controller in REQUIRED:
            hierarchy = next((h for h in hierarchies if h.version == 1 and controller in h.controllers), None)
            if hierarchy is None:
                raise SandboxError(f"cgroup v1 controller {controller!r} is not mounted; IRE needs {list(REQUIRED)}")
            base = own.get(controller, "/").lstrip("/")
            self._parents[controller] = hierarchy.mountpoint / base / parent
        for path in set(self._parents.values()):
            (path / scope).mkdir(parents=True, exist_ok=True)

    @property
    def controllers(self) -> tuple[str, ...]:
        return REQUIRED

    def create(self, name: str) -> V1Cgroup:
        dirs = {c: p / self._scope / name for c, p in self._parents.items()}
        for path in set(dirs.values()):
            path.mkdir()
        return V1Cgroup(name, dirs)

    def remove_stale(self) -> list[str]:
        removed = []
        for parent in set(self._parents.values()):
            for scope in parent.iterdir():
                if scope.is_dir() and scope.name != self._scope and _files.scope_is_stale(scope.name):
                    for group in [g for g in scope.iterdir() if g.is_dir()]:
                        dirs = {c: p / scope.name / group.name for c, p in self._parents.items()}
                        stale = V1Cgroup(group.name, {c: d for c, d in dirs.items() if d.is_dir()})
                        if "freezer" in stale.dirs and "pids" in stale.dirs:
                            stale.kill()
                        for path in stale.paths:
                            _files.rmdir(path)
                    _files.rmdir(scope)
                    removed.append(f"{parent}/{scope.name}")
        return removed

    def close(self) -> None:
        for parent in set(self._parents.values()):
            _files.rmdir(parent / self._scope)
            _files.rmdir_if_empty(parent)
