"""The supervisor's handle on the launcher process, the only way workers are spawned.

The launcher is a fresh interpreter started with ``subprocess`` (exec, so it is safe from
a threaded parent), with an environment that carries nothing of the supervisor's: workers
are forked from it. The control socket is read from the event loop; spawn replies resolve
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
from sandbox.profile import Profile
from supervisor.errors import WorkerStartError
from supervisor.gpu.devices import WorkerGpu
from supervisor.workers.region import InputRegion, OutputRegion

log = structlog.get_logger(__name__)

MAX_CONTROL_PACKET = 64 * 1024
# Called with (pid, returncode, oom_killed) for every worker that exits.
ExitCallback = Callable[[int, int, bool], None]
# The only variables of the supervisor's environment the launcher (and so every worker
# forked from it) inherits. Secrets passed to the supervisor in its environment stay there.
_LAUNCHER_ENV = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV")


def launcher_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _LAUNCHER_ENV}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    return env


class LauncherClient:
    def __init__(self, process: subprocess.Popen[bytes], control: socket.socket, ready: pb.LauncherReady) -> None:
        self._process = process
        self._control = control
        self.ready = ready
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.FromLauncher]] = {}
        self._on_exit: ExitCallback = lambda pid, code, oom: None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Workers whose spawn reply has been read but whose spawn() has not yet returned,
        # and the exits of such workers: a worker that dies at once (a failed confinement
        # step) may be reported in the same read, before its caller knows its pid. Those
        # exits are passed on once spawn() has returned, so nothing it holds (a GPU slice)
        # outlives the worker unnoticed.
        self._unclaimed: set[int] = set()
        self._early_exits: dict[int, tuple[int, bool]] = {}

    @property
    def pid(self) -> int:
        return self._process.pid

    @classmethod
    def start(
        cls, timeout: float = 60.0, cgroup_parent: str = "ire", module: str = "sandbox.launcher"
    ) -> LauncherClient:
        """Start the launcher and wait until it has imported the runtime.

        ``module`` is the launcher's entry point; only tests pass another one.
        """
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = [sys.executable, "-m", module, "--fd", str(theirs.fileno()), "--parent", str(os.getpid())]
        process = subprocess.Popen(
            [*command, "--cgroup-parent", cgroup_parent],
            pass_fds=[theirs.fileno()],
            env=launcher_env(),
            stdin=subprocess.DEVNULL,
            cwd="/",
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
                if msg.exited.pid in self._unclaimed:
                    self._early_exits[msg.exited.pid] = (msg.exited.returncode, msg.exited.oom_killed)
                else:
                    self._on_exit(msg.exited.pid, msg.exited.returncode, msg.exited.oom_killed)
                continue
            future = self._pending.pop(msg.id, None)
            if future is not None and not future.done():
                if case == "spawned":
                    self._unclaimed.add(msg.spawned.pid)
                future.set_result(msg)
            elif case == "spawned":
                # Nobody waits for this worker any more (its spawn timed out): stop it.
                self.stop(msg.spawned.pid)

    def _lost(self, why: str) -> None:
        log.error("launcher lost", reason=why, returncode=self._process.poll())
        if self._loop is not None:
            self._loop.remove_reader(self._control.fileno())
        for future in self._pending.values():
            if not future.done():
                future.set_exception(WorkerStartError(why))
        self._pending.clear()

    async def spawn(
        self,
        tenant: str,
        worker_id: str,
        intra_op_threads: int,
        timeout: float,
        *,
        uid: int = 0,
        profile: Profile | None = None,
        gpu: WorkerGpu | None = None,
        allow_cpu_fallback: bool = False,
        unsafe_no_sandbox: bool = False,
        region: InputRegion | None = None,
        output_region: OutputRegion | None = None,
    ) -> tuple[int, socket.socket]:
        """Fork a worker for ``tenant``; return its pid and the supervisor's end of its socket.

        Without ``profile`` (and ``unsafe_no_sandbox``) the launcher refuses the spawn. With
        ``gpu`` the worker gets that slice's devices and environment and loads models on
        CUDA; ``allow_cpu_fallback`` lets it keep a model ORT could only place on CPU. With
        ``region`` and ``output_region`` the worker gets those regions' descriptors
        (supervisor/workers/region.py).
        """
        if self._process.poll() is not None:
            raise WorkerStartError(f"launcher exited with status {self._process.returncode}")
        spawn = spawn_message(
            tenant,
            worker_id,
            intra_op_threads,
            uid=uid,
            profile=profile,
            gpu=gpu,
            allow_cpu_fallback=allow_cpu_fallback,
            unsafe_no_sandbox=unsafe_no_sandbox,
        )
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds = [theirs.fileno()]
        if region is not None:
            spawn.input_region_bytes = region.size
            fds.append(region.take_fd())
        if output_region is not None:
            spawn.output_region_bytes = output_region.size
            fds.append(output_region.take_fd())
        request_id = next(self._ids)
        request = pb.ToLauncher(id=request_id, spawn=spawn)
        future: asyncio.Future[pb.FromLauncher] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            socket.send_fds(self._control, [request.SerializeToString()], fds)
        except OSError as exc:
            self._pending.pop(request_id, None)
            ours.close()
            raise WorkerStartError(f"cannot reach the launcher: {exc}") from exc
        finally:
            theirs.close()
            for fd in fds[1:]:
                os.close(fd)
        try:
            reply = await asyncio.wait_for(future, timeout)
        except (TimeoutError, WorkerStartError):
            ours.close()
            raise
        if reply.WhichOneof("body") != "spawned":
            ours.close()
            raise WorkerStartError(f"launcher refused the spawn: {reply.error.detail}")
        self._claim(reply.spawned.pid)
        return reply.spawned.pid, ours

    def _claim(self, pid: int) -> None:
        """The caller now knows ``pid``: an exit already read is reported right after."""
        self._unclaimed.discard(pid)
        early = self._early_exits.pop(pid, None)
        if early is not None and self._loop is not None:
            self._loop.call_soon(self._on_exit, pid, *early)

    def stop(self, pid: int) -> None:
        """Ask the launcher to kill worker ``pid``'s whole cgroup; its exit event follows."""
        try:
            self._control.send(pb.ToLauncher(stop=pb.StopWorker(pid=pid)).SerializeToString())
        except OSError as exc:
            log.warning("cannot ask the launcher to stop a worker", pid=pid, error=str(exc))

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._control.fileno())
        self._control.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def spawn_message(
    tenant: str,
    worker_id: str,
    intra_op_threads: int,
    *,
    uid: int = 0,
    profile: Profile | None = None,
    gpu: WorkerGpu | None = None,
    allow_cpu_fallback: bool = False,
    unsafe_no_sandbox: bool = False,
) -> pb.SpawnWorker:
    """The launcher's spawn request (the worker's GPU hand-off included)."""
    spawn = pb.SpawnWorker(
        tenant=tenant,
        worker_id=worker_id,
        intra_op_threads=intra_op_threads,
        uid=uid,
        gid=uid,
        unsafe_no_sandbox=unsafe_no_sandbox,
    )
    if profile is not None:
        spawn.profile.CopyFrom(profile_message(profile))
    if gpu is not None:
        spawn.gpu = True
        spawn.allow_cpu_fallback = allow_cpu_fallback
        spawn.devices.extend(pb.Device(name=d.name, major=d.major, minor=d.minor) for d in gpu.devices)
        spawn.environment.update(gpu.environment)
    return spawn


def profile_message(profile: Profile) -> pb.Profile:
    return pb.Profile(
        memory_bytes=profile.memory_bytes,
        cpu=profile.cpu,
        pids=profile.pids,
        open_files=profile.open_files,
        file_size_bytes=profile.file_size_bytes,
        wall_seconds=profile.wall_seconds,
        tmp_bytes=profile.tmp_bytes,
    )
