"""Where the cgroup hierarchies are mounted, and which group a process is in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hierarchy:
    version: int
    mountpoint: Path
    # v1: the controllers bound to this hierarchy; v2: those listed in cgroup.controllers.
    controllers: frozenset[str]


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def hierarchies(mountinfo: str) -> list[Hierarchy]:
    """The cgroup mounts listed in a ``/proc/self/mountinfo`` text."""
    found = []
    seen: set[frozenset[str]] = set()
    for line in mountinfo.splitlines():
        head, sep, tail = line.partition(" - ")
        if not sep:
            continue
        fstype, _source, options = [*tail.split(" "), "", ""][:3]
        mountpoint = Path(_unescape(head.split(" ")[4]))
        if fstype == "cgroup2":
            try:
                controllers = frozenset((mountpoint / "cgroup.controllers").read_text().split())
            except OSError:
                controllers = frozenset()
            found.append(Hierarchy(2, mountpoint, controllers))
        elif fstype == "cgroup":
            controllers = frozenset(o for o in options.split(",") if o not in ("rw", "ro") and "=" not in o)
            if controllers and controllers not in seen:
                seen.add(controllers)
                found.append(Hierarchy(1, mountpoint, controllers))
    return found


def own_groups(proc_cgroup: str) -> dict[str, str]:
    """Map each v1 controller (and ``""`` for v2) to this process's group path."""
    groups = {}
    for line in proc_cgroup.splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            groups[controller] = path
    return groups
