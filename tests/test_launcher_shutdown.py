"""The launcher's shutdown, which runs when the supervisor closes its channel or dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
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


def test_launcher_shutdown_never_freezes_a_group_it_may_not_live_to_thaw() -> None:
    """A supervisor's death closes the channel just before this process's own death signal
    lands: a freeze cut short there left the group frozen and its shim stuck (seen in CI)."""
    shim = subprocess.Popen(["sleep", "20"])
    worker = subprocess.Popen(["sleep", "20"])  # stands for the worker, inside the group
    ours, theirs = socket.socketpair()
    try:
        launcher = Launcher(theirs, baseline_threads=1, cgroups=None, unavailable=[])
        group = _Group({shim.pid, worker.pid})
        launcher._children.add(shim.pid)
        launcher._groups[shim.pid] = group
        launcher._shutdown()
        assert not group.frozen
        assert group.removed
        with pytest.raises(ProcessLookupError):  # killed and reaped by the shutdown itself
            os.kill(shim.pid, 0)
        assert worker.wait(timeout=5) == -signal.SIGKILL
    finally:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for proc in (shim, worker):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        ours.close()
        theirs.close()
