"""ctypes access to the libc calls Python 3.11 does not bind.

``unshare``, ``mount``, ``mount_setattr``, ``capset`` and the Landlock calls have no
binding in the standard library of this Python version and no maintained package that we
trust more than a dozen lines of ctypes, so the sandbox calls libc directly. Every wrapper
raises :class:`OSError` with the errno on failure.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
libc.syscall.restype = ctypes.c_long

# Syscall numbers from 424 on are the same on every Linux architecture.
SYS_MOUNT_SETATTR = 442
SYS_LANDLOCK_CREATE_RULESET = 444
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446


def check(result: int, what: str) -> int:
    """Return ``result``, or raise the errno as :class:`OSError` when it is negative."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def syscall(number: int, *args: object, what: str) -> int:
    """Call syscall ``number`` with ctypes-ready ``args``."""
    return check(int(libc.syscall(ctypes.c_long(number), *args)), what)
