"""The device nodes a worker may open, and the checks on a GPU worker's hand-off.

Every worker may open ``/dev/null``, ``/dev/zero`` and ``/dev/urandom``; a GPU worker also
gets its slice's NVIDIA nodes and the two CUDA variables that select the slice. The
supervisor decides which slice; the launcher still checks what it is handed, so a bug or
a compromise upstream cannot give a worker ``/dev/mem``, a disk, another driver's node or
an environment variable that changes how the worker's libraries behave.

Those nodes are enforced three times: the worker's ``/dev`` holds only them (mounts), every
other mount is ``nodev``, and on cgroup v1 the devices controller denies every other
device number even to a node that somehow were reachable.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from sandbox.errors import SandboxError

DEV = Path("/dev")
# The device nodes every worker gets (its /dev holds these and nothing else without a GPU).
BASE_DEVICES = ("null", "zero", "urandom")
# NVIDIA's fixed character major, for /dev/nvidia<N> (minor N) and /dev/nvidiactl (255).
# /dev/nvidia-uvm and /dev/nvidia-caps/* have majors the kernel assigns at load time,
# listed in /proc/devices under these driver names.
NVIDIA_MAJOR = 195
NVIDIACTL_MINOR = 255
UVM_DRIVER = "nvidia-uvm"
CAPS_DRIVER = "nvidia-caps"
PROC_DEVICES = Path("/proc/devices")

_GPU_NODE = re.compile(r"^nvidia(?P<gpu>[0-9]{1,3})$")
_CAP_NODE = re.compile(r"^nvidia-caps/nvidia-cap(?P<cap>[0-9]{1,6})$")

# The only variables a spawn request may add to a worker's environment, with the values
# each may take. Anything else (LD_PRELOAD, PYTHONPATH, ORT_*, CUDA_CACHE_PATH, ...) could
# change what the worker's libraries load or where they write, so it is refused.
ENVIRONMENT: Mapping[str, re.Pattern[str]] = MappingProxyType(
    {
        # A GPU's or a MIG device's UUID: "GPU-…", "MIG-…" (or the older "MIG-GPU-…/gi/ci").
        "CUDA_VISIBLE_DEVICES": re.compile(r"^(?:GPU|MIG)-[A-Za-z0-9][A-Za-z0-9/-]{0,126}$"),
        "CUDA_DEVICE_ORDER": re.compile(r"^(?:PCI_BUS_ID|FASTEST_FIRST)$"),
    }
)


@dataclass(frozen=True)
class Device:
    """A character device a worker may open for reading and writing."""

    name: str  # below /dev, e.g. "nvidia0" or "nvidia-caps/nvidia-cap12"
    major: int
    minor: int

    def cgroup_v1_rule(self) -> str:
        return f"c {self.major}:{self.minor} rw"


def host_device(name: str) -> Device:
    """``/dev/<name>`` as this host has it; it must be a character device, not a link."""
    info = os.lstat(DEV / name)
    if not stat.S_ISCHR(info.st_mode):
        raise SandboxError(f"/dev/{name} is not a character device")
    return Device(name, os.major(info.st_rdev), os.minor(info.st_rdev))


def base_devices() -> tuple[Device, ...]:
    return tuple(host_device(name) for name in BASE_DEVICES)


def char_majors(proc_devices: str) -> dict[str, int]:
    """Character-device majors by driver name, from the text of /proc/devices."""
    majors: dict[str, int] = {}
    in_char = False
    for line in proc_devices.splitlines():
        if line.startswith("Character devices"):
            in_char = True
        elif line.startswith("Block devices"):
            in_char = False
        elif in_char and line.strip():
            number, _, name = line.strip().partition(" ")
            if number.isdigit():
                majors[name] = int(number)
    return majors


def _expected(name: str, majors: Mapping[str, int]) -> tuple[int | None, int] | None:
    """The (major, minor) a GPU node called ``name`` must have; None if it is no GPU node."""
    if name == "nvidiactl":
        return NVIDIA_MAJOR, NVIDIACTL_MINOR
    if name == "nvidia-uvm":
        return majors.get(UVM_DRIVER), 0
    if match := _GPU_NODE.fullmatch(name):
        return NVIDIA_MAJOR, int(match["gpu"])
    if match := _CAP_NODE.fullmatch(name):
        return majors.get(CAPS_DRIVER), int(match["cap"])
    return None


def gpu_device_problem(device: Device, majors: Mapping[str, int]) -> str:
    """Why ``device`` may not be handed to a worker; empty when it is the GPU node it claims."""
    expected = _expected(device.name, majors)
    if expected is None:
        return f"device {device.name!r} is not an NVIDIA GPU node; workers get no other device"
    major, minor = expected
    if major is None:
        driver = UVM_DRIVER if device.name == "nvidia-uvm" else CAPS_DRIVER
        return f"device {device.name!r}: driver {driver!r} is not in /proc/devices on this host"
    if (device.major, device.minor) != (major, minor):
        return f"device {device.name!r}: got {device.major}:{device.minor}, expected {major}:{minor}"
    return ""


def gpu_request_problems(
    gpu: bool, devices: Sequence[Device], environment: Mapping[str, str], majors: Mapping[str, int]
) -> list[str]:
    """Why a spawn request's GPU hand-off must be refused; empty when it may go ahead."""
    problems = []
    for key, value in sorted(environment.items()):
        pattern = ENVIRONMENT.get(key)
        if pattern is None:
            problems.append(f"environment variable {key!r} is not accepted; only {sorted(ENVIRONMENT)}")
        elif not pattern.fullmatch(value):
            problems.append(f"environment {key}: got {value!r}, expected {pattern.pattern}")
    if not gpu:
        if devices or environment:
            problems.append("devices and environment are handed to GPU workers only (gpu is false)")
        return problems
    if not environment.get("CUDA_VISIBLE_DEVICES"):
        problems.append("a GPU worker needs CUDA_VISIBLE_DEVICES naming its slice, or it would see every GPU")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        problems.append(f"devices listed twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
    gpus = [n for n in names if _GPU_NODE.fullmatch(n)]
    if "nvidiactl" not in names or len(gpus) != 1:
        problems.append(f"a GPU worker gets nvidiactl and exactly one nvidia<N> node; got {names}")
    problems += [p for p in (gpu_device_problem(d, majors) for d in devices) if p]
    return problems


def present(devices: Iterable[Device]) -> tuple[Device, ...]:
    """The devices whose node exists on this host, which are the ones bind-mounted.

    A missing node is left out of the worker's ``/dev`` (a simulated GPU inventory on a
    host without GPUs); the worker then cannot use the GPU, and its model loads are refused
    unless CPU fallback was allowed. A node whose numbers differ from the request is an
    error: something on the host is not what the supervisor was told.
    """
    found = []
    for device in devices:
        try:
            actual = host_device(device.name)
        except FileNotFoundError:
            continue
        if actual != device:
            got, wanted = f"{actual.major}:{actual.minor}", f"{device.major}:{device.minor}"
            raise SandboxError(f"/dev/{device.name} is {got} on this host, expected {wanted}")
        found.append(device)
    return tuple(found)


# Where the NVIDIA driver's user-space library (libcuda.so.1) lives on common
# distributions and in GPU containers, and where a CUDA toolkit is installed.
_DRIVER_LIBRARY_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
)
_TOOLKIT_DIRS = ("/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib")
# The dynamic loader's cache: libcudart finds libcuda.so.1 through it when the driver
# library sits outside the loader's default directories.
_LOADER_CACHE = "/etc/ld.so.cache"


def gpu_read_paths() -> tuple[str, ...]:
    """What a GPU worker may read besides a CPU worker's paths: the CUDA driver's and
    toolkit's libraries (loaded only when the first session is created, after the fork,
    so they are not among the launcher's mapped libraries) and the loader cache."""
    found = [d for d in _DRIVER_LIBRARY_DIRS if (Path(d) / "libcuda.so.1").exists()]
    found += [d for d in _TOOLKIT_DIRS if Path(d).is_dir()]
    if Path(_LOADER_CACHE).exists():
        found.append(_LOADER_CACHE)
    return tuple(found)
