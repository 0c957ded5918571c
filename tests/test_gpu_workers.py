"""Tenant workers on GPU slices: the pool acquires a slice, hands it to a real confined
worker, releases it when the worker exits or crashes, and refuses a silent CPU fallback.

These machines have no GPU, and no GPU machine was at hand. The pool runs here against
the simulated inventory (the same GpuInventory protocol as NVML) with the real launcher
and real workers. The fallback refusal is a real test of the worker's check: the
onnxruntime-gpu installed here cannot create CUDAExecutionProvider (no CUDA libraries, no
driver), falls back to CPU silently, and the worker must notice through
``session.get_providers()``. The prediction on a real GPU is marked ``gpu``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable

import numpy as np
import psutil
import pytest

from protos import worker_pb2 as pb
from supervisor.errors import QuotaExceededError
from supervisor.gpu import GpuAllocator, NvmlInventory, SimulatedInventory
from supervisor.gpu.devices import dynamic_majors, worker_gpu
from supervisor.gpu.errors import GpuUnusableError
from supervisor.modelgraph.build import build_mlp
from supervisor.settings import Settings
from supervisor.workers.launcher import LauncherClient, spawn_message
from supervisor.workers.pool import WorkerPool
from supervisor.workers.tenant import WorkerTenant

MLP = build_mlp()
KEY = "mlp-sha256"
PROC_DEVICES = "Character devices:\n195 nvidia-frontend\n234 nvidia-uvm\n237 nvidia-caps\nBlock devices:\n"


def _request() -> pb.ToWorker:
    data = np.ones((1, 64), np.float32).tobytes()
    tensor = pb.Tensor(name="input", datatype="FP32", shape=[1, 64], data=data)
    return pb.ToWorker(infer=pb.InferRequest(model_key=KEY, inputs=[tensor], outputs=["output"]))


def _tenants(gpu: dict[str, str]) -> Callable[[str], WorkerTenant]:
    """Tenants t1, t2, … with the standard tier's limits and the GPU profiles given."""

    def info(tenant: str) -> WorkerTenant:
        return WorkerTenant(int(tenant[1:]), "standard", 2 * 1024**3, 1.0, 128, gpu.get(tenant, ""))

    return info


