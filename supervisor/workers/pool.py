"""One worker process per tenant, started on first use, reused, replaced when it dies.

Every worker comes from the launcher (``LauncherClient.spawn``): that is the single spawn
path the sandbox wraps. Each worker runs under its tenant's confinement profile and uid,
and must report every confinement layer in its hello, or it is stopped and the call
refused; only ``ire serve --unsafe-no-sandbox`` accepts unconfined workers, and then every
call logs a warning. The number of live workers is bounded; an idle worker is stopped to
make room, and when every worker is busy the call is refused.

A tenant's effective quota sets its worker's memory, CPU and pids limits. When it names a
GPU profile, the worker gets an exclusive slice from the GPU allocator before it is
spawned (or the call gets the allocator's RESOURCE_EXHAUSTED), and gives it back when the
launcher reports the worker's exit, whatever the cause.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import structlog

from protos import worker_pb2 as pb
from sandbox.confine import LAYERS, layer_names
from sandbox.profile import Profile, profile_for
from supervisor.errors import (
    InvalidInputError,
    ModelLoadError,
    UnavailableError,
    WorkerCrashedError,
    WorkerOutOfMemoryError,
    WorkerProtocolError,
    WorkerStartError,
)
from supervisor.gpu.allocator import Assignment, GpuAllocator, SliceReport
from supervisor.gpu.devices import WorkerGpu, worker_gpu
from supervisor.gpu.errors import GpuUnusableError
from supervisor.gpu.factory import NoGpus
from supervisor.settings import Settings
from supervisor.tensors import Outputs
from supervisor.workers.connection import WorkerConnection
from supervisor.workers.launcher import LauncherClient
from supervisor.workers.region import InputRegion, OutputRegion
from supervisor.workers.tenant import TenantInfo, WorkerTenant

log = structlog.get_logger(__name__)

# Whether a tenant may keep a model ONNX Runtime could only place on CPU although its
# worker has a GPU slice (a policy decision; without a hook, never).
CpuFallbackPolicy = Callable[[str], bool]
# Seconds the current call waited for its worker and model before being sent (per task).
QUEUE_SECONDS: contextvars.ContextVar[float] = contextvars.ContextVar("ire_queue_seconds", default=-1.0)
# How long a crashed call waits for the launcher's exit report to tell OOM from a crash.
EXIT_REPORT_SECONDS = 2.0


@dataclass
class _Slot:
    tenant: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: WorkerConnection | None = None
    loaded: set[str] = field(default_factory=set)
    loading: dict[str, asyncio.Lock] = field(default_factory=dict)
    last_used: float = 0.0
    # Seconds one call may take: the worker setting, capped by the profile's wall clock.
    timeout: float = 60.0
    # The GPU slice the live worker holds, if any (its placement, for the audit).
    placement: Assignment | None = None


class WorkerPool:
    def __init__(
        self,
        launcher: LauncherClient,
        settings: Settings,
        tenant_info: TenantInfo | None = None,
        *,
        unsafe_no_sandbox: bool = False,
        gpu: GpuAllocator | None = None,
        allow_cpu_fallback: CpuFallbackPolicy | None = None,
    ) -> None:
        self._launcher = launcher
        self._settings = settings
        self._tenant_info = tenant_info
        self._unsafe = unsafe_no_sandbox
        # No allocator: a node without GPUs, where a quota naming a GPU cannot be met.
        self._gpu = gpu if gpu is not None else GpuAllocator(NoGpus())
        self._allow_cpu_fallback = allow_cpu_fallback
        self._slots: dict[str, _Slot] = {}
        self._tenant_of_pid: dict[int, str] = {}
        # The allocator's worker id of every live worker, by pid: its slice is freed on exit.
        self._worker_of_pid: dict[int, str] = {}
        self._exit_waiters: dict[int, asyncio.Future[tuple[int, bool]]] = {}
        # (returncode, oom_killed) of the last workers that exited, by pid.
        self.exits: dict[int, tuple[int, bool]] = {}
        # Workers the kernel's OOM killer ended, per tenant.
        self.oom_kills: dict[str, int] = {}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._launcher.attach(loop, self._on_exit)

    def _on_exit(self, pid: int, returncode: int, oom_killed: bool) -> None:
        tenant = self._tenant_of_pid.pop(pid, "")
        worker_id = self._worker_of_pid.pop(pid, None)
        if worker_id is not None:
            # The process and everything in its cgroup are gone: the slice is free again.
            self._gpu.free(worker_id)
            slot = self._slots.get(tenant)
            if slot is not None and slot.placement is not None and slot.placement.worker_id == worker_id:
                slot.placement = None
        self.exits[pid] = (returncode, oom_killed)
        if len(self.exits) > 1024:
            self.exits.pop(next(iter(self.exits)))
        if returncode == -signal.SIGSYS:
            log.warning("worker killed by its seccomp filter: a syscall outside the allow-list", pid=pid, tenant=tenant)
        if oom_killed:
            self.oom_kills[tenant] = self.oom_kills.get(tenant, 0) + 1
            log.warning("worker exceeded its memory limit", pid=pid, tenant=tenant, oom_kills=self.oom_kills[tenant])
        log.info("worker exited", pid=pid, tenant=tenant, returncode=returncode, oom_killed=oom_killed)
        waiter = self._exit_waiters.pop(pid, None)
        if waiter is not None and not waiter.done():
            waiter.set_result((returncode, oom_killed))

    def _tenant(self, tenant: str) -> WorkerTenant | None:
        return self._tenant_info(tenant) if self._tenant_info is not None else None

    def profile(self, tenant: str) -> tuple[int, Profile]:
        """The tenant's worker uid and confinement profile."""
        return self._confinement(tenant, self._tenant(tenant))

    def _confinement(self, tenant: str, info: WorkerTenant | None) -> tuple[int, Profile]:
        number = info.number if info is not None else 0
        if info is None or number <= 0:
            raise WorkerStartError(f"tenant {tenant!r} has number {number}, expected a positive integer")
        # The quota's memory, CPU and pids override the tier's profile.
        return self._settings.sandbox.uid_base + number, profile_for(info.tier, info.profile_overrides())

    def placement(self, tenant: str) -> str | None:
        """The uuid of the GPU slice (``MIG-…`` or ``GPU-…``) the tenant's live worker holds,
        or None when it runs on CPU or has no worker: what the audit records as placement."""
        slot = self._slots.get(tenant)
        if slot is None or slot.placement is None:
            return None
        return slot.placement.slice.uuid

    def gpu_usage(self) -> list[SliceReport]:
        """Memory and utilisation of every assigned slice (for ``ire_gpu_slice_*``); it
        asks the inventory (NVML), so call it from the metrics scrape, not per call."""
        return self._gpu.usage()

    def worker_pid(self, tenant: str) -> int | None:
        """The pid of the tenant's live worker, if any."""
        slot = self._slots.get(tenant)
        if slot and slot.conn and slot.conn.alive:
            return slot.conn.pid
        return None

    async def _worker(self, slot: _Slot) -> WorkerConnection:
        async with slot.lock:
            if slot.conn is not None and slot.conn.alive:
                return slot.conn
            if slot.conn is not None:
                self._kill(slot.conn)
            slot.conn = None
            slot.loaded.clear()
            await self._make_room(slot.tenant)
            slot.placement = None
            cfg = self._settings.workers
            started = time.perf_counter()
            info = self._tenant(slot.tenant)
            if self._unsafe:
                uid, profile = 0, None
            else:
                uid, profile = self._confinement(slot.tenant, info)
            slot.timeout = min(cfg.call_timeout_seconds, profile.wall_seconds if profile else cfg.call_timeout_seconds)
            worker_id = uuid.uuid4().hex
            # Raises QuotaExceededError (RESOURCE_EXHAUSTED) when no slice can be had.
            assignment = await self._gpu.acquire(slot.tenant, worker_id, info.gpu if info is not None else "")
            region, output_region = self._new_regions(slot.tenant)
            try:
                gpu = self._hand_off(slot.tenant, assignment)
                pid, sock = await self._launcher.spawn(
                    slot.tenant,
                    worker_id,
                    cfg.intra_op_threads,
                    cfg.start_timeout_seconds,
                    uid=uid,
                    profile=profile,
                    gpu=gpu,
                    allow_cpu_fallback=gpu is not None and self._cpu_fallback_allowed(slot.tenant),
                    unsafe_no_sandbox=self._unsafe,
                    region=region,
                    output_region=output_region,
                )
            except BaseException:
                self._gpu.free(worker_id)  # no process was started: nothing can hold the slice
                _close(region, output_region)
                raise
            self._tenant_of_pid[pid] = slot.tenant
            if assignment is not None:
                self._worker_of_pid[pid] = worker_id
            try:
                conn = await WorkerConnection.open(
                    pid, sock, self._settings.limits.max_worker_frame_bytes, cfg.start_timeout_seconds
                )
                confinement = list(conn.hello.confinement) if conn.hello else []
                self._check_confinement(slot.tenant, pid, confinement)
            except BaseException:
                self._launcher.stop(pid)
                _close(region, output_region)
                raise
            hello = conn.hello
            if region is not None:
                if hello is not None and hello.input_region_bytes == region.size:
                    conn.use_region(region, cfg.input_region_min_bytes)
                else:
                    log.warning("worker did not map its input region; its inputs travel in frames", pid=pid)
                    region.close()
            if output_region is not None:
                if hello is not None and hello.output_region_bytes == output_region.size:
                    conn.use_output_region(output_region, cfg.output_region_min_bytes)
                else:
                    log.warning("worker did not map its output region; its outputs travel in frames", pid=pid)
                    output_region.close()
            log.info(
                "worker started",
                tenant=slot.tenant,
                pid=pid,
                uid=uid,
                confinement=confinement,
                gpu_slice=assignment.slice.uuid if assignment is not None else None,
                start_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            slot.conn = conn
            slot.placement = assignment
            return conn

    def _new_regions(self, tenant: str) -> tuple[InputRegion | None, OutputRegion | None]:
        """The new worker's input and output regions, each where the settings want one."""
        cfg = self._settings.workers
        region: InputRegion | None = None
        output_region: OutputRegion | None = None
        if cfg.input_region:
            try:
                region = InputRegion(cfg.input_region_bytes, f"ire-inputs-{tenant}")
            except OSError as exc:
                log.warning("cannot make an input region; the worker's inputs travel in frames", error=str(exc))
        if cfg.output_region:
            try:
                output_region = OutputRegion(cfg.output_region_bytes, f"ire-outputs-{tenant}")
            except OSError as exc:
                log.warning("cannot make an output region; the worker's outputs travel in frames", error=str(exc))
        return region, output_region

    @staticmethod
    def _hand_off(tenant: str, assignment: Assignment | None) -> WorkerGpu | None:
        """The devices and environment of the worker's slice, if it has one."""
        if assignment is None:
            return None
        gpu = worker_gpu(assignment.slice)
        missing = [d.path for d in gpu.devices if not os.path.exists(d.path)]
        if missing:
            # A simulated inventory on a host without GPUs, or a driver not loaded: the
            # worker starts without those nodes and its model loads will find no CUDA.
            log.warning("GPU device nodes missing on this host", tenant=tenant, slice=gpu.slice_uuid, missing=missing)
        return gpu

    def _cpu_fallback_allowed(self, tenant: str) -> bool:
        return self._allow_cpu_fallback is not None and self._allow_cpu_fallback(tenant)

    def _check_confinement(self, tenant: str, pid: int, confinement: list[str]) -> None:
        if self._unsafe:
            return
        missing = [layer for layer in LAYERS if layer not in layer_names(confinement)]
        if missing:
            log.error("worker is not fully confined", tenant=tenant, pid=pid, confinement=confinement, missing=missing)
            raise WorkerStartError(f"worker {pid} reported confinement {confinement}, missing {missing}")

    async def _make_room(self, tenant: str) -> None:
        live = [s for s in self._slots.values() if s.conn is not None and s.conn.alive and s.tenant != tenant]
        if len(live) < self._settings.workers.max_workers:
            return
        idle = sorted((s for s in live if s.conn and s.conn.in_flight == 0), key=lambda s: s.last_used)
        if not idle:
            raise UnavailableError(f"all {len(live)} workers are busy; limit is {self._settings.workers.max_workers}")
        victim = idle[0]
        log.info("stopping idle worker to make room", tenant=victim.tenant)
        if victim.conn is not None:
            self._kill(victim.conn)

    def _kill(self, conn: WorkerConnection) -> None:
        conn.close()
        # Only a pid the launcher has not yet reported as exited is stopped, so a
        # recycled pid of an unrelated process is not hit. The launcher kills the
        # worker's whole cgroup, so nothing the worker forked survives it.
        if conn.pid in self._tenant_of_pid:
            self._launcher.stop(conn.pid)

    async def _crash_cause(self, tenant: str, pid: int, exc: WorkerCrashedError) -> Exception:
        """Tell an OOM kill from any other crash, from the launcher's exit report."""
        if pid in self.exits:
            return self._oom_or(tenant, pid, exc, self.exits[pid][1])
        waiter = self._exit_waiters.setdefault(pid, asyncio.get_running_loop().create_future())
        try:
            _code, oom = await asyncio.wait_for(asyncio.shield(waiter), EXIT_REPORT_SECONDS)
        except TimeoutError:
            return exc
        return self._oom_or(tenant, pid, exc, oom)

    @staticmethod
    def _oom_or(tenant: str, pid: int, exc: WorkerCrashedError, oom: bool) -> Exception:
        if not oom:
            return exc
        return WorkerOutOfMemoryError(f"worker {pid} of tenant {tenant!r} was killed for exceeding its memory limit")

    async def _ensure_loaded(self, slot: _Slot, conn: WorkerConnection, key: str, load: Callable[[], bytes]) -> None:
        if key in slot.loaded:
            return
        lock = slot.loading.setdefault(key, asyncio.Lock())
        async with lock:
            if key in slot.loaded and slot.conn is conn:
                return
            data = load()
            reply = await conn.request(
                pb.ToWorker(load=pb.LoadModel(model_key=key, onnx=data)),
                self._settings.workers.start_timeout_seconds,
            )
            case = reply.WhichOneof("body")
            if case == "error" and reply.error.code == pb.WorkerError.GPU_UNUSABLE and slot.placement is not None:
                self._refuse_cpu_fallback(slot, slot.placement, conn, key, reply.error.detail)
            if case == "error":
                log.error("model failed to load", model_sha256=key, detail=reply.error.detail)
                raise ModelLoadError(f"model {key} failed to load in the worker")
            if case != "loaded" or reply.loaded.model_key != key:
                raise WorkerProtocolError(f"worker answered a load with {case!r}")
            if slot.placement is not None:
                # The worker's word only (it is untrusted): logged, never acted upon.
                log.info(
                    "model loaded on a GPU slice",
                    tenant=slot.tenant,
                    model_sha256=key,
                    slice=slot.placement.slice.uuid,
                    providers=list(reply.loaded.providers)[:8],
                )
            if slot.conn is conn:
                slot.loaded.add(key)

    def _refuse_cpu_fallback(
        self, slot: _Slot, placement: Assignment, conn: WorkerConnection, key: str, detail: str
    ) -> NoReturn:
        """ORT could not use the worker's slice: stop the worker, which frees the slice."""
        log.error(
            "worker cannot use its GPU slice; ONNX Runtime would have run the model on CPU",
            tenant=slot.tenant,
            model_sha256=key,
            slice=placement.slice.uuid,
            detail=detail[:2000],
        )
        self._kill(conn)
        raise GpuUnusableError(
            f"tenant {slot.tenant!r}: the worker could not use GPU slice {placement.slice.uuid} "
            "and CPU fallback is not allowed"
        )

    async def infer(
        self,
        tenant: str,
        key: str,
        load: Callable[[], bytes],
        request: pb.ToWorker,
        aside: Sequence[tuple[int, bytes]] = (),
        *,
        output_bytes: int = 0,
    ) -> pb.InferResult | Outputs:
        """Run ``request`` (a message whose ``infer`` is set, built in place: wrapping an
        InferRequest would copy its tensors) on the tenant's worker, loading model ``key``
        first if needed. ``aside`` holds input bytes left out of ``request``
        (:attr:`supervisor.tensors.DecodedRequest.aside`); ``output_bytes`` is what its
        outputs are expected to come to (:attr:`~supervisor.tensors.DecodedRequest.output_bytes`).
        The result is the worker's, or its outputs as plain bytes when they came through
        the worker's output region (:meth:`WorkerConnection.infer`).

        The time spent before the request reaches the worker (starting it, loading the
        model) is left in :data:`QUEUE_SECONDS` for the caller's metrics.
        """
        queued = time.perf_counter()
        if self._unsafe:
            log.warning("UNSAFE: serving a call with an unconfined worker (--unsafe-no-sandbox)", tenant=tenant)
        slot = self._slots.get(tenant)
        if slot is None:
            slot = self._slots[tenant] = _Slot(tenant)
        slot.last_used = time.monotonic()
        conn = slot.conn
        # The common case, a live worker that has the model, takes neither lock.
        ready = conn is not None and conn.alive and key in slot.loaded
        if conn is None or not ready:
            conn = await self._worker(slot)
        try:
            if not ready:
                await self._ensure_loaded(slot, conn, key, load)
            QUEUE_SECONDS.set(time.perf_counter() - queued)
            reply = await conn.infer(request, slot.timeout, aside, output_bytes)
        except WorkerProtocolError:
            self._kill(conn)
            raise
        except WorkerCrashedError as exc:
            raise await self._crash_cause(tenant, conn.pid, exc) from exc
        except TimeoutError as exc:
            log.error("worker call timed out; stopping the worker", pid=conn.pid)
            self._kill(conn)
            raise WorkerCrashedError(f"worker {conn.pid} did not answer in time") from exc
        if isinstance(reply, Outputs):
            return reply  # outputs copied out of the worker's output region
        case = reply.WhichOneof("body")
        if case == "result":
            return reply.result
        if case == "error" and reply.error.code == pb.WorkerError.BAD_REQUEST:
            log.info("model rejected the input", detail=reply.error.detail)
            raise InvalidInputError("the model rejected the input at run time")
        self._kill(conn)
        raise WorkerProtocolError(f"worker answered an infer with {case!r}: {reply.error.detail[:200]}")

    async def close(self) -> None:
        for slot in self._slots.values():
            if slot.conn is not None:
                self._kill(slot.conn)
        self._slots.clear()
        self._launcher.close()
        # The launcher has killed and reaped every worker before exiting, so the slices
        # are free; their exit events will not be read any more.
        for worker_id in self._worker_of_pid.values():
            self._gpu.free(worker_id)
        self._worker_of_pid.clear()


def _close(*regions: InputRegion | OutputRegion | None) -> None:
    for region in regions:
        if region is not None:
            region.close()
