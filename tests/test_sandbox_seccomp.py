"""The seccomp filters: what each phase refuses, loaded for real in a forked child."""

from __future__ import annotations

import ctypes
import errno
import os
import select
import signal
import socket
from collections.abc import Callable

import pytest

from sandbox import _prctl, seccomp

# The issue's phase-1 list, every item of it.
REQUIRED_DENIALS = {
    "socket",
    "ptrace",
    "mount",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "unshare",
    "setns",
    "bpf",
    "keyctl",
    "perf_event_open",
    "process_vm_readv",
    "process_vm_writev",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "userfaultfd",
    "kexec_load",
    "kexec_file_load",
    "execve",
}


def test_phase_one_denies_everything_the_issue_lists() -> None:
    assert set(seccomp.DENY) >= REQUIRED_DENIALS


def test_phase_two_allows_nothing_phase_one_denies() -> None:
    assert set(seccomp.STRICT_ALLOW).isdisjoint(seccomp.DENY)
    assert {"socket", "openat", "open", "execve", "fork", "vfork", "kill"}.isdisjoint(seccomp.STRICT_ALLOW)


def _in_child(load: Callable[[], None], attempt: Callable[[], int]) -> int:
    """Load a filter in a forked child, run ``attempt``, return its result (or -signal)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 255
        try:
            os.close(read)
            _prctl.set_no_new_privs()
            load()
            code = attempt()
            os.write(write, str(code).encode())
        finally:
            os._exit(0)
    os.close(write)
    # Bounded: a child whose calling thread died while other threads (gRPC's, re-created
    # by its fork handlers when an earlier test used gRPC) live on would hold the pipe open.
    ready, _, _ = select.select([read], [], [], 30)
    answer = os.read(read, 32) if ready else b""
    os.close(read)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -os.WTERMSIG(status)
    return int(answer)


def _errno(fn: Callable[[], object]) -> int:
    try:
        fn()
    except OSError as exc:
        return exc.errno or -1
    return 0


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _raw(number: int, *args: int) -> int:
    if _libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) for a in args]) < 0:
        return ctypes.get_errno()
    return 0


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        pytest.param(lambda: _errno(lambda: socket.socket()), errno.EPERM, id="inet_socket"),
        pytest.param(lambda: _raw(435, 0, 0), errno.ENOSYS, id="clone3_enosys"),
        pytest.param(lambda: _raw(56, 0x40000000 | 17, 0, 0, 0, 0), errno.EPERM, id="clone_newnet"),
        pytest.param(lambda: _raw(0x40000000 | 41, 2, 1, 0), errno.ENOSYS, id="x32_socket_blocked_or_absent"),
        # TIOCSTI with junk in the upper 32 bits: the kernel ignores them, so must we.
        pytest.param(lambda: _raw(16, 0, (1 << 32) | 0x5412, 0), errno.EPERM, id="tiocsti_high_bits"),
        pytest.param(lambda: _errno(lambda: os.execv("/bin/true", ["true"])), errno.EPERM, id="execve"),
    ],
)
def test_phase_one_refuses(attempt: Callable[[], int], expected: int) -> None:
    result = _in_child(seccomp.load_deny_list, attempt)
    # The x32 case: libseccomp kills or the kernel lacks x32; either way the call fails.
    assert result == expected or (expected == errno.ENOSYS and result < 0)


def test_exec_mode_phase_one_allows_execve() -> None:
    assert _in_child(lambda: seccomp.load_deny_list(allow_exec=True), lambda: _errno(lambda: os.stat("/"))) == 0


def test_phase_two_kills_on_anything_unlisted() -> None:
    assert _in_child(seccomp.load_allow_list, lambda: _errno(lambda: os.open("/", os.O_RDONLY))) == -31
