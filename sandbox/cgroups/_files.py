"""Reading and writing cgroup control files, shared by both versions."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

# Control files live only where the kernel created them: a write never creates a file.
_WRITE_FLAGS = os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC


def write(path: Path, value: str) -> None:
    fd = os.open(path, _WRITE_FLAGS)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def read(path: Path) -> str:
    return path.read_text()


def keyed(path: Path) -> dict[str, int]:
    """Parse a flat keyed file (``key value`` per line)."""
    values = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            values[key] = int(value)
    return values


def procs(path: Path) -> set[int]:
    try:
        return {int(line) for line in read(path / "cgroup.procs").split()}
    except FileNotFoundError:
        return set()


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def rmdir(path: Path, timeout: float = 2.0) -> None:
    """Remove a group directory, waiting out the moment its last process is still exiting."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def rmdir_if_empty(path: Path) -> None:
    """Remove IRE's parent group when no other IRE process still has a scope in it."""
    try:
        path.rmdir()
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EBUSY, errno.ENOENT):
            raise


def scope_is_stale(scope: str) -> bool:
    """A scope is named ``<kind>-<pid>``; it is stale once that process is gone.

    A recycled pid keeps a stale scope until that process ends too; nothing worse.
    """
    _, _, pid = scope.rpartition("-")
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
