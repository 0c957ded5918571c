"""The launcher: a single-threaded fork server for tenant workers.

The supervisor starts it as a fresh interpreter before serving. It imports ONNX Runtime
and numpy once, so a worker is a ``fork`` away from ready instead of a new interpreter,
and it runs no threads of its own because ``fork`` in a threaded process copies locks held
by threads that do not exist in the child.

A few native threads would be tolerated: threads a library starts when it is imported,
idle and holding no lock. (With its telemetry switched off, ONNX Runtime starts none; with
it on, its uploader thread also starts short-lived threads at times of its own.) Their
count is taken right after the imports and checked before every fork; any further thread
refuses the spawn. Because those threads are absent in a child, a child must leave
with ``os._exit``: ORT's static destructors would try to join them and abort.

Every worker goes through :func:`sandbox.confine.spawn` (cgroups, namespaces, mounts,
privilege drop, rlimits, Landlock, seccomp), unless the supervisor explicitly asked for
an unconfined worker (``ire serve --unsafe-no-sandbox``). Cgroups are created ahead of
time, off the spawn path.

Control channel: one ``SOCK_SEQPACKET`` socket, one protobuf message per packet. A
``SpawnWorker`` request carries the worker's end of a socketpair as SCM_RIGHTS; the
launcher answers ``WorkerSpawned`` and later reports ``WorkerExited`` for each child.
``StopWorker`` kills a worker's whole cgroup.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

# Set before numpy and ORT load: thread pools created at import time would make this
# process multi-threaded, and fork would copy their locks into the workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# ORT (1.29 and later) starts telemetry at import: an uploader thread, which later starts
# short-lived threads of its own (one appeared 44 s after import here), and a device-id
# file. Switched off before the import: the uploader thread would otherwise count in the
# baseline, and a spawn that came while one of its short-lived threads ran was refused.
os.environ["ORT_DISABLE_TELEMETRY"] = "1"
# ORT opens a telemetry database under the cache directory at import. Its descriptors
# would be inherited by every worker: a channel between tenants. A cache directory that
# cannot exist keeps ORT from opening anything.
os.environ["XDG_CACHE_HOME"] = "/proc/self/ire-no-cache"

import numpy  # noqa: F401 - imported once here so every worker inherits it
import onnxruntime

from protos import worker_pb2 as pb
from sandbox import _prctl, confine, devices, landlock, seccomp, worker
from sandbox.cgroups import Cgroup, CgroupDriver, kill_all, open_driver
from sandbox.errors import SandboxError
from sandbox.framing import encode_frame
from sandbox.mounts import PRIVATE_TMP
from sandbox.profile import Profile
from sandbox.runtime_paths import runtime_paths

# A control packet holds a small protobuf message; anything larger is refused.
MAX_CONTROL_PACKET = 64 * 1024
# Groups created ahead of time, so a spawn only writes limits and attaches.
SPARE_GROUPS = 2
# What a confined worker's environment holds: nothing inherited from the supervisor.
# HOME and the cache live on the worker's private tmpfs (ORT writes telemetry there).
WORKER_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": PRIVATE_TMP,
    "TMPDIR": PRIVATE_TMP,
    "XDG_CACHE_HOME": f"{PRIVATE_TMP}/.cache",
    "OMP_NUM_THREADS": "1",
    "ORT_DISABLE_TELEMETRY": "1",
}

# The worker's body: its socket, the spawn request, the confinement report, and its input
# and output regions' descriptors (-1 when it has none).
Body = Callable[[socket.socket, pb.SpawnWorker, list[str], int, int], int]


def thread_count() -> int:
    """Threads of this process, read from /proc (covers threads Python does not know)."""
    return len(os.listdir("/proc/self/task"))


def thread_names() -> list[str]:
    """The names of this process's threads, for the refusal message: which library started one."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError):
            names.append(Path(f"/proc/self/task/{tid}/comm").read_text().strip())
    return sorted(names)


