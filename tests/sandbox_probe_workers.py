"""Real confined workers that run a probe instead of the frame loop, for the escape and
device suites: the real launcher (``tests/sandbox_probe_launcher.py``, which explains why
production cannot reach it) driven through the supervisor's own ``LauncherClient``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from sandbox.framing import read_frame, write_frame
from sandbox.profile import profile_for
from supervisor.gpu.devices import WorkerGpu
from supervisor.settings import SandboxSettings
from supervisor.workers.launcher import LauncherClient

UID_BASE = SandboxSettings().uid_base
REPO = Path(__file__).resolve().parent.parent


class ProbeWorkers:
    """The real launcher (test body) driven through the supervisor's own LauncherClient."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        old = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = str(REPO)  # so the launcher can import tests.*
        try:
            self.launcher = LauncherClient.start(module="tests.sandbox_probe_launcher", cgroup_parent="ire-test")
        finally:
            if old is None:
                os.environ.pop("PYTHONPATH")
            else:
                os.environ["PYTHONPATH"] = old
        self.exits: dict[int, tuple[int, bool]] = {}
        self.launcher.attach(self.loop, lambda pid, code, oom: self.exits.__setitem__(pid, (code, oom)))

    def spawn(self, number: int = 1, gpu: WorkerGpu | None = None, **overrides: Any) -> ProbeWorker:
        profile = profile_for("standard", overrides)
        pid, sock = self.loop.run_until_complete(
            self.launcher.spawn(f"t{number}", "w", 1, 30, uid=UID_BASE + number, profile=profile, gpu=gpu)
        )
        sock.setblocking(True)
        sock.settimeout(60)
        hello = read_frame(sock, 1 << 20)
        assert hello is not None, f"probe worker {pid} died before its report"
        return ProbeWorker(self, pid, sock, json.loads(hello)["report"])

    def wait_exit(self, pid: int, timeout: float = 30) -> tuple[int, bool]:
        deadline = time.monotonic() + timeout
        while pid not in self.exits and time.monotonic() < deadline:
            self.loop.run_until_complete(asyncio.sleep(0.02))
        return self.exits[pid]

    def close(self) -> None:
        self.launcher.close()
        self.loop.close()


@dataclass
class ProbeWorker:
    workers: ProbeWorkers
    pid: int  # the shim, the launcher's child
    sock: socket.socket
    report: list[str]

    @property
    def inner_pid(self) -> int:
        """The worker itself: pid 1 of its namespace, the shim's only child."""
        (child,) = psutil.Process(self.pid).children()
        return child.pid

    def run(self, probe: str, args: dict[str, Any], strict: bool = False) -> dict[str, Any] | None:
        write_frame(self.sock, json.dumps({"probe": probe, "args": args, "strict": strict}).encode())
        try:
            payload = read_frame(self.sock, 1 << 20)
        except (ConnectionError, OSError):
            return None
        return None if payload is None else json.loads(payload)

    def finish(self) -> tuple[int, bool]:
        self.sock.close()
        return self.workers.wait_exit(self.pid)


def cgroup_dir(pid: int, controller: str) -> Path:
    """The v1 group of ``pid`` in ``controller``'s hierarchy."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return Path(f"/sys/fs/cgroup/{controller}{path}")
    raise AssertionError(f"pid {pid} has no {controller} cgroup")
