"""One worker process per tenant, started on first use, reused, replaced when it dies.

Every worker comes from the launcher (``LauncherClient.spawn``): that is the single spawn
path the sandbox wraps. The number of live workers is bounded; an idle worker is stopped
to make room, and when every worker is busy the call is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from protos import worker_pb2 as pb
from supervisor.errors import (
    InvalidInputError,
    ModelLoadError,
    UnavailableError,
    WorkerCrashedError,
    WorkerProtocolError,
)
from supervisor.settings import Settings
from supervisor.workers.connection import WorkerConnection
from supervisor.workers.launcher import LauncherClient

log = structlog.get_logger(__name__)


@dataclass
class _Slot:
    tenant: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    conn: WorkerConnection | None = None
    loaded: set[str] = field(default_factory=set)
    loading: dict[str, asyncio.Lock] = field(default_factory=dict)
    last_used: float = 0.0


class WorkerPool:
    def __init__(self, launcher: LauncherClient, settings: Settings) -> None:
        self._launcher = launcher
        self._settings = settings
        self._slots: dict[str, _Slot] = {}
        self._tenant_of_pid: dict[int, str] = {}
        self.exits: dict[int, int] = {}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._launcher.attach(loop, self._on_exit)

    def _on_exit(self, pid: int, returncode: int) -> None:
        tenant = self._tenant_of_pid.pop(pid, "")
        self.exits[pid] = returncode
        if len(self.exits) > 1024:
            self.exits.pop(next(iter(self.exits)))
        log.info("worker exited", pid=pid, tenant=tenant, returncode=returncode)

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
            cfg = self._settings.workers
            started = time.perf_counter()
            pid, sock = await self._launcher.spawn(
                slot.tenant, uuid.uuid4().hex, cfg.intra_op_threads, cfg.start_timeout_seconds
            )
            self._tenant_of_pid[pid] = slot.tenant
            try:
                conn = await WorkerConnection.open(
                    pid, sock, self._settings.limits.max_worker_frame_bytes, cfg.start_timeout_seconds
                )
            except BaseException:
                _kill_pid(pid)
                raise
            log.info(
                "worker started",
                tenant=slot.tenant,
                pid=pid,
                confinement=list(conn.hello.confinement) if conn.hello else [],
                start_ms=round((time.perf_counter() - started) * 1000, 2),
            )
            slot.conn = conn
            return conn

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
        # Only a pid the launcher has not yet reported as exited is signalled, so a
        # recycled pid of an unrelated process is not hit.
        if conn.pid in self._tenant_of_pid:
            _kill_pid(conn.pid)

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
            if case == "error":
                log.error("model failed to load", model_sha256=key, detail=reply.error.detail)
                raise ModelLoadError(f"model {key} failed to load in the worker")
            if case != "loaded" or reply.loaded.model_key != key:
                raise WorkerProtocolError(f"worker answered a load with {case!r}")
            if slot.conn is conn:
                slot.loaded.add(key)

    async def infer(self, tenant: str, key: str, load: Callable[[], bytes], request: pb.InferRequest) -> pb.InferResult:
        """Run ``request`` on the tenant's worker, loading model ``key`` first if needed."""
        slot = self._slots.setdefault(tenant, _Slot(tenant))
        slot.last_used = time.monotonic()
        conn = await self._worker(slot)
        try:
            await self._ensure_loaded(slot, conn, key, load)
            reply = await conn.request(pb.ToWorker(infer=request), self._settings.workers.call_timeout_seconds)
        except WorkerProtocolError:
            self._kill(conn)
            raise
        except TimeoutError as exc:
            log.error("worker call timed out; stopping the worker", pid=conn.pid)
            self._kill(conn)
            raise WorkerCrashedError(f"worker {conn.pid} did not answer in time") from exc
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


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