def serve_worker(
    sock: socket.socket, spawn: pb.SpawnWorker, report: list[str], region_fd: int = -1, output_region_fd: int = -1
) -> int:
    """The production body: the worker's frame loop, with the strict filter after warm-up."""
    warmup = None
    if "seccomp" in confine.layer_names(report):

        def warmup() -> None:
            seccomp.load_allow_list(gpu=spawn.gpu)

    with sock:
        return worker.serve(
            sock,
            max(1, spawn.intra_op_threads),
            report,
            after_warmup=warmup,
            gpu=spawn.gpu,
            allow_cpu_fallback=spawn.allow_cpu_fallback,
            region_fd=region_fd,
            region_bytes=spawn.input_region_bytes,
            output_region_fd=output_region_fd,
            output_region_bytes=spawn.output_region_bytes,
        )


def profile_from(message: pb.Profile) -> Profile:
    return Profile(
        memory_bytes=message.memory_bytes,
        cpu=message.cpu,
        pids=message.pids,
        open_files=message.open_files,
        file_size_bytes=message.file_size_bytes,
        wall_seconds=message.wall_seconds,
        tmp_bytes=message.tmp_bytes,
    )


def requested_devices(spawn: pb.SpawnWorker) -> tuple[devices.Device, ...]:
    return tuple(devices.Device(d.name, d.major, d.minor) for d in spawn.devices)


def gpu_problem(spawn: pb.SpawnWorker) -> str:
    """Why the spawn's GPU hand-off (devices, environment) is refused; empty when it is not."""
    if not (spawn.gpu or spawn.devices or spawn.environment):
        return ""
    majors = devices.char_majors(devices.PROC_DEVICES.read_text())
    problems = devices.gpu_request_problems(spawn.gpu, requested_devices(spawn), dict(spawn.environment), majors)
    return "; ".join(problems)


