"""GPUs and MIG slices: inventory (NVML or simulated), exclusive allocation, worker devices."""

from supervisor.gpu.allocator import Assignment, GpuAllocator, SliceReport
from supervisor.gpu.errors import GpuUnusableError
from supervisor.gpu.inventory import Gpu, GpuInventory, Slice
from supervisor.gpu.nvml import NvmlInventory
from supervisor.gpu.simulated import LAYOUTS, SimulatedInventory

__all__ = [
    "LAYOUTS",
    "Assignment",
    "Gpu",
    "GpuAllocator",
    "GpuInventory",
    "GpuUnusableError",
    "NvmlInventory",
    "SimulatedInventory",
    "Slice",
    "SliceReport",
]
