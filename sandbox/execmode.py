"""Exec mode: run any command under a worker's confinement (`ire sandbox run`).

The confined pid 1 forks the command and stays as its init: it reaps whatever the command
leaves behind and exits with the command's status, or 128 plus the signal that ended it.
Exec mode differs from a worker in two ways, both needed to run a program at all: the
phase-1 seccomp filter allows ``execve``, and Landlock grants execute (and read) on the
system directories. ``no_new_privs`` and the nosuid mounts still make setuid binaries
gain nothing, and the strict phase-2 filter is never loaded (a probed command is
arbitrary code, not ONNX Runtime).
"""

from __future__ import annotations

import os
import select
import sys
from dataclasses import dataclass

from sandbox import confine
from sandbox.cgroups import CgroupDriver
from sandbox.mounts import PRIVATE_TMP

EXEC_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": PRIVATE_TMP,
    "TMPDIR": PRIVATE_TMP,
    "LANG": "C.UTF-8",
}


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    oom_killed: bool
    timed_out: bool
    cpu_seconds: float
    report: tuple[str, ...] = ()


def _status_code(status: int) -> int:
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status)


def _exec_body(argv: list[str]) -> confine.Body:
    def body(report: list[str]) -> int:
        child = os.fork()
        if child == 0:
            try:
                os.execvpe(argv[0], argv, os.environ)  # noqa: S606 - running the admin's command is the point
            except OSError as exc:
                sys.stderr.write(f"ire sandbox run: cannot run {argv[0]!r}: {exc.strerror}\n")
                sys.stderr.flush()
            os._exit(127)
        while True:  # pid 1 of the namespace: reap every orphan until the command ends
            pid, status = os.wait()
            if pid == child:
                return _status_code(status)

    return body


def run(argv: list[str], conf: confine.Confinement, cgroups: CgroupDriver, name: str = "run") -> RunResult:
    """Run ``argv`` confined by ``conf``; block until it ends or its wall clock runs out."""
    if not argv:
        raise ValueError("no command to run")
    group = cgroups.create(name)
    try:
        confine.prepare_group(group, conf)
        pid = confine.spawn(conf, group, _exec_body(argv), devnull_stdio=False)
        pidfd = os.pidfd_open(pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], conf.profile.wall_seconds)
        finally:
            os.close(pidfd)
        timed_out = not ready
        if timed_out:
            group.kill()
        _, status = os.waitpid(pid, 0)
        return RunResult(
            exit_code=_status_code(status),
            oom_killed=group.oom_kills() > 0,
            timed_out=timed_out,
            cpu_seconds=group.cpu_usage_ns() / 1e9,
        )
    finally:
        group.kill()
        group.remove()
