"""Linux namespaces: ``unshare`` for the worker, and the flags the seccomp filter refuses."""

from __future__ import annotations

import ctypes

from sandbox._libc import check, libc

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# Every flag that creates a namespace; a confined process may use none of them.
ALL_NEW_FLAGS = (
    CLONE_NEWTIME,
    CLONE_NEWNS,
    CLONE_NEWCGROUP,
    CLONE_NEWUTS,
    CLONE_NEWIPC,
    CLONE_NEWUSER,
    CLONE_NEWPID,
    CLONE_NEWNET,
)

# What a worker gets: no network, its own mounts, pids, SysV IPC and hostname.
WORKER_NAMESPACES = {
    "net": CLONE_NEWNET,
    "mnt": CLONE_NEWNS,
    "pid": CLONE_NEWPID,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
}


def unshare(flags: int) -> None:
    """Move this process into new namespaces (the pid namespace applies to its next child)."""
    check(libc.unshare(ctypes.c_int(flags)), "unshare")


def set_hostname(name: str) -> None:
    """Set the hostname of this process's UTS namespace."""
    data = name.encode()
    check(libc.sethostname(data, ctypes.c_size_t(len(data))), "sethostname")