def confinement_problems(cgroups: CgroupDriver | None, cgroup_error: str) -> list[str]:
    """Why this host cannot confine workers; empty when it can."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the launcher is not root: it cannot join cgroups, mount or change uid")
    if cgroups is None:
        problems.append(f"cgroups: {cgroup_error}")
    if landlock.abi_version() < 1:
        problems.append("Landlock is not available in this kernel")
    return problems


class Launcher:
    """Serves spawn and stop requests and reports child exits on the control socket."""

    def __init__(
        self,
        control: socket.socket,
        baseline_threads: int,
        cgroups: CgroupDriver | None,
        unavailable: list[str],
        body: Body = serve_worker,
    ) -> None:
        self._control = control
        self._baseline_threads = baseline_threads
        self._cgroups = cgroups
        self._unavailable = unavailable
        self._body = body
        self._read_paths = runtime_paths()
        self._gpu_read_paths = devices.gpu_read_paths()
        self._children: set[int] = set()
        self._groups: dict[int, Cgroup] = {}
        self._spare: list[Cgroup] = []
        self._names = itertools.count(1)
        self._lost = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)

    def _send(self, msg: pb.FromLauncher) -> None:
        try:
            self._control.send(msg.SerializeToString())
        except (BrokenPipeError, ConnectionResetError):
            self._lost = True  # the supervisor is gone; the loop ends and cleans up

    def run(self) -> int:
        version = self._cgroups.version if self._cgroups is not None else 0
        self._send(
            pb.FromLauncher(
                ready=pb.LauncherReady(
                    pid=os.getpid(),
                    onnxruntime_version=onnxruntime.__version__,
                    cgroup_version=version,
                    unavailable=self._unavailable,
                )
            )
        )
        self._refill()
        selector = selectors.DefaultSelector()
        selector.register(self._control, selectors.EVENT_READ, "control")
        selector.register(self._wake_r, selectors.EVENT_READ, "signal")
        try:
            while True:
                for key, _ in selector.select():
                    if key.data == "signal":
                        os.read(self._wake_r, 4096)
                        self._reap()
                    elif not self._serve_one():
                        return 0
                self._reap()
                if self._lost:
                    return 0
        finally:
            self._shutdown()

    def _refill(self) -> None:
        """Pre-create groups off the spawn path (mkdir in every hierarchy)."""
        while self._cgroups is not None and not self._unavailable and len(self._spare) < SPARE_GROUPS:
            self._spare.append(self._cgroups.create(f"w-{next(self._names)}"))

    def _serve_one(self) -> bool:
        try:
            data, fds, _flags, _addr = socket.recv_fds(self._control, MAX_CONTROL_PACKET, 3)
        except InterruptedError:
            return True
        if not data:
            return False  # the supervisor closed the channel
        request = pb.ToLauncher.FromString(data)
        case = request.WhichOneof("body")
        if case == "stop" and not fds:
            self._stop(request.stop.pid)
            return True
        problem = ""
        # A socket, then the input region's memfd and the output region's, each when the
        # request has one.
        regions = (request.spawn.input_region_bytes, request.spawn.output_region_bytes) if case == "spawn" else (0, 0)
        expected = 1 + sum(1 for size in regions if size)
        if case != "spawn" or len(fds) != expected:
            problem = f"expected a spawn request with {expected} fds, got {case!r} with {len(fds)} fds"
        elif (threads := thread_count()) > self._baseline_threads:
            names = ", ".join(thread_names())
            problem = f"launcher has {threads} threads ({names}), expected {self._baseline_threads}; refusing to fork"
        elif not request.spawn.unsafe_no_sandbox:
            problem = self._confinement_problem(request.spawn)
        if not problem:
            # Checked for unconfined workers too: the environment allow-list is not a
            # confinement layer but a bound on what the supervisor may pass.
            problem = gpu_problem(request.spawn)
        if problem:
            for fd in fds:
                os.close(fd)
            self._send(pb.FromLauncher(id=request.id, error=pb.LauncherError(detail=problem)))
            return True
        try:
            given = iter(fds[1:])
            region_fd, output_fd = (next(given) if size else -1 for size in regions)
            pid = self._fork_worker(request.spawn, fds[0], region_fd, output_fd)
        except Exception as exc:  # noqa: BLE001 - reported to the supervisor, which refuses the call
            self._send(pb.FromLauncher(id=request.id, error=pb.LauncherError(detail=f"{type(exc).__name__}: {exc}")))
            return True
        finally:
            for fd in fds:
                os.close(fd)
        self._send(pb.FromLauncher(id=request.id, spawned=pb.WorkerSpawned(pid=pid)))
        self._refill()
        return True

    def _confinement_problem(self, spawn: pb.SpawnWorker) -> str:
        if self._unavailable:
            return "workers cannot be confined on this host: " + "; ".join(self._unavailable)
        if not spawn.HasField("profile"):
            return "spawn request without a confinement profile"
        if spawn.uid == 0 or spawn.gid == 0:
            return f"refusing to run a worker as uid {spawn.uid} gid {spawn.gid}"
        return ""

    def _fork_worker(self, spawn: pb.SpawnWorker, fd: int, region_fd: int = -1, output_fd: int = -1) -> int:
        keep = [f for f in (fd, region_fd, output_fd) if f >= 0]
        if spawn.unsafe_no_sandbox:
            pid = os.fork()
            if pid == 0:
                status = 1
                try:
                    status = self._unconfined_child(spawn, fd, region_fd, output_fd)
                finally:
                    os._exit(status)
            self._children.add(pid)
            return pid
        if self._cgroups is None:
            raise SandboxError("no cgroup driver")  # _confinement_problem refuses this earlier
        profile = profile_from(spawn.profile)
        group = self._spare.pop() if self._spare else self._cgroups.create(f"w-{next(self._names)}")
        conf = confine.Confinement(
            profile=profile,
            uid=spawn.uid,
            gid=spawn.gid,
            read_paths=self._read_paths + (self._gpu_read_paths if spawn.gpu else ()),
            devices=requested_devices(spawn),
            env={**WORKER_ENV, **spawn.environment},
        )

        def body(report: list[str]) -> int:
            _prctl.set_name(f"ire-w-{spawn.tenant}")
            return self._body(socket.socket(fileno=fd), spawn, report, region_fd, output_fd)

        def on_failure(detail: str) -> None:
            error = pb.FromWorker(error=pb.WorkerError(code=pb.WorkerError.INTERNAL, detail=detail))
            os.write(fd, encode_frame(error.SerializeToString()))

        try:
            confine.prepare_group(group, conf)
            pid = confine.spawn(conf, group, body, keep_fds=keep, on_failure=on_failure)
        except BaseException:
            group.remove()
            raise
        self._children.add(pid)
        self._groups[pid] = group
        return pid

    def _unconfined_child(self, spawn: pb.SpawnWorker, fd: int, region_fd: int = -1, output_fd: int = -1) -> int:
        """The unsafe mode's worker: the launcher's own privileges, no layer at all."""
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for other in (self._control.fileno(), self._wake_r, self._wake_w):
            os.close(other)
        _prctl.die_with_parent(os.getppid())
        _prctl.set_name(f"ire-w-{spawn.tenant}")
        os.environ.update(spawn.environment)  # checked by gpu_problem before the fork
        return self._body(socket.socket(fileno=fd), spawn, [], region_fd, output_fd)

    def _stop(self, pid: int) -> None:
        if pid in self._children:
            self._kill(pid)

    def _kill(self, pid: int) -> None:
        """SIGKILL worker ``pid`` (its shim) and every process of its group, without the
        freezer: a worker is pid 1 of its own pid namespace, and the kernel kills every
        process of a namespace whose pid 1 dies, one forked in the meantime included. A
        freeze, kill and thaw cut short by this process's death signal (the supervisor
        died meanwhile) would leave the group frozen and its shim stuck."""
        group = self._groups.get(pid)
        kill_all({pid, *(group.pids() if group is not None else ())})

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid not in self._children:
                continue  # an orphan adopted as subreaper, e.g. a worker whose shim died
            self._children.discard(pid)
            code = os.waitstatus_to_exitcode(status)
            oom = self._release(pid)
            self._send(pb.FromLauncher(exited=pb.WorkerExited(pid=pid, returncode=code, oom_killed=oom)))

    def _release(self, pid: int) -> bool:
        """Kill what is left of the worker's group, remove it, and say whether OOM struck."""
        group = self._groups.pop(pid, None)
        if group is None:
            return False
        oom = group.oom_kills() > 0
        kill_all(group.pids())  # without the freezer, as in _kill (the shim is reaped)
        group.remove()
        return oom

    def _shutdown(self) -> None:
        """Kill every worker, reap them, and leave no cgroup behind.

        This runs once the supervisor has closed the control channel, which is also how its
        death looks to this process, whose own death signal then ends it at any moment
        (hence :meth:`_kill`, which never freezes a group).
        """
        for pid in list(self._children):
            self._kill(pid)
        for pid in list(self._children):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            leftover = self._groups.pop(pid, None)
            if leftover is not None:
                leftover.remove()
        self._children.clear()
        for group in self._spare:
            group.remove()
        self._spare.clear()
        if self._cgroups is not None:
            self._cgroups.close()


