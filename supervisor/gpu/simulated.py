"""A simulated inventory behind the same interface as NVML, for tests and the demo on
machines without GPUs. Layouts describe real MIG geometries of an H200."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from supervisor.errors import ConfigError
from supervisor.gpu.inventory import Gpu, Slice, SliceUsage

GiB = 1024**3
H200_MEMORY = 141 * GiB

# layout name -> per GPU: None (MIG disabled) or a list of (profile, memory GiB)
LAYOUTS: Mapping[str, tuple[tuple[tuple[str, int], ...] | None, ...]] = MappingProxyType(
    {
        "h200-7x1g": ((("1g.18gb", 18),) * 7,),
        "mixed": ((("3g.71gb", 71), ("2g.35gb", 35), ("1g.18gb", 18), ("1g.18gb", 18)), None),
        "h200-whole": (None,),
    }
)


class SimulatedInventory:
    def __init__(self, layout: str) -> None:
        spec = LAYOUTS.get(layout)
        if spec is None:
            raise ConfigError(f"unknown simulated GPU layout {layout!r}; known: {sorted(LAYOUTS)}")
        self._gpus: list[Gpu] = []
        self._slices: list[Slice] = []
        cap = 1
        for index, mig in enumerate(spec):
            gpu = Gpu(
                index,
                f"GPU-sim{index:04d}-0000-0000-0000-000000000000",
                "NVIDIA H200 (simulated)",
                H200_MEMORY,
                mig is not None,
                True,
                index,
            )
            self._gpus.append(gpu)
            if mig is None:
                self._slices.append(Slice(gpu.uuid, "gpu", gpu.memory_bytes, gpu.uuid, gpu.minor))
                continue
            for gi, (profile, gib) in enumerate(mig, start=1):
                self._slices.append(
                    Slice(
                        uuid=f"MIG-sim{index:02d}{gi:02d}-0000-0000-0000-000000000000",
                        profile=profile,
                        memory_bytes=gib * GiB,
                        parent_uuid=gpu.uuid,
                        parent_minor=gpu.minor,
                        gpu_instance=gi,
                        compute_instance=0,
                        gi_cap_minor=cap,
                        ci_cap_minor=cap + 1,
                    )
                )
                cap += 2

    def gpus(self) -> list[Gpu]:
        return list(self._gpus)

    def slices(self) -> list[Slice]:
        return list(self._slices)

    def usage(self, slice_uuid: str) -> SliceUsage | None:
        return SliceUsage(0, 0) if any(s.uuid == slice_uuid for s in self._slices) else None
