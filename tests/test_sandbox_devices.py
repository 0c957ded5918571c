"""What a worker may open: the device allow-list, and the launcher's checks on a GPU hand-off.

These machines have no GPU and no /dev/nvidia* nodes, so:
- the launcher's checks of a GPU hand-off (device numbers, environment) run as pure
  functions against named bad cases, and live against the real launcher;
- the devices cgroup is tested live on this cgroup v1 host: a real confined worker given a
  simulated slice gets exactly null, zero, urandom and that slice's rules in its
  ``devices.list``; and a process in such a group cannot open a device outside the list
  even where a node for it exists. The stand-in nodes for that are made with mknod in a
  temporary directory, because a worker's /dev only ever holds bind mounts of the host's
  own /dev entries, and this host has none for a GPU;
- binding real GPU nodes into a worker's /dev is tested only where they exist (``gpu``).
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from sandbox.cgroups import detect_version, open_driver
from sandbox.devices import Device, base_devices, char_majors, gpu_request_problems
from supervisor.errors import WorkerStartError
from supervisor.gpu import NvmlInventory, SimulatedInventory
from supervisor.gpu.devices import DeviceNode, WorkerGpu, worker_gpu
from supervisor.gpu.inventory import Slice
from tests.sandbox_probe_workers import ProbeWorkers, cgroup_dir

# /proc/devices of a GPU host with the uvm and caps drivers loaded.
MAJORS = {"nvidia-frontend": 195, "nvidia-uvm": 234, "nvidia-caps": 237}


# (gpu flag, devices, environment, /proc/devices majors): what the launcher checks.
Request = tuple[bool, list[Device], dict[str, str], dict[str, int]]


def _mig_slice() -> Slice:
    return next(s for s in SimulatedInventory("mixed").slices() if s.profile == "2g.35gb")


def _handoff() -> tuple[list[Device], dict[str, str]]:
    gpu = worker_gpu(_mig_slice(), MAJORS)
    return [Device(d.name, d.major, d.minor) for d in gpu.devices], dict(gpu.environment)


def test_simulated_mig_handoff_accepted() -> None:
    devices, env = _handoff()
    assert [d.name for d in devices] == [
        "nvidiactl",
        "nvidia0",
        "nvidia-uvm",
        "nvidia-caps/nvidia-cap3",
        "nvidia-caps/nvidia-cap4",
    ]
    assert gpu_request_problems(True, devices, env, MAJORS) == []


def _with_env(**extra: str) -> Request:
    devices, env = _handoff()
    return True, devices, {**env, **extra}, MAJORS


def _with_device(device: Device) -> Request:
    devices, env = _handoff()
    return True, [*devices, device], env, MAJORS


def _changed(
    gpu: bool = True,
    devices: list[Device] | None = None,
    env: dict[str, str] | None = None,
    majors: dict[str, int] | None = None,
) -> Request:
    default_devices, default_env = _handoff()
    return (
        gpu,
        default_devices if devices is None else devices,
        default_env if env is None else env,
        MAJORS if majors is None else majors,
    )


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        pytest.param(_with_env(LD_PRELOAD="/tmp/evil.so"), "'LD_PRELOAD' is not accepted", id="ld_preload_env"),
        pytest.param(_with_env(PYTHONPATH="/tmp"), "'PYTHONPATH' is not accepted", id="pythonpath_env"),
        pytest.param(_with_env(CUDA_CACHE_PATH="/tmp"), "'CUDA_CACHE_PATH' is not accepted", id="other_cuda_env"),
        pytest.param(_with_env(CUDA_VISIBLE_DEVICES="0,1"), "CUDA_VISIBLE_DEVICES: got '0,1'", id="gpu_indexes"),
        pytest.param(
            _with_env(CUDA_VISIBLE_DEVICES="MIG-abc\nLD_PRELOAD=/tmp/x"), "CUDA_VISIBLE_DEVICES", id="newline_in_value"
        ),
        pytest.param(_with_env(CUDA_DEVICE_ORDER="RANDOM"), "CUDA_DEVICE_ORDER: got", id="unknown_device_order"),
        pytest.param(_with_device(Device("sda", 8, 0)), "'sda' is not an NVIDIA GPU node", id="disk"),
        pytest.param(_with_device(Device("mem", 1, 1)), "'mem' is not an NVIDIA GPU node", id="dev_mem"),
        pytest.param(_with_device(Device("../mem", 1, 1)), "is not an NVIDIA GPU node", id="path_traversal"),
        pytest.param(_with_device(Device("nvidia1", 195, 1)), "exactly one nvidia<N> node", id="second_gpu"),
        pytest.param(_with_device(Device("nvidia-uvm-tools", 234, 1)), "not an NVIDIA GPU node", id="uvm_tools"),
        pytest.param(_with_device(Device("nvidiactl", 195, 255)), "listed twice", id="duplicate"),
        pytest.param(
            _changed(devices=[Device("nvidiactl", 195, 255), Device("nvidia0", 1, 1)]),
            "'nvidia0': got 1:1, expected 195:0",
            id="gpu_name_on_dev_mem_numbers",
        ),
        pytest.param(
            _changed(
                devices=[
                    Device("nvidiactl", 195, 255),
                    Device("nvidia0", 195, 0),
                    Device("nvidia-caps/nvidia-cap5", 1, 5),
                ]
            ),
            "got 1:5, expected 237:5",
            id="cap_name_on_other_major",
        ),
        pytest.param(_changed(majors={}), "'nvidia-uvm' is not in /proc/devices", id="uvm_driver_not_loaded"),
        pytest.param(
            _changed(env={"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}), "needs CUDA_VISIBLE_DEVICES", id="sees_all_gpus"
        ),
        pytest.param(_changed(devices=[Device("nvidia0", 195, 0)]), "nvidiactl and exactly one", id="no_nvidiactl"),
        pytest.param(_changed(gpu=False), "GPU workers only", id="handoff_without_gpu_flag"),
    ],
)
def test_gpu_handoff_refused(request_: Request, message: str) -> None:
    problems = gpu_request_problems(*request_)
    assert any(message in p for p in problems), problems


def test_majors_read_from_proc_devices() -> None:
    text = "Character devices:\n  1 mem\n195 nvidia-frontend\n234 nvidia-uvm\nBlock devices:\n  8 sd\n"
    assert char_majors(text) == {"mem": 1, "nvidia-frontend": 195, "nvidia-uvm": 234}


# ---------------------------------------------------------------- live, as root


@pytest.fixture(scope="module")
def probe_workers() -> Iterator[ProbeWorkers]:
    workers = ProbeWorkers()
    yield workers
    workers.close()


def _host_handoff() -> WorkerGpu:
    """A simulated slice's hand-off with this host's own /proc/devices (no uvm, no caps here)."""
    return worker_gpu(SimulatedInventory("h200-7x1g").slices()[0])


def _base_rules() -> set[str]:
    return {d.cgroup_v1_rule() for d in base_devices()}


@pytest.mark.root
def test_launcher_refuses_environment_outside_allow_list(probe_workers: ProbeWorkers) -> None:
    gpu = _host_handoff()
    bad = replace(gpu, environment={**gpu.environment, "LD_PRELOAD": "/tmp/evil.so"})
    with pytest.raises(WorkerStartError, match="environment variable 'LD_PRELOAD' is not accepted"):
        probe_workers.spawn(gpu=bad)


@pytest.mark.root
def test_launcher_refuses_a_disk_as_gpu_device(probe_workers: ProbeWorkers) -> None:
    gpu = _host_handoff()
    bad = replace(gpu, devices=(*gpu.devices, DeviceNode("/dev/sda", 8, 0)))
    with pytest.raises(WorkerStartError, match="'sda' is not an NVIDIA GPU node"):
        probe_workers.spawn(gpu=bad)


@pytest.mark.root
def test_cpu_worker_devices_cgroup_allows_only_base_nodes(probe_workers: ProbeWorkers) -> None:
    if detect_version() != 1:
        pytest.skip("the devices controller is cgroup v1; v2 needs an eBPF program (docs/gpu.md)")
    worker = probe_workers.spawn()
    listed = set((cgroup_dir(worker.inner_pid, "devices") / "devices.list").read_text().split("\n")) - {""}
    opened = worker.run("open_devices", {"paths": ["/dev/null", "/dev/zero", "/dev/urandom"]})
    worker.finish()
    assert listed == _base_rules() == {"c 1:3 rw", "c 1:5 rw", "c 1:9 rw"}
    assert opened == {"/dev/null": 0, "/dev/zero": 0, "/dev/urandom": 0}


@pytest.mark.root
def test_gpu_worker_devices_cgroup_lists_exactly_its_slice(probe_workers: ProbeWorkers) -> None:
    """A simulated slice's hand-off: the cgroup rules are the slice's; the nodes themselves
    do not exist on this host, so the worker's /dev holds only the base nodes."""
    if detect_version() != 1:
        pytest.skip("the devices controller is cgroup v1; v2 needs an eBPF program (docs/gpu.md)")
    gpu = _host_handoff()
    worker = probe_workers.spawn(gpu=gpu)
    listed = set((cgroup_dir(worker.inner_pid, "devices") / "devices.list").read_text().split("\n")) - {""}
    view = worker.run("read_files", {"paths": ["/dev"]})
    worker.finish()
    worker = probe_workers.spawn(gpu=gpu)  # a probe worker answers one probe
    env = worker.run("environment", {})
    worker.finish()
    assert listed == _base_rules() | {d.cgroup_v1_rule() for d in gpu.devices}
    assert listed - _base_rules() == {"c 195:255 rw", "c 195:0 rw"}
    assert view is not None
    entries = sorted(view["/dev"].removeprefix("listed: ").split(","))
    assert entries == ["fd", "null", "stderr", "stdin", "stdout", "urandom", "zero"]
    assert (
        env is not None and env["CUDA_VISIBLE_DEVICES"] == gpu.slice_uuid and env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    )


