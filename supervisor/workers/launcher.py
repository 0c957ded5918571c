"""The supervisor's handle on the launcher process, the only way workers are spawned.

The launcher is a fresh interpreter started with ``subprocess`` (exec, so it is safe from
a threaded parent). The control socket is read from the event loop; spawn replies resolve
futures by request id and exit events go to a callback.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import subprocess
import sys
from collections.abc import Callable

import structlog

from protos import worker_pb2 as pb
from supervisor.errors import WorkerStartError

log = structlog.get_logger(__name__)

MAX_CONTROL_PACKET = 64 * 1024
ExitCallback = Callable[[int, int], None]


class LauncherClient:
    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket, ready: pb.LauncherReady) -> None:
        self._process = process
        self._control = control
        self.ready = ready
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.FromLauncher]] = {}
        self._on_exit: ExitCallback = lambda pid, code: None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    def start(cls, timeout: float = 60.0) -> LauncherClient:
        """Start the launcher and wait until it has imported the runtime."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.launcher", "--fd", str(theirs.fileno()), "--parent", str(os.getpid())],
            pass_fds=[theirs.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.settimeout(timeout)
        try:
            data = ours.recv(MAX_CONTROL_PACKET)
        except TimeoutError as exc:
            process.kill()
            raise WorkerStartError(f"launcher did not become ready within {timeout} s") from exc
        if not data:
            code = process.wait()
            raise WorkerStartError(f"launcher exited with status {code} before it was ready")
        first = pb.FromLauncher.FromString(data)
        if first.WhichOneof("body") != "ready":
            process.kill()
            raise WorkerStartError(f"launcher sent {first.WhichOneof('body')!r} first, expected 'ready'")
        ours.setblocking(False)
        return cls(process, ours, first.ready)

    def attach(self, loop: asyncio.AbstractEventLoop, on_exit: ExitCallback) -> None:
        """Start reading the control socket on ``loop``."""
        self._loop = loop
        self._on_exit = on_exit
        loop.add_reader(self._control.fileno(), self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = self._control.recv(MAX_CONTROL_PACKET)
            except BlockingIOError:
                return
            if not data:
                self._lost("launcher closed its control channel")
                return
            msg = pb.FromLauncher.FromString(data)
            case = msg.WhichOneof("body")
            if case == "exited":
                self._on_exit(msg.exited.pid, msg.exited.returncode)
                continue
            future = self._pending.pop(msg.id, None)
            if future is not None and not future.done():
                future.set_result(msg)

    def _lost(self, why: str) -> None:
        log.error("launcher lost", reason=why, returncode=self._process.poll())
        if self._loop is not None:
            self._loop.remove_reader(self._control.fileno())
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerStartError(why))
        self._pending.clear()

    async def spawn(
        self, tenant: str, worker_id: str, intra_op_threads: int, timeout: float
    ) -> tuple[int, socket.socket]:
        """Fork a worker for ``tenant``; return its pid and the supervisor's end of its socket."""
        if self._process.poll() is not None:
            raise WorkerStartError(f"launcher exited with status {self._process.returncode}")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        request_id = next(self._ids)
        request = pb.ToLauncher(
            id=request_id,
            spawn=pb.SpawnWorker(tenant=tenant, worker_id=worker_id, intra_op_threads=intra_op_threads),
        )
        future: asyncio.Future[pb.FromLauncher] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            socket.send_fds(self._control, [request.SerializeToString()], [theirs.fileno()])
        except OSError as exc:
            self._pending.pop(request_id, None)
            ours.close()
            raise WorkerStartError(f"cannot reach the launcher: {exc}") from exc
        finally:
            theirs.close()
        try:
            reply = await asyncio.wait_for(future, timeout)
        except (TimeoutError, WorkerStartError):
            ours.close()
            raise
        if reply.WhichOneof("body") != "spawned":
            ours.close()
            raise WorkerStartError(f"launcher refused the spawn: {reply.error.detail}")
        return reply.spawned.pid, ours

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._control.fileno())
        self._control.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
