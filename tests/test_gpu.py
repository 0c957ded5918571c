"""GPU inventory and slice allocation.

These machines have no GPU: the allocator is tested on the simulated inventory, which
implements the same GpuInventory protocol as NVML. The real-NVML tests are marked `gpu`
and run wherever a driver is present.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from supervisor.errors import QuotaExceededError
from supervisor.gpu import GpuAllocator, NvmlInventory, SimulatedInventory
from supervisor.gpu.devices import device_nodes, dynamic_majors, worker_environment
from supervisor.gpu.nvml import read_mig_minors
from tests.conftest import ire

PROC_DEVICES = """Character devices:
  1 mem
195 nvidia-frontend
234 nvidia-uvm
237 nvidia-caps
Block devices:
  8 sd
"""


def _allocator(layout: str = "h200-7x1g", **kwargs) -> GpuAllocator:
    return GpuAllocator(SimulatedInventory(layout), **kwargs)


async def test_concurrent_spawns_get_exclusive_slices() -> None:
    allocator = _allocator()
    results = await asyncio.gather(
        *(allocator.acquire(f"t{i % 3}", f"w{i}", "1g.18gb") for i in range(7)), return_exceptions=True
    )
    uuids = [r.slice.uuid for r in results]
    assert len(set(uuids)) == 7, "no slice may be handed out twice"
    with pytest.raises(QuotaExceededError) as info:
        await allocator.acquire("t9", "w9", "1g.18gb")
    assert info.value.limit == "gpu"


async def test_slice_released_on_worker_exit_is_reused() -> None:
    allocator = _allocator("h200-whole")
    first = await allocator.acquire("acme", "w1", "gpu")
    with pytest.raises(QuotaExceededError):
        await allocator.acquire("globex", "w2", "gpu")
    await allocator.release("w1")  # the pool calls this when a worker exits or crashes
    second = await allocator.acquire("globex", "w2", "gpu")
    assert second.slice.uuid == first.slice.uuid and second.tenant == "globex"


async def test_tenant_without_gpu_profile_gets_none() -> None:
    allocator = _allocator()
    assert await allocator.acquire("acme", "w1", "") is None
    assert allocator.assignments() == []


async def test_profile_absent_from_node_is_refused_with_reason() -> None:
    with pytest.raises(QuotaExceededError, match=r"no .3g\.71gb. slice on this node"):
        await _allocator().acquire("acme", "w1", "3g.71gb")


async def test_queue_waits_for_a_freed_slice() -> None:
    allocator = _allocator("h200-whole", queue=True, queue_timeout_seconds=5)
    await allocator.acquire("acme", "w1", "gpu")
    waiter = asyncio.create_task(allocator.acquire("globex", "w2", "gpu"))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await allocator.release("w1")
    assert (await waiter).tenant == "globex"


async def test_queue_is_bounded_in_time_and_waiters() -> None:
    allocator = _allocator("h200-whole", queue=True, queue_timeout_seconds=0.1, max_waiters=1)
    await allocator.acquire("acme", "w1", "gpu")
    slow = asyncio.create_task(allocator.acquire("b", "w2", "gpu"))
    await asyncio.sleep(0.01)
    with pytest.raises(QuotaExceededError, match="in use"):
        await allocator.acquire("c", "w3", "gpu")  # over max_waiters: refused at once
    with pytest.raises(QuotaExceededError, match=r"within 0\.1 s"):
        await slow


async def test_free_from_exit_callback_wakes_a_queued_acquire() -> None:
    """The pool frees a slice synchronously, from the launcher's exit callback."""
    allocator = _allocator("h200-whole", queue=True, queue_timeout_seconds=5)
    await allocator.acquire("acme", "w1", "gpu")
    waiter = asyncio.create_task(allocator.acquire("globex", "w2", "gpu"))
    await asyncio.sleep(0.05)
    assert allocator.free("w1") is not None and allocator.free("w1") is None
    assert (await asyncio.wait_for(waiter, 1)).tenant == "globex"


async def test_worker_cannot_hold_two_slices() -> None:
    allocator = _allocator()
    await allocator.acquire("acme", "w1", "1g.18gb")
    with pytest.raises(ValueError, match="already holds"):
        await allocator.acquire("acme", "w1", "1g.18gb")
    assert len(allocator.assignments()) == 1