def open_cgroups(parent: str) -> tuple[CgroupDriver | None, str]:
    """IRE's cgroup driver for this launcher, with stale groups of dead launchers removed."""
    if os.geteuid() != 0:
        return None, "not root"
    try:
        driver = open_driver(parent, "l")
        driver.remove_stale()
    except (OSError, SandboxError) as exc:
        return None, str(exc)
    return driver, ""


def main(argv: list[str] | None = None, body: Body = serve_worker) -> int:
    parser = argparse.ArgumentParser(description="IRE worker launcher (started by the supervisor)")
    parser.add_argument("--fd", type=int, required=True, help="inherited control socket")
    parser.add_argument("--parent", type=int, required=True, help="supervisor pid")
    parser.add_argument("--cgroup-parent", default="ire", help="IRE's own cgroup, below this process's group")
    args = parser.parse_args(argv)
    _prctl.die_with_parent(args.parent)
    _prctl.set_name("ire-launcher")
    # A worker whose shim died is adopted here, not by init, and reaped.
    _prctl.set_child_subreaper()
    onnxruntime.disable_telemetry_events()
    control = socket.socket(fileno=args.fd)
    if threading.active_count() != 1:
        sys.stderr.write(f"launcher runs {threading.active_count()} Python threads; refusing to fork\n")
        return 3
    os.chdir(Path("/"))
    cgroups, cgroup_error = open_cgroups(args.cgroup_parent)
    unavailable = confinement_problems(cgroups, cgroup_error)
    return Launcher(control, thread_count(), cgroups, unavailable, body).run()


if __name__ == "__main__":
    sys.exit(main())
