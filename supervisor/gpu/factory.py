"""Build the inventory and allocator a home's settings ask for."""

from __future__ import annotations

from pathlib import Path

from supervisor.errors import ConfigError
from supervisor.gpu.allocator import GpuAllocator
from supervisor.gpu.inventory import Gpu, GpuInventory, Slice, SliceUsage
from supervisor.gpu.nvml import NvmlInventory
from supervisor.gpu.simulated import SimulatedInventory
from supervisor.settings import GpuSettings

STATE_FILE = "gpu-assignments.json"


class NoGpus:
    def gpus(self) -> list[Gpu]:
        return []

    def slices(self) -> list[Slice]:
        return []

    def usage(self, slice_uuid: str) -> SliceUsage | None:
        return None


def open_inventory(settings: GpuSettings) -> GpuInventory:
    kind, _, layout = settings.inventory.partition(":")
    if kind == "nvml" and not layout:
        return NvmlInventory()
    if kind == "none" and not layout:
        return NoGpus()
    if kind == "simulated":
        return SimulatedInventory(layout)
    raise ConfigError(f"gpu.inventory: got {settings.inventory!r}, expected 'nvml', 'none' or 'simulated:LAYOUT'")


def open_allocator(settings: GpuSettings, home_root: Path) -> GpuAllocator:
    if settings.when_exhausted not in ("refuse", "queue"):
        raise ConfigError(f"gpu.when_exhausted: got {settings.when_exhausted!r}, expected 'refuse' or 'queue'")
    return GpuAllocator(
        open_inventory(settings),
        queue=settings.when_exhausted == "queue",
        queue_timeout_seconds=settings.queue_timeout_seconds,
        max_waiters=settings.max_waiters,
        state_file=home_root / STATE_FILE,
    )
