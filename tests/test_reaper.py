"""The supervisor's sweep for orphaned sandbox processes: it reaps only zombies that are not
someone else's to wait for, and costs one ``waitid`` when there is none."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

from supervisor.workers import reaper


def _zombie() -> subprocess.Popen[bytes]:
    child = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the child never exited"
        time.sleep(0.005)
    return child


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    child = subprocess.Popen(["sleep", "30"])
    yield child
    child.kill()
    child.wait()


def test_orphan_zombie_is_reaped(sleeper: subprocess.Popen[bytes]) -> None:
    zombie = _zombie()
    sweeper = reaper.Reaper(set())
    sweeper.sweep()
    assert not psutil.pid_exists(zombie.pid), "the zombie child was left unreaped"
    assert sweeper.reaped >= 1
    assert psutil.Process(sleeper.pid).status() != psutil.STATUS_ZOMBIE  # a live child is left alone


def test_managed_zombie_is_left_for_its_owner_to_wait_for() -> None:
    # The launcher's Popen waits for it; reaping it here would take its exit status.
    zombie = _zombie()
    reaper.Reaper({zombie.pid}).sweep()
    assert psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE
    assert zombie.wait(timeout=5) == 0


def test_sweep_without_a_zombie_does_not_scan_every_process(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    # psutil finds children by reading every process's stat in /proc; an idle server swept
    # once a second paid that scan for nothing.
    def scan() -> None:
        raise AssertionError("swept /proc with no zombie child")

    reaper.Reaper(set()).sweep()  # any zombie an earlier test left behind
    monkeypatch.setattr(reaper.psutil, "Process", scan)
    reaper.Reaper(set()).sweep()
