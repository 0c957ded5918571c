"""Periodic samples for the gauges and worker counters: never on the call path.

Every ``metrics.sample_seconds`` it reads each live worker's memory and CPU with psutil,
the GPU slices' use from the allocator, and the pool's exit and OOM bookkeeping. Worker
starts and crashes are seen by sampling, so a worker that starts and exits between two
samples is counted as a crash (or OOM) but not as a start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from typing import Protocol

import psutil
import structlog

from supervisor.audit import AuditWriter
from supervisor.gpu.allocator import SliceReport
from supervisor.metrics import Metrics

log = structlog.get_logger(__name__)

__all__ = ["Sampler", "WorkerSource"]

# Exits the supervisor causes when it stops a worker: not crashes.
_STOPPED = {0, -signal.SIGTERM, -signal.SIGKILL}


class WorkerSource(Protocol):
    oom_kills: dict[str, int]
    exits: dict[int, tuple[int, bool]]

    def worker_pid(self, tenant: str) -> int | None: ...

    def gpu_usage(self) -> list[SliceReport]: ...


class Sampler:
    def __init__(
        self,
        metrics: Metrics,
        pool: WorkerSource,
        tenants: Callable[[], list[str]],
        audit: AuditWriter | None = None,
    ) -> None:
        self._metrics = metrics
        self._audit = audit
        self._pool = pool
        self._tenants = tenants
        self._pids: dict[int, str] = {}
        self._counted_exits: set[int] = set()
        self._ooms: dict[str, int] = {}

    def sample(self) -> None:
        m = self._metrics
        for tenant in self._tenants():
            pid = self._pool.worker_pid(tenant)
            label = m.tenant(tenant)
            if pid is None:
                m.worker_memory.labels(label).set(0)
                continue
            if pid not in self._pids:
                self._pids[pid] = tenant
                m.worker_starts.labels(label).inc()
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                m.worker_memory.labels(label).set(process.memory_info().rss)
                times = process.cpu_times()
                m.worker_cpu.labels(label).set(times.user + times.system)
        for pid, (returncode, oom) in list(self._pool.exits.items()):
            owner = self._pids.pop(pid, None)
            if pid in self._counted_exits or owner is None:
                continue
            self._counted_exits.add(pid)
            if not oom and returncode not in _STOPPED:
                m.worker_crashes.labels(m.tenant(owner)).inc()
        if len(self._counted_exits) > 4096:
            self._counted_exits.clear()
        for tenant, count in self._pool.oom_kills.items():
            new = count - self._ooms.get(tenant, 0)
            if new > 0:
                m.worker_ooms.labels(m.tenant(tenant)).inc(new)
            self._ooms[tenant] = count
        if self._audit is not None:
            m.audit_backlog.set(self._audit.backlog)
        for report in self._pool.gpu_usage():
            labels = (report.slice_uuid, m.tenant(report.tenant))
            if report.memory_used_bytes >= 0:
                m.gpu_memory.labels(*labels).set(report.memory_used_bytes)
            m.gpu_utilization.labels(*labels).set(report.utilization_percent)

    async def run(self, every: float) -> None:
        while True:
            try:
                # In the loop's thread: the pool's bookkeeping is only touched there.
                self.sample()
            except Exception as exc:  # noqa: BLE001 - a failed sample must not stop serving
                log.warning("metrics sample failed", error=str(exc), error_type=type(exc).__name__)
            await asyncio.sleep(every)
