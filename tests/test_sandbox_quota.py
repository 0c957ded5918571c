"""Quotas reach the sandbox: a tenant's memory, CPU and pids overrides become its worker's
cgroup limits, read back from the kernel (cgroup v1 here), through a real `ire serve`."""

from __future__ import annotations

from pathlib import Path

import grpc
import numpy as np
import psutil
import pytest

from sandbox.cgroups import detect_version
from supervisor.client import build_request
from tests.conftest import Server, ire, make_home, start_server, stop_server
from tests.sandbox_probe_workers import cgroup_dir

pytestmark = pytest.mark.root

MiB = 1024 * 1024


def _worker_pid(server: Server) -> int:
    (launcher,) = [
        p for p in psutil.Process(server.process.pid).children() if "sandbox.launcher" in " ".join(p.cmdline())
    ]
    (worker,) = [w for shim in launcher.children() for w in shim.children()]
    return worker.pid


def _mlp_call() -> object:
    return build_request("mlp", {"input": np.ones((1, 64), np.float32)}, {"input": "FP32"})


def test_quota_overrides_become_worker_cgroup_limits(tmp_path: Path) -> None:
    if detect_version() != 1:
        pytest.skip("reads v1 control files; the v2 files are covered in test_sandbox_cgroups.py")
    home = make_home(tmp_path / "home")
    ire("quota", "set", "acme", "--memory", "300M", "--cpu", "0.25", "--pids", "48", home=home.root)
    server = start_server(home)
    try:
        server.stub().ModelInfer(_mlp_call(), metadata=server.metadata("acme"), timeout=60)
        pid = _worker_pid(server)
        memory = int((cgroup_dir(pid, "memory") / "memory.limit_in_bytes").read_text())
        cpu_quota = int((cgroup_dir(pid, "cpu") / "cpu.cfs_quota_us").read_text())
        pids = int((cgroup_dir(pid, "pids") / "pids.max").read_text())
    finally:
        stop_server(server)
    assert (memory, cpu_quota, pids) == (300 * MiB, 25_000, 48)


def test_tenant_without_overrides_gets_its_tier_limits(tmp_path: Path) -> None:
    if detect_version() != 1:
        pytest.skip("reads v1 control files; the v2 files are covered in test_sandbox_cgroups.py")
    server = start_server(make_home(tmp_path / "home"))
    try:
        server.stub().ModelInfer(_mlp_call(), metadata=server.metadata("acme"), timeout=60)
        memory = int((cgroup_dir(_worker_pid(server), "memory") / "memory.limit_in_bytes").read_text())
    finally:
        stop_server(server)
    assert memory == 2 * 1024 * MiB  # the standard tier


def test_gpu_quota_without_a_free_slice_is_resource_exhausted(tmp_path: Path) -> None:
    """acme's quota names a MIG profile; this node has no GPU (and `ire serve` gives the pool
    none unless configured), so the call is refused as quota, and audited as denied."""
    home = make_home(tmp_path / "home")
    ire("quota", "set", "acme", "--gpu", "1g.18gb", home=home.root)
    server = start_server(home)
    try:
        with pytest.raises(grpc.RpcError) as info:
            server.stub().ModelInfer(_mlp_call(), metadata=server.metadata("acme"), timeout=60)
    finally:
        stop_server(server)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'gpu'" in info.value.details()
    (record,) = [r for r in server.audit() if r.get("action") == "predict"]
    assert (record["outcome"], record["status"]) == ("denied", "RESOURCE_EXHAUSTED")