async def test_usage_reported_per_assigned_slice() -> None:
    allocator = _allocator("mixed")
    held = await allocator.acquire("acme", "w1", "3g.71gb")
    (report,) = allocator.usage()
    assert (report.tenant, report.worker_id, report.slice_uuid, report.profile) == (
        "acme",
        "w1",
        held.slice.uuid,
        "3g.71gb",
    )
    assert report.memory_total_bytes == 71 * 1024**3 and report.memory_used_bytes == 0


async def test_mixed_layout_matches_profiles() -> None:
    allocator = _allocator("mixed")
    assert (await allocator.acquire("a", "w1", "3g.71gb")).slice.profile == "3g.71gb"
    assert (await allocator.acquire("b", "w2", "gpu")).slice.uuid.startswith("GPU-")
    assert (await allocator.acquire("c", "w3", "1g.18gb")).slice.uuid.startswith("MIG-")


def test_worker_gets_only_its_mig_devices_and_environment() -> None:
    inventory = SimulatedInventory("mixed")
    mig = next(s for s in inventory.slices() if s.profile == "2g.35gb")
    env = worker_environment(mig)
    assert env["CUDA_VISIBLE_DEVICES"] == mig.uuid and mig.uuid.startswith("MIG-")
    nodes = device_nodes(mig, dynamic_majors(PROC_DEVICES))
    assert [(n.path, n.major, n.minor) for n in nodes] == [
        ("/dev/nvidiactl", 195, 255),
        (f"/dev/nvidia{mig.parent_minor}", 195, mig.parent_minor),
        ("/dev/nvidia-uvm", 234, 0),
        (f"/dev/nvidia-caps/nvidia-cap{mig.gi_cap_minor}", 237, mig.gi_cap_minor),
        (f"/dev/nvidia-caps/nvidia-cap{mig.ci_cap_minor}", 237, mig.ci_cap_minor),
    ]
    assert nodes[0].cgroup_v1_rule() == "c 195:255 rw"
    other_gpu = next(s for s in inventory.slices() if s.profile == "gpu")
    assert f"/dev/nvidia{other_gpu.parent_minor}" not in [n.path for n in nodes]


def test_mig_minors_parse() -> None:
    text = "config 1\nmonitor 2\ngpu0/gi1/access 12\ngpu0/gi1/ci0/access 13\ngpu1/gi7/ci0/access 140\n"
    assert read_mig_minors(text) == {(0, 1, -1): 12, (0, 1, 0): 13, (1, 7, 0): 140}


def test_assignments_published_for_cli(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ire("init", home=home)
    allocator = GpuAllocator(SimulatedInventory("h200-7x1g"), state_file=home / "gpu-assignments.json")
    asyncio.run(allocator.acquire("acme", "w1", "1g.18gb"))
    out = ire("gpu", "list", "--inventory", "simulated:h200-7x1g", home=home).stdout
    assert out.count("1g.18gb") == 7 and out.count("tenant acme") == 1 and out.count("free") == 6
    shown = json.loads(ire("gpu", "list", "--inventory", "simulated:mixed", "--json", home=home).stdout)
    assert len(shown["gpus"]) == 2


def test_no_nvml_means_empty_inventory(tmp_path: Path) -> None:
    inventory = NvmlInventory()
    if inventory.gpus():
        pytest.skip("this machine has a GPU; the empty-inventory case is for hosts without a driver")
    assert inventory.slices() == []
    home = tmp_path / "home"
    ire("init", home=home)
    assert "workers run on CPU" in ire("gpu", "list", home=home).stdout


@pytest.mark.gpu
def test_real_nvml_inventory(tmp_path: Path) -> None:
    inventory = NvmlInventory()
    gpus = inventory.gpus()
    assert gpus and all(g.uuid.startswith("GPU-") and g.memory_bytes > 0 for g in gpus)
    for s in inventory.slices():
        assert s.uuid.startswith(("GPU-", "MIG-"))
        assert inventory.usage(s.uuid) is not None
    home = tmp_path / "home"
    ire("init", home=home)
    assert gpus[0].uuid in ire("gpu", "list", home=home).stdout
