"""The launcher kills workers without the cgroup freezer: its own death can cut a kill short.

When the supervisor dies, the launcher sees its control channel close just before its own
death signal (SIGKILL) lands. A freeze, kill and thaw cut short there left the group frozen
and its shim stuck in D state (seen in CI, test_supervisor_killed_takes_workers_down).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from sandbox.launcher import Launcher


class _Group:
    """A worker's group as the launcher sees it: its processes, and a freezer kill to avoid."""

    def __init__(self, pids: set[int]) -> None:
        self._pids = pids
        self.frozen = False
        self.removed = False

    @property
    def name(self) -> str:
        return "w-test"

    @property
    def paths(self) -> tuple[Path, ...]:
        return ()

    def pids(self) -> set[int]:
        return set(self._pids)

    def kill(self) -> None:
        self.frozen = True  # the freeze, kill, thaw path

    def remove(self) -> None:
        self.removed = True


@contextmanager
def _launcher_with_worker() -> Iterator[tuple[Launcher, _Group, subprocess.Popen[bytes], subprocess.Popen[bytes]]]:
    """A real Launcher holding one worker: a shim (its child) and a process in its group."""
    shim = subprocess.Popen(["sleep", "20"])
    worker = subprocess.Popen(["sleep", "20"])  # stands for the worker, inside the group
    ours, theirs = socket.socketpair()
    try:
        launcher = Launcher(theirs, baseline_threads=1, cgroups=None, unavailable=[])
        group = _Group({shim.pid, worker.pid})
        launcher._children.add(shim.pid)
        launcher._groups[shim.pid] = group
        yield launcher, group, shim, worker
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for proc in (shim, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ours.close()
        theirs.close()


def test_launcher_shutdown_never_freezes_a_group_it_may_not_live_to_thaw() -> None:
    with _launcher_with_worker() as (launcher, group, shim, worker):
        launcher._shutdown()
        assert not group.frozen
        assert group.removed
        with pytest.raises(ProcessLookupError):  # killed and reaped by the shutdown itself
            os.kill(shim.pid, 0)
        assert worker.wait(timeout=5) == -signal.SIGKILL


def test_launcher_stop_of_one_worker_never_freezes_its_group() -> None:
    """A stop request in flight when the supervisor dies is cut short the same way."""
    with _launcher_with_worker() as (launcher, group, shim, worker):
        launcher._stop(12345678)  # not its child: nothing is signalled
        assert shim.poll() is None
        launcher._stop(shim.pid)
        assert not group.frozen
        assert shim.wait(timeout=5) == -signal.SIGKILL
        assert worker.wait(timeout=5) == -signal.SIGKILL
