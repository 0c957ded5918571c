"""Landlock: the filesystem paths a confined process may use, and (ABI 6+) signal and
abstract-socket scoping.

The ruleset is built while the process can still open every path it names (before the uid
change: ``/root`` is 0700 and the Python installation may live below it), and enforced
later with :meth:`Ruleset.enforce`, after ``no_new_privs``. Every access right the kernel
knows is handled, so anything not granted below is refused; TCP bind and connect are
handled with no rule (refused), as a second wall behind seccomp's socket ban.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from sandbox._libc import (
    SYS_LANDLOCK_ADD_RULE,
    SYS_LANDLOCK_CREATE_RULESET,
    SYS_LANDLOCK_RESTRICT_SELF,
    syscall,
)

EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13
TRUNCATE = 1 << 14
IOCTL_DEV = 1 << 15

NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

READ = READ_FILE | READ_DIR
# What a private scratch directory allows: everything but executing, device nodes and
# cross-directory links.
SCRATCH = READ | WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_DIR | MAKE_REG | MAKE_SYM | TRUNCATE
# Rights that only make sense on directories; a rule on a file may not carry them.
_DIR_ONLY = READ_DIR | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK
_DIR_ONLY |= MAKE_FIFO | MAKE_BLOCK | MAKE_SYM | REFER


class _RulesetAttr(ctypes.Structure):
    _fields_ = (
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    )


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


def abi_version() -> int:
    """The Landlock ABI this kernel offers, or 0 when Landlock is absent or disabled."""
    try:
        return syscall(
            SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION), what="ll"
        )
    except OSError:
        return 0


def _fs_rights(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass
class Ruleset:
    """A Landlock ruleset being assembled: ``allow`` paths, then :meth:`enforce`."""

    abi: int
    fd: int
    fs_rights: int
    granted: list[tuple[str, int]] = field(default_factory=list)

    @classmethod
    def create(cls, abi: int | None = None) -> Ruleset:
        abi = abi_version() if abi is None else abi
        if abi < 1:
            raise OSError("Landlock is not available on this kernel")
        fs = _fs_rights(abi)
        attr = _RulesetAttr(fs, NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0, 0)
        if abi >= 6:
            attr.scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
        size = 8 if abi < 4 else 16 if abi < 6 else 24
        fd = syscall(
            SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0), what="ll"
        )
        os.set_inheritable(fd, False)
        return cls(abi, fd, fs)

    def allow(self, paths: Iterable[str], rights: int) -> None:
        """Grant ``rights`` beneath each existing path in ``paths``; missing paths are skipped."""
        for path in paths:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                allowed = rights & self.fs_rights
                if not os.path.isdir(path):
                    allowed &= ~_DIR_ONLY
                attr = _PathBeneath(allowed, fd)
                syscall(
                    SYS_LANDLOCK_ADD_RULE,
                    ctypes.c_int(self.fd),
                    ctypes.c_int(_RULE_PATH_BENEATH),
                    ctypes.byref(attr),
                    ctypes.c_uint32(0),
                    what=f"landlock rule {path}",
                )
                self.granted.append((path, allowed))
            finally:
                os.close(fd)

    def enforce(self) -> None:
        """Restrict this process (all its threads must share it: call while single-threaded)."""
        try:
            syscall(SYS_LANDLOCK_RESTRICT_SELF, ctypes.c_int(self.fd), ctypes.c_uint32(0), what="restrict_self")
        finally:
            os.close(self.fd)
