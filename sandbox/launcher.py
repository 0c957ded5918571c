"""The launcher: a single-threaded fork server for tenant workers.

The supervisor starts it as a fresh interpreter before serving. It imports ONNX Runtime
and numpy once, so a worker is a ``fork`` away from ready instead of a new interpreter,
and it runs no threads of its own because ``fork`` in a threaded process copies locks held
by threads that do not exist in the child.

One native thread is tolerated: ONNX Runtime's extension module starts an idle timer
thread when it is imported, which waits on a condition variable and holds no lock while
waiting. Its count is taken right after the imports and checked before every fork; any
further thread refuses the spawn. Because that thread is absent in a child, a child must
leave with ``os._exit``: ORT's static destructors would try to join it and abort.

Control channel: one ``SOCK_SEQPACKET`` socket, one protobuf message per packet. A
``SpawnWorker`` request carries the worker's end of a socketpair as SCM_RIGHTS; the
launcher answers ``WorkerSpawned`` and later reports ``WorkerExited`` for each child.
"""

from __future__ import annotations

import argparse
import os
import selectors
import signal
import socket
import sys
import threading
from pathlib import Path

# Set before numpy and ORT load: thread pools created at import time would make this
# process multi-threaded, and fork would copy their locks into the workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy  # noqa: F401 - imported once here so every worker inherits it
import onnxruntime

from protos import worker_pb2 as pb
from sandbox import _prctl, worker

# A control packet holds a small protobuf message; anything larger is refused.
MAX_CONTROL_PACKET = 64 * 1024


def thread_count() -> int:
    """Threads of this process, read from /proc (covers threads Python does not know)."""
    return len(os.listdir("/proc/self/task"))


class Launcher:
    """Serves spawn requests and reports child exits on the control socket."""

    def __init__(self, control: socket.socket, baseline_threads: int) -> None:
        self._control = control
        self._baseline_threads = baseline_threads
        self._children: set[int] = set()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def _send(self, msg: pb.FromLauncher) -> None:
        self._control.send(msg.SerializeToString())

    def run(self) -> int:
        self._send(
            pb.FromLauncher(ready=pb.LauncherReady(pid=os.getpid(), onnxruntime_version=onnxruntime.__version__))
        )
        selector = selectors.DefaultSelector()
        selector.register(self._control, selectors.EVENT_READ, "control")
        selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in selector.select():
                if key.data == "signal":
                    os.read(self._wake_r, 4096)
                    self._reap()
                elif not self._serve_one():
                    return 0
            self._reap()

    def _serve_one(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._control, MAX_CONTROL_PACKET, 1)
        except InterruptedError:
            return True
        if not data:
            return False  # the supervisor closed the channel
        request = pb.ToLauncher.FromString(data)
        problem = ""
        if request.WhichOneof("body") != "spawn" or len(fds) != 1:
            problem = (
                f"expected a spawn request with one socket, got {request.WhichOneof('body')!r} with {len(fds)} fds"
            )
        elif (threads := thread_count()) > self._baseline_threads:
            problem = f"launcher has {threads} threads, expected {self._baseline_threads}; refusing to fork"
        if problem:
            for fd in fds:
                os.close(fd)
            self._send(pb.FromLauncher(id=request.id, error=pb.LauncherError(detail=problem)))
            return True
        pid = self._fork_worker(request.spawn, fds[0])
        self._send(pb.FromLauncher(id=request.id, spawned=pb.WorkerSpawned(pid=pid)))
        return True

    def _fork_worker(self, spawn: pb.SpawnWorker, fd: int) -> int:
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                status = self._child(spawn, fd)
            finally:
                os._exit(status)
        os.close(fd)
        self._children.add(pid)
        return pid

    def _child(self, spawn: pb.SpawnWorker, fd: int) -> int:
        """Runs in the forked worker. Never returns into the launcher loop."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for other in (self._control.fileno(), self._wake_r, self._wake_w):
            os.close(other)
        _prctl.die_with_parent(os.getppid())
        _prctl.set_name(f"ire-w-{spawn.tenant}")
        sock = socket.socket(fileno=fd)
        return worker.serve(sock, max(1, spawn.intra_op_threads), confinement=[])

    def _reap(self) -> None:
        while self._children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            self._send(pb.FromLauncher(exited=pb.WorkerExited(pid=pid, returncode=code)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="IRE worker launcher (started by the supervisor)")
    parser.add_argument("--fd", type=int, required=True, help="inherited control socket")
    parser.add_argument("--parent", type=int, required=True, help="supervisor pid")
    args = parser.parse_args(argv)
    _prctl.die_with_parent(args.parent)
    _prctl.set_name("ire-launcher")
    control = socket.socket(fileno=args.fd)
    if threading.active_count() != 1:
        sys.stderr.write(f"launcher runs {threading.active_count()} Python threads; refusing to fork\n")
        return 3
    os.chdir(Path("/"))
    return Launcher(control, baseline_threads=thread_count()).run()


if __name__ == "__main__":
    sys.exit(main())
