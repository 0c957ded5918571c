"""Exclusive GPU slices for workers.

A slice belongs to at most one worker at a time, so two tenants never share one. A worker
gets a slice when it starts and gives it back when it exits or crashes. When no slice of
the wanted profile is free, the call waits (bounded in time and in waiters) or is refused
with RESOURCE_EXHAUSTED, as configured.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import structlog

from supervisor.errors import QuotaExceededError
from supervisor.gpu.inventory import GpuInventory, Slice

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Assignment:
    worker_id: str
    tenant: str
    slice: Slice
    since: float


@dataclass(frozen=True)
class SliceReport:
    """One assigned slice's use, for the metrics (``ire_gpu_slice_*``)."""

    tenant: str
    worker_id: str
    slice_uuid: str
    profile: str
    memory_total_bytes: int
    # -1 when the inventory cannot say: NVML reports no utilisation for MIG devices.
    memory_used_bytes: int
    utilization_percent: int


class GpuAllocator:
    def __init__(
        self,
        inventory: GpuInventory,
        *,
        queue: bool = False,
        queue_timeout_seconds: float = 5.0,
        max_waiters: int = 64,
        state_file: Path | None = None,
    ) -> None:
        self._inventory = inventory
        self._slices = inventory.slices()
        self._queue = queue
        self._timeout = queue_timeout_seconds
        self._max_waiters = max_waiters
        self._waiters = 0
        self._by_worker: dict[str, Assignment] = {}
        # One future per queued acquire, resolved whenever a slice is freed.
        self._wakeups: set[asyncio.Future[None]] = set()
        self._state_file = state_file
        self._write_state()

    def assignments(self) -> list[Assignment]:
        return sorted(self._by_worker.values(), key=lambda a: a.slice.uuid)

    def _first_free(self, profile: str) -> Slice | None:
        taken = {a.slice.uuid for a in self._by_worker.values()}
        for slice_ in self._slices:
            if slice_.profile == profile and slice_.uuid not in taken:
                return slice_
        return None

    def _take(self, tenant: str, worker_id: str, profile: str) -> Assignment | None:
        slice_ = self._first_free(profile)
        if slice_ is None:
            return None
        assignment = Assignment(worker_id, tenant, slice_, time.time())
        self._by_worker[worker_id] = assignment
        self._write_state()
        log.info("gpu slice assigned", tenant=tenant, worker_id=worker_id, slice=slice_.uuid, profile=profile)
        return assignment

    async def acquire(self, tenant: str, worker_id: str, profile: str) -> Assignment | None:
        """A slice of ``profile`` for the worker; ``None`` when the profile is "" (CPU only)."""
        if not profile:
            return None
        if worker_id in self._by_worker:
            raise ValueError(f"worker {worker_id} already holds slice {self._by_worker[worker_id].slice.uuid}")
        if not any(s.profile == profile for s in self._slices):
            known = sorted({s.profile for s in self._slices}) or ["none: no GPU on this node"]
            raise QuotaExceededError(
                f"quota 'gpu' cannot be met: no {profile!r} slice on this node; it has {known}", "gpu", 0.0
            )
        assignment = self._take(tenant, worker_id, profile)
        if assignment is not None:
            return assignment
        if not self._queue or self._waiters >= self._max_waiters:
            raise QuotaExceededError(f"quota 'gpu' exhausted: every {profile!r} slice is in use", "gpu", 1.0)
        return await self._wait(tenant, worker_id, profile)

    async def _wait(self, tenant: str, worker_id: str, profile: str) -> Assignment:
        """Queue for a slice of ``profile`` until one is freed or the timeout passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        self._waiters += 1
        try:
            while True:
                assignment = self._take(tenant, worker_id, profile)
                if assignment is not None:
                    return assignment
                remaining = deadline - loop.time()
                if remaining <= 0:
                    raise QuotaExceededError(
                        f"quota 'gpu' exhausted: no {profile!r} slice freed within {self._timeout:g} s", "gpu", 1.0
                    )
                wakeup: asyncio.Future[None] = loop.create_future()
                self._wakeups.add(wakeup)
                try:
                    await asyncio.wait_for(wakeup, remaining)
                except TimeoutError:
                    pass  # checked once more above, then refused
                finally:
                    self._wakeups.discard(wakeup)
        finally:
            self._waiters -= 1

    def free(self, worker_id: str) -> Assignment | None:
        """Give back the worker's slice at once (its process is gone); wake queued acquires.

        Synchronous, so the pool can call it from the launcher's exit callback; a worker
        without a slice is a no-op.
        """
        assignment = self._by_worker.pop(worker_id, None)
        if assignment is None:
            return None
        log.info("gpu slice released", tenant=assignment.tenant, worker_id=worker_id, slice=assignment.slice.uuid)
        self._write_state()
        for wakeup in self._wakeups:
            if not wakeup.done():
                wakeup.set_result(None)
        return assignment

    async def release(self, worker_id: str) -> None:
        self.free(worker_id)

    def holder(self, worker_id: str) -> Assignment | None:
        """The worker's assignment, if it holds a slice."""
        return self._by_worker.get(worker_id)

    def usage(self) -> list[SliceReport]:
        """Memory and utilisation of every assigned slice, read from the inventory.

        On NVML each slice costs a driver call or two: call this from a periodic task (the
        metrics scrape), never on the request path.
        """
        reports = []
        for a in self.assignments():
            used = self._inventory.usage(a.slice.uuid)
            reports.append(
                SliceReport(
                    tenant=a.tenant,
                    worker_id=a.worker_id,
                    slice_uuid=a.slice.uuid,
                    profile=a.slice.profile,
                    memory_total_bytes=a.slice.memory_bytes,
                    memory_used_bytes=used.memory_used_bytes if used is not None else -1,
                    utilization_percent=used.utilization_percent if used is not None else -1,
                )
            )
        return reports

    def _write_state(self) -> None:
        """Publish assignments for `ire gpu list` (atomic replace)."""
        if self._state_file is None:
            return
        state = [asdict(a) for a in self.assignments()]
        tmp = self._state_file.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self._state_file)
