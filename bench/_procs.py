"""Start a server subprocess, wait for its "... serving on HOST:PORT" line, and stop it.

Output goes to files rather than pipes: a pipe nobody reads fills up and stalls the
server mid-benchmark, which would show up as latency that is not the server's.
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

POLL_SECONDS = 0.05
# SIGTERM grace before SIGKILL; `ire serve` itself waits up to server.grace_seconds (10 s).
STOP_TIMEOUT_SECONDS = 30.0


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that a benchmark stops its servers and removes its home."""

    def _exit(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


class ServerStartError(RuntimeError):
    """The server exited or stayed silent instead of announcing its address."""


@dataclass
class ServerProcess:
    name: str
    address: str
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path


def start_server(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    pattern: str,
    log_dir: Path,
    timeout: float,
    cwd: Path | None = None,
) -> ServerProcess:
    """Run ``argv`` and return once its stdout matches ``pattern`` (group 1 is HOST:PORT)."""
    stdout_path = log_dir / f"{name}.stdout"
    stderr_path = log_dir / f"{name}.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(list(argv), stdout=out, stderr=err, env=dict(env), cwd=cwd)
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = regex.search(stdout_path.read_text(errors="replace"))
        if match:
            return ServerProcess(name, match.group(1), process, stdout_path, stderr_path)
        if process.poll() is not None:
            break
        time.sleep(POLL_SECONDS)
    stop(process)
    tail = stderr_path.read_text(errors="replace")[-2000:]
    raise ServerStartError(
        f"{name} did not announce its address within {timeout:.0f} s "
        f"(exit status {process.returncode}); stderr tail:\n{tail}"
    )


def stop(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM, wait, then SIGKILL if it is still there; returns the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()
