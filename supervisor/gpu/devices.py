"""What a worker assigned a slice is given: its environment and its device nodes.

The worker sees only its own devices: ``CUDA_VISIBLE_DEVICES`` names its slice, its mount
namespace holds only these nodes, and on cgroup v1 the devices controller allows only
these (character major 195 for nvidia<minor> and nvidiactl; nvidia-uvm and nvidia-caps
have dynamic majors read from /proc/devices). The launcher checks all of it again
(``sandbox/devices.py``) before it forks the worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from sandbox.devices import char_majors
from supervisor.gpu.inventory import NVIDIA_MAJOR, NVIDIACTL_MINOR, Slice

PROC_DEVICES = Path("/proc/devices")


@dataclass(frozen=True)
class DeviceNode:
    path: str
    major: int
    minor: int

    @property
    def name(self) -> str:
        """The entry below /dev, as the launcher takes it (``nvidia-caps/nvidia-cap12``)."""
        return self.path.removeprefix("/dev/")

    def cgroup_v1_rule(self) -> str:
        return f"c {self.major}:{self.minor} rw"


@dataclass(frozen=True)
class WorkerGpu:
    """Everything a worker on one slice is handed, in the launcher's terms."""

    slice_uuid: str
    devices: tuple[DeviceNode, ...]
    environment: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


def dynamic_majors(text: str) -> dict[str, int]:
    """Character-device majors by driver name, from /proc/devices."""
    return char_majors(text)


def device_nodes(slice_: Slice, majors: dict[str, int]) -> list[DeviceNode]:
    """The device nodes a worker on ``slice_`` needs, and nothing else."""
    nodes = [
        DeviceNode("/dev/nvidiactl", NVIDIA_MAJOR, NVIDIACTL_MINOR),
        DeviceNode(f"/dev/nvidia{slice_.parent_minor}", NVIDIA_MAJOR, slice_.parent_minor),
    ]
    if "nvidia-uvm" in majors:
        nodes.append(DeviceNode("/dev/nvidia-uvm", majors["nvidia-uvm"], 0))
    caps = majors.get("nvidia-caps")
    if caps is not None:
        for minor in (slice_.gi_cap_minor, slice_.ci_cap_minor):
            if minor >= 0:
                nodes.append(DeviceNode(f"/dev/nvidia-caps/nvidia-cap{minor}", caps, minor))
    return nodes


def worker_environment(slice_: Slice) -> dict[str, str]:
    """The environment that pins ONNX Runtime's CUDA provider to the slice, as device 0."""
    return {"CUDA_VISIBLE_DEVICES": slice_.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


def worker_gpu(slice_: Slice, majors: dict[str, int] | None = None) -> WorkerGpu:
    """The hand-off for a worker on ``slice_``; ``majors`` default to this host's /proc/devices."""
    if majors is None:
        majors = dynamic_majors(PROC_DEVICES.read_text())
    return WorkerGpu(slice_.uuid, tuple(device_nodes(slice_, majors)), MappingProxyType(worker_environment(slice_)))
