"""cgroups behind one interface: v2 against a fake cgroupfs tree, v1 against the real kernel.

These machines run cgroup v1, so v2 cannot be exercised live here. Its driver is tested
against a directory tree laid out like a v2 mount: the files the kernel would create are
created by ``FakeCgroup2`` after each ``mkdir`` (as the kernel does), and writes go
through the driver's own file operations, which never create files.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sandbox.cgroups import V2Driver, detect_version, open_driver
from sandbox.cgroups._mounts import Hierarchy, hierarchies, own_groups
from sandbox.errors import SandboxError
from sandbox.profile import MiB, profile_for

KERNEL_FILES = {
    "cgroup.procs": "",
    "cgroup.controllers": "cpu memory pids",
    "cgroup.subtree_control": "",
    "cgroup.kill": "",
    "cgroup.freeze": "0",
    "cgroup.events": "populated 0\nfrozen 0\n",
    "memory.max": "max",
    "memory.swap.max": "max",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "cpu.max": "max 100000",
    "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0\n",
    "pids.max": "max",
}


class FakeCgroup2:
    """A directory that looks like a cgroup v2 mount to the driver."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.populate(root)

    @staticmethod
    def populate(group: Path) -> None:
        group.mkdir(parents=True, exist_ok=True)
        for name, text in KERNEL_FILES.items():
            if not (group / name).exists():
                (group / name).write_text(text)


@pytest.fixture
def fake(tmp_path: Path) -> FakeCgroup2:
    return FakeCgroup2(tmp_path / "cgroup")


def _driver(fake: FakeCgroup2) -> V2Driver:
    # The driver creates its parent and scope with mkdir(exist_ok=True); here they exist
    # already, populated the way the kernel populates a new group.
    fake.populate(fake.root / "ire")
    fake.populate(fake.root / "ire" / "l-123")
    return V2Driver(fake.root, "ire", "l-123")


def test_v2_driver_enables_controllers_down_to_its_scope(fake: FakeCgroup2) -> None:
    _driver(fake)
    for level in (fake.root, fake.root / "ire", fake.root / "ire" / "l-123"):
        assert (level / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"


def test_v2_limits_written_in_v2_syntax(fake: FakeCgroup2) -> None:
    driver = _driver(fake)
    group = driver.create("w-1")
    fake.populate(group.path)
    group.set_limits(profile_for("free", {"cpu": 0.5, "pids": 32}))
    assert (group.path / "memory.max").read_text() == str(512 * MiB)
    assert (group.path / "memory.swap.max").read_text() == "0"
    assert (group.path / "cpu.max").read_text() == "50000 100000"
    assert (group.path / "pids.max").read_text() == "32"


def test_v2_oom_kill_read_from_memory_events(fake: FakeCgroup2) -> None:
    group = _driver(fake).create("w-1")
    fake.populate(group.path)
    assert group.oom_kills() == 0
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    assert group.oom_kills() == 1


def test_v2_cpu_usage_from_cpu_stat(fake: FakeCgroup2) -> None:
    group = _driver(fake).create("w-1")
    fake.populate(group.path)
    (group.path / "cpu.stat").write_text("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n")
    assert group.cpu_usage_ns() == 2_500_000


def test_v2_kill_uses_cgroup_kill(fake: FakeCgroup2) -> None:
    group = _driver(fake).create("w-1")
    fake.populate(group.path)
    group.kill()
    assert (group.path / "cgroup.kill").read_text() == "1"


def test_v2_kill_falls_back_to_freeze_without_cgroup_kill(fake: FakeCgroup2) -> None:
    group = _driver(fake).create("w-1")
    fake.populate(group.path)
    (group.path / "cgroup.kill").unlink()  # a kernel older than 5.14
    (group.path / "cgroup.events").write_text("populated 0\nfrozen 1\n")
    group.kill()
    assert not (group.path / "cgroup.kill").exists(), "the driver must never create control files"
    assert (group.path / "cgroup.freeze").read_text() == "0", "thawed after the kill"


def test_v2_attach_writes_cgroup_procs(fake: FakeCgroup2) -> None:
    group = _driver(fake).create("w-1")
    fake.populate(group.path)
    group.attach(4242)
    assert (group.path / "cgroup.procs").read_text() == "4242"


def test_v2_refuses_host_without_memory_controller(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    FakeCgroup2.populate(root)
    (root / "cgroup.controllers").write_text("cpu pids")
    with pytest.raises(SandboxError, match="memory"):
        V2Driver(root, "ire", "l-1")


def test_version_detected_from_mountinfo() -> None:
    v1 = "30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n"
    hybrid = v1 + "29 25 0:25 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
    found = hierarchies(hybrid)
    assert Hierarchy(1, Path("/sys/fs/cgroup/memory"), frozenset({"memory"})) in found
    assert detect_version(found) == 1, "a hybrid host with v1 memory is v1"
    v2 = [Hierarchy(2, Path("/sys/fs/cgroup"), frozenset({"memory", "cpu", "pids"}))]
    assert detect_version(v2) == 2
    assert detect_version([]) == 0


def test_own_groups_parses_proc_cgroup() -> None:
    text = "4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/unified\n"
    assert own_groups(text) == {"memory": "/a/b", "cpu": "/c", "cpuacct": "/c", "": "/unified"}


@pytest.mark.parametrize(
    "parent",
    [pytest.param("/abs", id="absolute"), pytest.param("../up", id="dotdot"), pytest.param("", id="empty")],
)
def test_cgroup_parent_must_stay_below_own_group(parent: str) -> None:
    with pytest.raises(SandboxError):
        open_driver(parent)


@pytest.mark.root
def test_v1_freeze_kill_thaw_kills_a_forking_group() -> None:
    driver = open_driver("ire-test", "t")
    if driver.version != 1:
        pytest.skip("this host runs cgroup v2; the v1 driver needs a v1 host")
    group = driver.create("w-1")
    try:
        group.set_limits(profile_for("free", {"pids": 64}))
        pid = os.fork()
        if pid == 0:  # a small fork bomb inside the group
            try:
                group.attach(os.getpid())
                for _ in range(20):
                    if os.fork() == 0:
                        time.sleep(60)
                        os._exit(0)
                time.sleep(60)
            finally:
                os._exit(0)
        deadline = time.monotonic() + 5
        while len(group.pids()) < 21 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(group.pids()) == 21
        group.kill()
        os.waitpid(pid, 0)
        assert group.pids() == set()
    finally:
        group.remove()
        driver.close()
    assert not any(p.exists() for p in group.paths)
