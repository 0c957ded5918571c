"""What the pool needs to know about a tenant to start its worker."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from supervisor.quota.limits import QuotaLimits


@dataclass(frozen=True)
class WorkerTenant:
    # A small integer unique to the tenant: its workers run as uid ``uid_base + number``.
    number: int
    tier: str
    # From the tenant's effective quota (tier defaults with its overrides), handed to the
    # worker's confinement profile: the cgroup's memory, CPU and pids limits.
    memory_bytes: int
    cpu: float
    pids: int
    # Handed to the GPU allocator: "" (CPU only), a MIG profile such as "1g.18gb", or "gpu".
    gpu: str = ""

    @classmethod
    def from_quota(cls, number: int, tier: str, limits: QuotaLimits) -> WorkerTenant:
        return cls(number, tier, limits.memory_bytes, limits.cpu, limits.pids, limits.gpu)

    def profile_overrides(self) -> dict[str, int | float]:
        """The quota's part of the sandbox profile (``sandbox.profile.profile_for``)."""
        return {"memory_bytes": self.memory_bytes, "cpu": self.cpu, "pids": self.pids}


# A tenant's worker facts, read from the registry (supervisor.workers.startup).
TenantInfo = Callable[[str], WorkerTenant]
