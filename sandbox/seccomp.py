"""Seccomp in two phases, built with libseccomp (pyseccomp), never as hand-written BPF.

Phase 1 is loaded before the model: a deny-list of what no ONNX model needs and every
escape uses (new sockets, namespaces, mounts, ptrace, kernel keyrings, BPF, io_uring,
exec). Phase 2 is loaded after warm-up, on top of phase 1: an allow-list of what inference,
later model loads and the frame protocol need (see ``STRICT_ALLOW``), and the process
dies with SIGSYS on anything else. Both use TSYNC so threads ONNX Runtime already started
are filtered too.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from types import MappingProxyType

import pyseccomp  # type: ignore[import-untyped]

from sandbox.namespaces import ALL_NEW_FLAGS

CLONE_THREAD = 0x00010000
# ioctls on an inherited terminal that push input into it (TIOCSTI) or drive the console
# (TIOCLINUX): a probed command must not type into the admin's shell.
TIOCSTI = 0x5412
TIOCLINUX = 0x541C

# Refused with EPERM before the model loads, and the attack each one serves.
DENY: Mapping[str, str] = MappingProxyType(
    {
        "socket": "new sockets reach the network or other local services",
        "socketpair": "new unix sockets",
        "ptrace": "tracing the supervisor or a sibling",
        "process_vm_readv": "reading another process's memory",
        "process_vm_writev": "writing another process's memory",
        "mount": "remounting the read-only view writable",
        "umount2": "uncovering what the private mounts hide",
        "pivot_root": "replacing the filesystem root",
        "chroot": "chroot-based escapes",
        "move_mount": "the new mount API",
        "open_tree": "the new mount API",
        "fsopen": "the new mount API",
        "fsconfig": "the new mount API",
        "fsmount": "the new mount API",
        "fspick": "the new mount API",
        "mount_setattr": "clearing read-only and nosuid",
        "unshare": "new namespaces (user namespaces unlock kernel attack surface)",
        "setns": "joining another namespace",
        "bpf": "loading BPF programs",
        "keyctl": "kernel keyrings shared across the uid",
        "add_key": "kernel keyrings",
        "request_key": "kernel keyrings",
        "perf_event_open": "side channels and a large kernel surface",
        "io_uring_setup": "io_uring bypasses seccomp for the operations it runs",
        "io_uring_enter": "io_uring",
        "io_uring_register": "io_uring",
        "userfaultfd": "stalling the kernel to widen race windows",
        "kexec_load": "replacing the kernel",
        "kexec_file_load": "replacing the kernel",
        "init_module": "loading kernel modules",
        "finit_module": "loading kernel modules",
        "delete_module": "unloading kernel modules",
        "open_by_handle_at": "opening host files by handle (the 'shocker' escape)",
        "name_to_handle_at": "file handles",
        "syslog": "reading the kernel log",
        "acct": "process accounting",
        "swapon": "swap control",
        "swapoff": "swap control",
        "reboot": "rebooting the host",
        "settimeofday": "changing the host clock",
        "clock_settime": "changing the host clock",
        "adjtimex": "changing the host clock",
        "iopl": "raw port I/O",
        "ioperm": "raw port I/O",
        "modify_ldt": "a history of kernel bugs",
        "kcmp": "probing other processes' kernel objects",
        "lookup_dcookie": "kernel object lookup",
        "quotactl": "filesystem quota control",
        "vhangup": "terminal hangup",
        "execve": "running any other program (allowed in `ire sandbox run` only)",
        "execveat": "running any other program (allowed in `ire sandbox run` only)",
    }
)
EXEC_CALLS = ("execve", "execveat")

# What a warmed-up worker may still do, and why.
STRICT_ALLOW: Mapping[str, str] = MappingProxyType(
    {
        "read": "frames from the supervisor",
        "recvfrom": "frames: socket.recv_into",
        "recvmsg": "frames",
        "write": "frames to the supervisor",
        "sendto": "frames: socket.sendall",
        "sendmsg": "frames",
        "getsockname": "repr() of the frame socket, e.g. in a ResourceWarning at exit (measured)",
        "getpeername": "repr() of the frame socket (measured)",
        "poll": "the worker waiting for its next frame; socket waits inside Python's socket module",
        "ppoll": "socket waits",
        "close": "fds ONNX Runtime or Python release",
        "fstat": "Python sizing a buffer",
        "newfstatat": "Python sizing a buffer",
        "lseek": "Python's file objects",
        "mmap": "allocations: tensors, arenas, model weights (measured: ORT inference)",
        "munmap": "freeing allocations",
        "mremap": "growing allocations",
        "mprotect": "glibc malloc arenas and thread stacks (measured: model loads)",
        "madvise": "glibc and ORT returning memory (measured)",
        "brk": "the Python heap (measured)",
        "futex": "ORT's thread pool and Python's locks (measured)",
        "sched_yield": "ORT's spinning thread pool",
        "sched_getaffinity": "ORT sizing a thread pool on a later model load",
        "nanosleep": "backoff in ORT's thread pool",
        "clock_nanosleep": "backoff in ORT's thread pool",
        "clock_gettime": "timers when the vDSO is not used",
        "gettimeofday": "timers when the vDSO is not used",
        "getpid": "Python and glibc bookkeeping",
        "gettid": "thread ids in ORT and glibc",
        "getrandom": "numpy and Python random state",
        "clone": "new ORT pool threads on a later model load (CLONE_THREAD only: no new processes)",
        "set_robust_list": "new threads (measured: model loads with intra-op threads)",
        "rseq": "new threads (measured)",
        "rt_sigprocmask": "new threads block signals while starting (measured)",
        "rt_sigaction": "Python's signal handling",
        "rt_sigreturn": "returning from a signal handler",
        "sigaltstack": "thread start-up in Python",
        "prlimit64": "glibc thread stack sizing",
        "exit": "a thread ends",
        "exit_group": "the worker ends",
        "tgkill": "abort() on a fatal error, so the worker dies visibly",
        "getuid": "glibc",
        "restart_syscall": "resuming an interrupted call",
    }
)


# What a GPU worker adds after warm-up, on top of STRICT_ALLOW. NOT measured: these
# machines have no GPU. The CUDA driver allocates and maps device memory through ioctls
# on its /dev/nvidia* nodes (ORT's arena grows during inference), and cuDNN and cuBLAS
# open further libraries the first time a kernel is needed, which may be after warm-up;
# Landlock still bounds what can be opened (read-only libraries and the slice's nodes).
# To measure on a GPU host: set allow_list's default action to LOG, run
# bench/gpu_check.sh, and read the kernel log (docs/gpu.md).
GPU_ALLOW: Mapping[str, str] = MappingProxyType(
    {
        "ioctl": "CUDA driver calls on the slice's device nodes (memory, streams, events)",
        "openat": "libraries cuDNN and cuBLAS load lazily, and the driver's /proc files",
    }
)


def _base(default: int) -> pyseccomp.SyscallFilter:
    f = pyseccomp.SyscallFilter(default)
    # Threads ONNX Runtime started before this filter get it too.
    f.set_attr(pyseccomp.Attr.CTL_TSYNC, 1)
    # A syscall of another ABI (x32, i386) bypasses rules written for x86-64 numbers, so it
    # is killed; the whole process, not just the calling thread (libseccomp's default),
    # which would leave a half-dead worker whose other threads (ORT's, or gRPC's in a
    # forked test child) keep running unseen.
    f.set_attr(pyseccomp.Attr.ACT_BADARCH, pyseccomp.KILL_PROCESS)
    return f


def deny_list(allow_exec: bool = False) -> pyseccomp.SyscallFilter:
    """The phase-1 filter. ``allow_exec`` is for `ire sandbox run`, whose job is to exec."""
    f = _base(pyseccomp.ALLOW)
    eperm = pyseccomp.ERRNO(errno.EPERM)
    for name in DENY:
        if allow_exec and name in EXEC_CALLS:
            continue
        f.add_rule(eperm, name)
    # glibc falls back to clone() on ENOSYS; clone3 passes its flags in memory, where
    # seccomp cannot read them, so it is refused outright.
    f.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    # clone() with a CLONE_NEW* flag would create namespaces despite the unshare rule.
    for flag in ALL_NEW_FLAGS:
        if flag == 0x80:  # CLONE_NEWTIME shares its bit with clone()'s exit signal
            continue
        f.add_rule(eperm, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    for request in (TIOCSTI, TIOCLINUX):
        # The kernel reads the request as 32 bits: compare only those, or a request with
        # junk in the upper half would slip past an exact 64-bit match.
        f.add_rule(eperm, "ioctl", pyseccomp.Arg(1, pyseccomp.MASKED_EQ, 0xFFFFFFFF, request))
    return f


def allow_list(gpu: bool = False) -> pyseccomp.SyscallFilter:
    """The phase-2 filter: anything not in ``STRICT_ALLOW`` (and ``GPU_ALLOW`` for a GPU
    worker) kills the process."""
    f = _base(pyseccomp.KILL_PROCESS)
    for name in [*STRICT_ALLOW, *(GPU_ALLOW if gpu else ())]:
        if name == "clone":
            f.add_rule(pyseccomp.ALLOW, "clone", pyseccomp.Arg(0, pyseccomp.MASKED_EQ, CLONE_THREAD, CLONE_THREAD))
        else:
            f.add_rule(pyseccomp.ALLOW, name)
    # Keep glibc on its clone() fallback path.
    f.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    return f


def load_deny_list(allow_exec: bool = False) -> None:
    deny_list(allow_exec).load()


def load_allow_list(gpu: bool = False) -> None:
    allow_list(gpu).load()
