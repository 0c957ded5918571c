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
        self._changed = asyncio.Condition()
        self._state_file = state_file
        self._write_state()

    def assignments(self) -> list[Assignment]:
        return sorted(self._by_worker.values(), key=lambda a: a.slice.uuid)

    def _free(self, profile: str) -> Slice | None:
        taken = {a.slice.uuid for a in self._by_worker.values()}
        for slice_ in self._slices:
            if slice_.profile == profile and slice_.uuid not in taken:
                return slice_
        return None

    def _take(self, tenant: str, worker_id: str, profile: str) -> Assignment | None:
        slice_ = self._free(profile)
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
        self._waiters += 1
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._free(profile) is not None), self._timeout)
                assignment = self._take(tenant, worker_id, profile)
        except TimeoutError as exc:
            raise QuotaExceededError(
                f"quota 'gpu' exhausted: no {profile!r} slice freed within {self._timeout:g} s", "gpu", 1.0
            ) from exc
        finally:
            self._waiters -= 1
        if assignment is None:  # cannot happen: the condition held under the lock
            raise QuotaExceededError(f"quota 'gpu' exhausted: every {profile!r} slice is in use", "gpu", 1.0)
        return assignment

    async def release(self, worker_id: str) -> None:
        assignment = self._by_worker.pop(worker_id, None)
        if assignment is None:
            return
        log.info("gpu slice released", tenant=assignment.tenant, worker_id=worker_id, slice=assignment.slice.uuid)
        self._write_state()
        async with self._changed:
            self._changed.notify_all()

    def _write_state(self) -> None:
        """Publish assignments for `ire gpu list` (atomic replace)."""
        if self._state_file is None:
            return
        state = [asdict(a) for a in self.assignments()]
        tmp = self._state_file.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self._state_file)
