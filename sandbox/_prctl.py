"""The few ``prctl`` calls the launcher and workers need.

Python has no binding for ``prctl``; ctypes over libc is the smallest dependable way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, arg: int) -> None:
    if _libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def die_with_parent(expected_parent: int) -> None:
    """Get SIGKILL when the parent exits, and exit now if it already has.

    The check after ``prctl`` closes the race where the parent died before the call.
    """
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != expected_parent:
        os._exit(1)


def set_name(name: str) -> None:
    """Set the thread name shown by ``ps`` (15 bytes at most)."""
    buf = ctypes.create_string_buffer(name.encode()[:15])
    _libc.prctl(PR_SET_NAME, buf, 0, 0, 0)


PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def set_child_subreaper() -> None:
    """Adopt orphaned descendants, so that they are reaped here instead of by init."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def set_death_signal(sig: int = signal.SIGKILL) -> None:
    """Get ``sig`` when the parent exits. A change of uid clears it, so set it again after."""
    _prctl(PR_SET_PDEATHSIG, sig)


def set_no_new_privs() -> None:
    """No ``execve`` may grant privileges again: setuid bits and file capabilities are ignored."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def drop_bounding_capability(cap: int) -> None:
    _prctl(PR_CAPBSET_DROP, cap)


def clear_ambient_capabilities() -> None:
    if _libc.prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
