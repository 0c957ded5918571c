"""The real inventory, through NVML (``nvidia-ml-py``, imported as ``pynvml``).

With no NVML library or no driver, the inventory is empty and workers run on CPU. IRE
only reads: it never changes MIG mode or creates instances.
"""

from __future__ import annotations

import re
from pathlib import Path

import pynvml
import structlog

from supervisor.gpu.inventory import Gpu, Slice, SliceUsage

log = structlog.get_logger(__name__)

MIG_MINORS = Path("/proc/driver/nvidia-caps/mig-minors")
_MINOR_LINE = re.compile(r"^gpu(\d+)/gi(\d+)/(?:ci(\d+)/)?access\s+(\d+)$")


def read_mig_minors(text: str) -> dict[tuple[int, int, int], int]:
    """Parse mig-minors: (gpu minor, gi, ci or -1 for the GI node) -> cap minor."""
    out = {}
    for line in text.splitlines():
        match = _MINOR_LINE.match(line.strip())
        if match:
            gpu, gi, ci, minor = match.groups()
            out[(int(gpu), int(gi), int(ci) if ci is not None else -1)] = int(minor)
    return out


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class NvmlInventory:
    def __init__(self) -> None:
        self._gpus: list[Gpu] = []
        self._slices: list[Slice] = []
        self._handles: dict[str, object] = {}
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            log.info("no NVML: GPU inventory is empty, workers run on CPU", error=str(exc))
            return
        minors = read_mig_minors(MIG_MINORS.read_text()) if MIG_MINORS.exists() else {}
        for index in range(pynvml.nvmlDeviceGetCount()):
            self._add_gpu(index, minors)

    def _add_gpu(self, index: int, minors: dict[tuple[int, int, int], int]) -> None:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        try:
            current, _pending = pynvml.nvmlDeviceGetMigMode(handle)
            mig = current == pynvml.NVML_DEVICE_MIG_ENABLE
        except pynvml.NVMLError:
            mig = False
        minor = pynvml.nvmlDeviceGetMinorNumber(handle)
        gpu = Gpu(
            index=index,
            uuid=_str(pynvml.nvmlDeviceGetUUID(handle)),
            name=_str(pynvml.nvmlDeviceGetName(handle)),
            memory_bytes=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
            mig_enabled=mig,
            healthy=True,
            minor=minor,
        )
        self._gpus.append(gpu)
        self._handles[gpu.uuid] = handle
        if not mig:
            self._slices.append(Slice(gpu.uuid, "gpu", gpu.memory_bytes, gpu.uuid, minor))
            return
        for m in range(pynvml.nvmlDeviceGetMaxMigDeviceCount(handle)):
            try:
                mh = pynvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, m)
            except pynvml.NVMLError:
                continue
            gi = pynvml.nvmlDeviceGetGpuInstanceId(mh)
            ci = pynvml.nvmlDeviceGetComputeInstanceId(mh)
            memory = int(pynvml.nvmlDeviceGetMemoryInfo(mh).total)
            uuid = _str(pynvml.nvmlDeviceGetUUID(mh))
            name = _str(pynvml.nvmlDeviceGetName(mh))
            # Names read like "NVIDIA H200 MIG 1g.18gb": the profile is the last word.
            profile = name.rsplit(" ", 1)[-1]
            self._handles[uuid] = mh
            self._slices.append(
                Slice(
                    uuid,
                    profile,
                    memory,
                    gpu.uuid,
                    minor,
                    gi,
                    ci,
                    minors.get((minor, gi, -1), -1),
                    minors.get((minor, gi, ci), -1),
                )
            )

    def gpus(self) -> list[Gpu]:
        return list(self._gpus)

    def slices(self) -> list[Slice]:
        return list(self._slices)

    def usage(self, slice_uuid: str) -> SliceUsage | None:
        handle = self._handles.get(slice_uuid)
        if handle is None:
            return None
        try:
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization = int(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:  # not supported on MIG devices
                utilization = -1
            return SliceUsage(int(memory.used), utilization)
        except pynvml.NVMLError:
            return None
