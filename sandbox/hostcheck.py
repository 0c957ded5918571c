"""What this host offers the sandbox (`ire sandbox check`), including without root.

The rootless report is measured, not guessed: a forked child drops to ``nobody`` (when
run as root) and tries each layer for real.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sandbox import _prctl, landlock, namespaces, seccomp
from sandbox.cgroups import detect

NOBODY = 65534
_NS = ("net", "mnt", "pid", "ipc", "uts", "user", "cgroup")


@dataclass(frozen=True)
class HostReport:
    cgroup_version: int
    controllers: tuple[str, ...]
    namespaces: tuple[str, ...]
    max_user_namespaces: int
    seccomp: bool
    landlock_abi: int
    is_root: bool
    rootless: dict[str, bool]

    def lines(self) -> list[str]:
        yes = {True: "yes", False: "no"}
        rootless = ", ".join(f"{name} {yes[ok]}" for name, ok in self.rootless.items())
        return [
            f"cgroups: v{self.cgroup_version} ({', '.join(self.controllers) or 'no controllers'})"
            if self.cgroup_version
            else "cgroups: none usable",
            f"namespaces: {', '.join(self.namespaces)} (user namespaces allowed: {self.max_user_namespaces})",
            f"seccomp: {yes[self.seccomp]}",
            f"landlock: ABI {self.landlock_abi}" if self.landlock_abi else "landlock: no",
            f"running as root: {yes[self.is_root]}",
            f"without root: {rootless}; cgroups need a delegated subtree and per-tenant uids need root",
        ]

    @property
    def can_confine(self) -> bool:
        return self.is_root and self.cgroup_version > 0 and self.seccomp and self.landlock_abi > 0


def _seccomp_available() -> bool:
    return any(line.startswith("Seccomp:") for line in Path("/proc/self/status").read_text().splitlines())


def _try(layer: str) -> bool:
    """Try one layer in a forked child running as ``nobody`` (or as the caller, if not root)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        ok = False
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setresgid(NOBODY, NOBODY, NOBODY)
                os.setresuid(NOBODY, NOBODY, NOBODY)
            if layer == "user namespaces":
                namespaces.unshare(namespaces.CLONE_NEWUSER)
                namespaces.unshare(sum(namespaces.WORKER_NAMESPACES.values()))
            elif layer == "seccomp":
                _prctl.set_no_new_privs()
                seccomp.load_deny_list()
            elif layer == "landlock":
                _prctl.set_no_new_privs()
                landlock.Ruleset.create().enforce()
            ok = True
        except Exception:  # noqa: BLE001, S110 - a failure is the answer
            pass
        finally:
            os.write(write, json.dumps(ok).encode())
            os._exit(0)
    os.close(write)
    answer = os.read(read, 16)
    os.close(read)
    os.waitpid(pid, 0)
    return bool(answer and json.loads(answer))


def check() -> HostReport:
    version, found = detect()
    controllers = sorted({c for h in found if h.version == version for c in h.controllers})
    present = tuple(ns for ns in _NS if Path(f"/proc/self/ns/{ns}").exists())
    try:
        max_userns = int(Path("/proc/sys/user/max_user_namespaces").read_text())
    except OSError:
        max_userns = 0
    return HostReport(
        cgroup_version=version,
        controllers=tuple(controllers),
        namespaces=present,
        max_user_namespaces=max_userns,
        seccomp=_seccomp_available(),
        landlock_abi=landlock.abi_version(),
        is_root=os.geteuid() == 0,
        rootless={layer: _try(layer) for layer in ("user namespaces", "seccomp", "landlock")},
    )