_OPENER = """
import json, os, sys
with open(sys.argv[1] + "/cgroup.procs", "w") as f:
    f.write(str(os.getpid()))
result = {}
for path in sys.argv[2:]:
    try:
        os.close(os.open(path, os.O_RDWR))
        result[path] = 0
    except OSError as exc:
        result[path] = exc.errno
print(json.dumps(result))
"""


@pytest.mark.root
def test_device_outside_the_list_refused_even_where_a_node_exists(tmp_path: Path) -> None:
    """Even root, in the host's mount namespace and with every capability, cannot open a
    device its group does not list: another GPU's node, or /dev/full."""
    driver = open_driver("ire-test", "t")
    if driver.version != 1:
        driver.close()
        pytest.skip("the devices controller is cgroup v1; v2 needs an eBPF program (docs/gpu.md)")
    for name, major, minor in (("nvidia0", 195, 0), ("nvidia1", 195, 1), ("full", 1, 7)):
        os.mknod(tmp_path / name, 0o666 | stat.S_IFCHR, os.makedev(major, minor))
    group = driver.create("devices-test")
    try:
        group.allow_devices([*base_devices(), Device("nvidiactl", 195, 255), Device("nvidia0", 195, 0)])
        devices_dir = next(p for p in group.paths if "devices" in p.parts)
        paths = ["/dev/null", "/dev/full", str(tmp_path / "full"), str(tmp_path / "nvidia1"), str(tmp_path / "nvidia0")]
        proc = subprocess.run(
            [sys.executable, "-c", _OPENER, str(devices_dir), *paths], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
    finally:
        group.remove()
        driver.close()
    assert result["/dev/null"] == 0
    assert result["/dev/full"] == errno.EPERM, "present on the host, not on the list"
    assert result[str(tmp_path / "full")] == errno.EPERM, "a stand-in node for /dev/full elsewhere"
    assert result[str(tmp_path / "nvidia1")] == errno.EPERM, "another GPU's node"
    # The worker's own GPU passes the cgroup and reaches the kernel, which has no NVIDIA
    # driver here: ENXIO/ENODEV, not EPERM.
    assert result[str(tmp_path / "nvidia0")] in (errno.ENXIO, errno.ENODEV)


@pytest.mark.root
@pytest.mark.gpu
def test_real_gpu_nodes_bound_into_worker_dev(probe_workers: ProbeWorkers) -> None:
    """On a GPU host: the slice's real nodes appear in the worker's /dev and open; no other GPU's."""
    inventory = NvmlInventory()
    slice_ = inventory.slices()[0]
    gpu = worker_gpu(slice_)
    worker = probe_workers.spawn(gpu=gpu)
    view = worker.run("read_files", {"paths": ["/dev"]})
    worker.finish()
    worker = probe_workers.spawn(gpu=gpu)  # a probe worker answers one probe
    opened = worker.run("open_devices", {"paths": [d.path for d in gpu.devices]})
    worker.finish()
    assert view is not None
    entries = set(view["/dev"].removeprefix("listed: ").split(","))
    assert {"nvidiactl", f"nvidia{slice_.parent_minor}"} <= entries
    others = {f"nvidia{g.minor}" for g in inventory.gpus() if g.minor != slice_.parent_minor}
    assert not entries & others
    assert opened == {d.path: 0 for d in gpu.devices}