def test_spawn_request_for_a_mig_slice() -> None:
    """What the launcher is sent for a MIG assignment: the slice's nodes, its uuid as
    CUDA_VISIBLE_DEVICES, the gpu flag, and no CPU fallback unless asked for."""
    slice_ = next(s for s in SimulatedInventory("mixed").slices() if s.profile == "1g.18gb")
    spawn = spawn_message("acme", "w1", 1, uid=200001, gpu=worker_gpu(slice_, dynamic_majors(PROC_DEVICES)))
    assert spawn.gpu and not spawn.allow_cpu_fallback
    assert dict(spawn.environment) == {"CUDA_VISIBLE_DEVICES": slice_.uuid, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert slice_.uuid.startswith("MIG-")
    assert [(d.name, d.major, d.minor) for d in spawn.devices] == [
        ("nvidiactl", 195, 255),
        (f"nvidia{slice_.parent_minor}", 195, slice_.parent_minor),
        ("nvidia-uvm", 234, 0),
        (f"nvidia-caps/nvidia-cap{slice_.gi_cap_minor}", 237, slice_.gi_cap_minor),
        (f"nvidia-caps/nvidia-cap{slice_.ci_cap_minor}", 237, slice_.ci_cap_minor),
    ]


def test_cpu_tenant_spawn_request_has_no_gpu() -> None:
    spawn = spawn_message("acme", "w1", 1, uid=200001)
    assert not spawn.gpu and not spawn.devices and not spawn.environment


# ---------------------------------------------------------------- live, as root


class Pools:
    """Builds pools on real launchers (one each: closing a pool closes its launcher)."""

    def __init__(self) -> None:
        self.pools: list[WorkerPool] = []

    def __call__(
        self,
        allocator: GpuAllocator,
        gpu: dict[str, str],
        allow_cpu_fallback: Callable[[str], bool] | None = None,
    ) -> WorkerPool:
        launcher = LauncherClient.start(cgroup_parent="ire-test")
        pool = WorkerPool(launcher, Settings(), _tenants(gpu), gpu=allocator, allow_cpu_fallback=allow_cpu_fallback)
        pool.attach(asyncio.get_running_loop())
        self.pools.append(pool)
        return pool


@pytest.fixture
async def pools() -> AsyncIterator[Pools]:
    made = Pools()
    yield made
    for pool in made.pools:
        await pool.close()


async def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _inner_pid(shim: int) -> int:
    (child,) = psutil.Process(shim).children()
    return child.pid


@pytest.mark.root
async def test_silent_cpu_fallback_refused_and_slice_freed(pools: Pools) -> None:
    """The worker asks for CUDA on its slice; ORT here can only give CPU: the load is
    refused with GPU_UNUSABLE, the worker stopped, and its slice given back."""
    allocator = GpuAllocator(SimulatedInventory("h200-7x1g"))
    pool = pools(allocator, {"t1": "1g.18gb"})
    with pytest.raises(GpuUnusableError, match="could not use GPU slice MIG-"):
        await pool.infer("t1", KEY, lambda: MLP, _request())
    await _until(lambda: allocator.assignments() == [])
    assert pool.placement("t1") is None


@pytest.mark.root
async def test_cpu_fallback_allowed_runs_on_cpu_and_records_placement(pools: Pools) -> None:
    allocator = GpuAllocator(SimulatedInventory("h200-7x1g"))
    pool = pools(allocator, {"t1": "1g.18gb"}, allow_cpu_fallback=lambda tenant: tenant == "t1")
    result = await pool.infer("t1", KEY, lambda: MLP, _request())
    assert [t.name for t in result.outputs] == ["output"]
    (held,) = allocator.assignments()
    assert held.tenant == "t1" and pool.placement("t1") == held.slice.uuid
    assert [(r.tenant, r.slice_uuid, r.memory_total_bytes) for r in pool.gpu_usage()] == [
        ("t1", held.slice.uuid, held.slice.memory_bytes)
    ]


@pytest.mark.root
async def test_slice_released_when_worker_crashes(pools: Pools) -> None:
    allocator = GpuAllocator(SimulatedInventory("h200-whole"))
    pool = pools(allocator, {"t1": "gpu", "t2": "gpu"}, allow_cpu_fallback=lambda _tenant: True)
    await pool.infer("t1", KEY, lambda: MLP, _request())
    with pytest.raises(QuotaExceededError, match="every 'gpu' slice is in use") as info:
        await pool.infer("t2", KEY, lambda: MLP, _request())
    assert info.value.limit == "gpu"
    shim = pool.worker_pid("t1")
    assert shim is not None
    os.kill(_inner_pid(shim), signal.SIGKILL)  # the worker crashes
    await _until(lambda: allocator.assignments() == [])
    assert pool.placement("t1") is None
    await pool.infer("t2", KEY, lambda: MLP, _request())
    assert [a.tenant for a in allocator.assignments()] == ["t2"]


@pytest.mark.root
async def test_concurrent_tenants_never_share_a_slice(pools: Pools) -> None:
    allocator = GpuAllocator(SimulatedInventory("mixed"))
    gpu = {"t1": "1g.18gb", "t2": "1g.18gb", "t3": "1g.18gb"}
    pool = pools(allocator, gpu, allow_cpu_fallback=lambda _tenant: True)
    results = await asyncio.gather(*(pool.infer(t, KEY, lambda: MLP, _request()) for t in gpu), return_exceptions=True)
    refused = [r for r in results if isinstance(r, QuotaExceededError)]
    assert len(refused) == 1, "the mixed layout has two 1g.18gb slices for three tenants"
    held = allocator.assignments()
    assert len({a.slice.uuid for a in held}) == len(held) == 2
    assert {pool.placement(a.tenant) for a in held} == {a.slice.uuid for a in held}


@pytest.mark.root
async def test_tenant_without_gpu_profile_runs_on_cpu(pools: Pools) -> None:
    allocator = GpuAllocator(SimulatedInventory("h200-7x1g"))
    pool = pools(allocator, {})
    await pool.infer("t1", KEY, lambda: MLP, _request())
    assert allocator.assignments() == [] and pool.placement("t1") is None


@pytest.mark.root
async def test_gpu_quota_on_a_node_without_gpus_is_resource_exhausted() -> None:
    launcher = LauncherClient.start(cgroup_parent="ire-test")
    pool = WorkerPool(launcher, Settings(), _tenants({"t1": "1g.18gb"}))  # no allocator: no GPUs
    pool.attach(asyncio.get_running_loop())
    try:
        with pytest.raises(QuotaExceededError, match=r"no '1g\.18gb' slice on this node"):
            await pool.infer("t1", KEY, lambda: MLP, _request())
    finally:
        await pool.close()


@pytest.mark.root
@pytest.mark.gpu
async def test_prediction_on_a_real_gpu(pools: Pools) -> None:
    """On a GPU host whose onnxruntime has the CUDA provider: a confined worker on a real
    slice predicts on CUDA (no fallback allowed), twice, so the second call runs under the
    phase-2 seccomp filter."""
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        pytest.skip(f"this onnxruntime has no CUDA provider: {onnxruntime.get_available_providers()}")
    inventory = NvmlInventory()
    allocator = GpuAllocator(inventory)
    profile = inventory.slices()[0].profile
    pool = pools(allocator, {"t1": profile})
    first = await pool.infer("t1", KEY, lambda: MLP, _request())
    second = await pool.infer("t1", KEY, lambda: MLP, _request())
    assert first.outputs[0].data == second.outputs[0].data
    assert pool.placement("t1") == inventory.slices()[0].uuid
    (usage,) = pool.gpu_usage()
    assert usage.memory_used_bytes > 0
