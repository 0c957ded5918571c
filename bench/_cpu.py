"""CPU time spent per call, by the server (with its children) and by the load generator.

On a machine where every process shares two cores, throughput follows the CPU that one
call costs in all: the server's threads, its worker processes and the client. Reading
that cost next to the throughput shows where a ratio comes from.

What is not counted: kernel threads working for a process (the filesystem journal
flushing the audit log, for one) and children that exit inside the window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

__all__ = ["CpuSample", "sample"]


@dataclass(frozen=True)
class CpuSample:
    """Seconds of CPU (user + system) used so far, by the server's process tree and by us."""

    server: float
    loadgen: float

    def per_call_us(self, later: CpuSample, calls: int) -> dict[str, float]:
        """Microseconds of CPU per call between this sample and ``later``."""
        if calls <= 0:
            return {}
        return {
            "server": (later.server - self.server) / calls * 1e6,
            "loadgen": (later.loadgen - self.loadgen) / calls * 1e6,
        }


def _tree_seconds(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0.0
    for process in (root, *root.children(recursive=True)):
        try:
            times = process.cpu_times()
        except psutil.Error:  # a child that exited between the listing and the read
            continue
        total += times.user + times.system
    return total


def sample(server_pid: int) -> CpuSample:
    """CPU used so far by ``server_pid`` with its descendants, and by this whole process."""
    return CpuSample(server=_tree_seconds(server_pid), loadgen=time.process_time())
