"""The worker's view of the filesystem, built inside its own mount namespace.

Order: stop propagation to the host, make every existing mount read-only, nosuid and
nodev in one recursive call, then add the only writable places: a private tmpfs on
``/tmp``, a ``/dev`` holding just the device nodes the worker needs, and a ``/proc`` of the
worker's own pid namespace (so the host's processes, ``/proc/1/environ`` included, are
not visible).
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Sequence
from pathlib import Path

from sandbox._libc import SYS_MOUNT_SETATTR, check, libc, syscall
from sandbox.devices import BASE_DEVICES

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_PRIVATE = 0x40000

MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
AT_FDCWD = -100
AT_RECURSIVE = 0x8000

# The worker's private tmpfs. It is mounted fresh inside the worker's mount namespace,
# so none of the shared-/tmp attacks (predictable names, symlink races) apply.
PRIVATE_TMP = "/tmp"  # noqa: S108
# A device name: one entry of /dev, or one level below it (``nvidia-caps/nvidia-cap1``).
_DEVICE_NAME = re.compile(r"^[a-z0-9_-]+(/[a-z0-9_-]+)?$")


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    """``mount(2)``."""
    check(
        libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {target}",
    )


def set_attributes(path: str, *, set_: int = 0, clear: int = 0, recursive: bool = False) -> None:
    """``mount_setattr(2)``: change the flags of the mount at ``path`` (and below it)."""
    attr = _MountAttr(set_, clear, 0, 0)
    syscall(
        SYS_MOUNT_SETATTR,
        ctypes.c_int(AT_FDCWD),
        path.encode(),
        ctypes.c_uint(AT_RECURSIVE if recursive else 0),
        ctypes.byref(attr),
        ctypes.c_size_t(ctypes.sizeof(attr)),
        what=f"mount_setattr {path}",
    )


def build_view(tmp_bytes: int, devices: Sequence[str] = ()) -> None:
    """Lay out the worker's filesystem. Needs CAP_SYS_ADMIN in a fresh mount namespace."""
    # Without this, the mounts below would propagate back into the host's namespace.
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    # One call covers every submount: a crafted model cannot write to the host, and a
    # setuid binary or a device node on any host filesystem gains nothing.
    set_attributes("/", set_=MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, recursive=True)
    mount("tmpfs", PRIVATE_TMP, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, f"size={tmp_bytes},mode=1777")
    _build_dev([*BASE_DEVICES, *devices])
    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _build_dev(devices: Sequence[str]) -> None:
    """Replace ``/dev`` with a tmpfs holding bind mounts of ``devices`` only."""
    staging = f"{PRIVATE_TMP}/.ire-dev"
    os.mkdir(staging, 0o755)
    mount("tmpfs", staging, "tmpfs", MS_NOSUID | MS_NOEXEC, "size=64k,mode=0755")
    for name in devices:
        source = Path("/dev") / name
        if not _DEVICE_NAME.fullmatch(name):
            raise ValueError(f"device {name!r} is not a /dev entry IRE hands to workers")
        target = Path(staging) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch(0o666)
        mount(str(source), str(target), None, MS_BIND)
        # The bind mount copied the host mount's new nodev flag; these nodes are the
        # ones the worker is meant to use.
        set_attributes(str(target), clear=MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY)
    for link, dest in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")):
        os.symlink(dest, Path(staging) / link)
    os.symlink("/proc/self/fd/2", Path(staging) / "stderr")
    mount(staging, "/dev", None, MS_MOVE)
    os.rmdir(staging)
    # No new entries in /dev: the tmpfs itself becomes read-only.
    set_attributes("/dev", set_=MOUNT_ATTR_RDONLY)
