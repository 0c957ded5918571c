"""Privilege drop: ``no_new_privs``, every capability, supplementary groups, then gid and uid.

The order is forced by the kernel: dropping the bounding set needs CAP_SETPCAP and the
uid change needs CAP_SETUID, so the bounding and ambient sets go first, then groups, gid
and uid. Changing every uid away from 0 empties the permitted and effective sets; the
sets are then cleared explicitly with ``capset`` and read back from ``/proc`` to prove it.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

from sandbox import _prctl
from sandbox._libc import check, libc

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_CAP_FIELDS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32))


def last_capability() -> int:
    return int(Path("/proc/sys/kernel/cap_last_cap").read_text())


def _clear_capability_sets() -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    check(libc.capset(ctypes.byref(header), data), "capset")


def capability_sets() -> dict[str, int]:
    """This process's capability sets, as the kernel reports them."""
    sets = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in _CAP_FIELDS:
            sets[key] = int(value.strip(), 16)
    return sets


def drop_to(uid: int, gid: int) -> None:
    """Become ``uid``/``gid`` with no capabilities and no way to regain any."""
    if uid == 0 or gid == 0:
        raise ValueError(f"refusing to drop to uid {uid} gid {gid}: a worker never runs as root")
    _prctl.set_no_new_privs()
    for cap in range(last_capability() + 1):
        _prctl.drop_bounding_capability(cap)
    _prctl.clear_ambient_capabilities()
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    _clear_capability_sets()
    left = {name: value for name, value in capability_sets().items() if value}
    if left or os.getresuid() != (uid, uid, uid) or os.getresgid() != (gid, gid, gid) or os.getgroups():
        raise PermissionError(f"privilege drop incomplete: capabilities {left}, uids {os.getresuid()}")
