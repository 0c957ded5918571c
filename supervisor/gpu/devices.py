"""What a worker assigned a slice is given: its environment and its device nodes.

The worker sees only its own devices: ``CUDA_VISIBLE_DEVICES`` names its slice, its mount
namespace holds only these nodes, and on cgroup v1 the devices controller allows only
these (character major 195 for nvidia<minor> and nvidiactl; nvidia-uvm and nvidia-caps
have dynamic majors read from /proc/devices).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.gpu.inventory import NVIDIA_MAJOR, NVIDIACTL_MINOR, Slice

PROC_DEVICES = Path("/proc/devices")


@dataclass(frozen=True)
class DeviceNode:
    path: str
    major: int
    minor: int

    def cgroup_v1_rule(self) -> str:
        return f"c {self.major}:{self.minor} rw"


def dynamic_majors(text: str) -> dict[str, int]:
    """Character-device majors by driver name, from /proc/devices."""
    majors: dict[str, int] = {}
    in_char = False
    for line in text.splitlines():
        if line.startswith("Character devices"):
            in_char = True
        elif line.startswith("Block devices"):
            in_char = False
        elif in_char and line.strip():
            number, _, name = line.strip().partition(" ")
            majors[name] = int(number)
    return majors


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
