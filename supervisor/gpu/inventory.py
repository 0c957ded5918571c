"""What GPUs a node has, as the allocator and the worker see them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

# NVIDIA's character-device major for /dev/nvidia<minor> and /dev/nvidiactl (minor 255).
NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255


@dataclass(frozen=True)
class Gpu:
    index: int
    uuid: str
    name: str
    memory_bytes: int
    mig_enabled: bool
    healthy: bool
    minor: int


@dataclass(frozen=True)
class Slice:
    """One allocatable unit: a MIG device, or a whole GPU that has MIG disabled."""

    uuid: str  # "MIG-…" or "GPU-…": the value for CUDA_VISIBLE_DEVICES
    profile: str  # e.g. "1g.18gb", or "gpu" for a whole GPU
    memory_bytes: int
    parent_uuid: str
    parent_minor: int
    # MIG only: GPU-instance and compute-instance ids, and the minors of their
    # /dev/nvidia-caps/nvidia-cap<N> access nodes.
    gpu_instance: int = -1
    compute_instance: int = -1
    gi_cap_minor: int = -1
    ci_cap_minor: int = -1


@dataclass(frozen=True)
class SliceUsage:
    memory_used_bytes: int
    utilization_percent: int


class GpuInventory(Protocol):
    def gpus(self) -> list[Gpu]: ...

    def slices(self) -> list[Slice]: ...

    def usage(self, slice_uuid: str) -> SliceUsage | None: ...
