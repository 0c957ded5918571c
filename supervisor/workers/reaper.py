"""The supervisor as a child subreaper: orphaned sandbox processes end up here and are reaped.

If the launcher dies, its workers' processes are re-parented to the supervisor instead of
to init (they are killed by their death signal, but someone must collect them). The
supervisor's own children are left to whoever waits for them: the launcher (``subprocess``
waits for it) and the children registered in :mod:`supervisor.children` (the policy
validator, which the reload waits for). Every other child that turns into a zombie is an
adopted orphan and is reaped here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import psutil
import structlog

from sandbox import set_child_subreaper
from supervisor.children import is_owned

log = structlog.get_logger(__name__)

# A sweep also runs on a timer, for event loops that cannot take a SIGCHLD handler.
SWEEP_SECONDS = 1.0


class Reaper:
    def __init__(self, managed: set[int]) -> None:
        # Children someone else waits for (the launcher's Popen): never reaped here.
        self._managed = managed
        self._task: asyncio.Task[None] | None = None
        self.reaped = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        set_child_subreaper()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGCHLD, self.sweep)
        self._task = loop.create_task(self._periodic(), name="reaper")

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            self.sweep()

    def sweep(self) -> None:
        """Reap every zombie child that is not a managed one."""
        if not _zombie_child():
            return
        try:
            children = psutil.Process().children()
        except psutil.Error:
            return
        for child in children:
            if child.pid in self._managed or is_owned(child.pid):
                continue
            with contextlib.suppress(psutil.Error):
                if child.status() != psutil.STATUS_ZOMBIE:
                    continue
            with contextlib.suppress(ChildProcessError):
                pid, status = os.waitpid(child.pid, os.WNOHANG)
                if pid:
                    self.reaped += 1
                    log.info("reaped an orphaned sandbox process", pid=pid, status=os.waitstatus_to_exitcode(status))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.sweep()


def _zombie_child() -> bool:
    """Whether any child of this process is a zombie, asked without reaping it.

    One ``waitid`` instead of psutil's scan of every process in /proc, which an idle
    server would otherwise pay once a second.
    """
    try:
        found = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return False
    return found is not None
