"""The one confinement path: every worker and every `ire sandbox run` goes through :func:`spawn`.

The forked child confines itself, in this order, and each step is named in the report:
1. cgroups: join the pre-created group (limits are already written);
2. namespaces: unshare net, mount, pid, ipc and uts, then fork, so the next process is
   pid 1 of the new pid namespace. The first child stays outside as a small shim that
   waits for it and mirrors its exit status (the launcher and the CLI see one child);
3. mounts: private, recursively read-only root, private ``/tmp``, minimal ``/dev``, own ``/proc``;
4. ``no_new_privs``, capabilities dropped, groups cleared, ``setgid``, ``setuid``;
5. the death signal set again (the uid change cleared it);
6. rlimits, then Landlock, then seccomp (phase 1) last.
A failure at any step ends the child before the body runs: there is no partial sandbox.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sandbox import _prctl, landlock, mounts, namespaces, privileges, rlimits, seccomp
from sandbox.cgroups import Cgroup
from sandbox.devices import BASE_DEVICES, Device, base_devices, present
from sandbox.profile import Profile

# The layers a fully confined process reports, in the order they are applied. The
# supervisor refuses a worker whose report lacks any of them.
LAYERS = (
    "cgroups",
    "namespaces",
    "mounts",
    "no_new_privs",
    "capabilities",
    "uid",
    "rlimits",
    "landlock",
    "seccomp",
)

# Read-only for everyone: what an already-running worker may still need to read.
_WORKER_READ = ("/proc", "/sys/devices/system/cpu")
# `ire sandbox run` also executes programs from the system directories.
_EXEC_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32")
_EXEC_READ = ("/etc",)
_DEVICE_RW = landlock.READ_FILE | landlock.WRITE_FILE

Body = Callable[[list[str]], int]


@dataclass(frozen=True)
class Confinement:
    """Everything the child needs besides its cgroup."""

    profile: Profile
    uid: int
    gid: int
    # Directories of the Python installation and IRE's own packages (read-only).
    read_paths: tuple[str, ...] = ()
    # A GPU slice's device nodes, besides the base nodes every process gets: the devices
    # cgroup allows exactly these, and those the host has are bound into the child's /dev.
    devices: tuple[Device, ...] = ()
    # Exec mode (`ire sandbox run`): system binaries are executable and execve is allowed.
    allow_exec: bool = False
    hostname: str = "ire"
    env: dict[str, str] = field(default_factory=dict)


def layer_names(report: Sequence[str]) -> set[str]:
    """``["landlock:abi7", ...]`` -> ``{"landlock", ...}``."""
    return {item.partition(":")[0] for item in report}


def prepare_group(group: Cgroup, conf: Confinement) -> None:
    """Write the group's limits and its device allow-list, before anything joins it."""
    group.set_limits(conf.profile)
    group.allow_devices([*base_devices(), *conf.devices])


def spawn(
    conf: Confinement,
    group: Cgroup,
    body: Body,
    keep_fds: Sequence[int] = (),
    on_failure: Callable[[str], None] | None = None,
    devnull_stdio: bool = True,
) -> int:
    """Fork a confined child that runs ``body(report)``; return the pid of the shim.

    ``group`` must already carry its limits (:func:`prepare_group`). ``keep_fds`` survive
    into the child (all other descriptors are closed); ``on_failure`` receives the reason
    if a step fails.
    """
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    status = 1
    try:
        status = _shim(conf, group, body, parent, keep_fds, on_failure, devnull_stdio)
    except BaseException as exc:  # noqa: BLE001 - the child must never return into the caller
        _report_failure(on_failure, "confinement", exc)
    finally:
        os._exit(status)


def _report_failure(on_failure: Callable[[str], None] | None, step: str, exc: BaseException) -> None:
    detail = f"confinement step {step!r} failed: {type(exc).__name__}: {exc}"
    try:
        if on_failure is not None:
            on_failure(detail)
        else:
            sys.stderr.write(f"ire sandbox: {detail}\n")
            sys.stderr.flush()
    except Exception:  # noqa: BLE001, S110 - nothing left to tell
        pass


def _close_fds(keep: Sequence[int]) -> None:
    keep_sorted = sorted({0, 1, 2, *keep})
    low = 0
    for fd in keep_sorted:
        if fd > low:
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 20)


def _stdio_to_devnull() -> None:
    # A worker writing to the supervisor's stderr could forge log lines.
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if null > 2:
        os.close(null)


def _shim(
    conf: Confinement,
    group: Cgroup,
    body: Body,
    parent: int,
    keep_fds: Sequence[int],
    on_failure: Callable[[str], None] | None,
    devnull_stdio: bool,
) -> int:
    """The first child: joins the cgroup and namespaces, forks pid 1, mirrors its exit."""
    _prctl.die_with_parent(parent)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    _close_fds(keep_fds)
    if devnull_stdio:
        _stdio_to_devnull()
    report: list[str] = []
    step = "cgroups"
    try:
        group.attach(os.getpid())
        report.append("cgroups")
        step = "namespaces"
        namespaces.unshare(sum(namespaces.WORKER_NAMESPACES.values()))
        report.append("namespaces:" + ",".join(namespaces.WORKER_NAMESPACES))
        alive_r, alive_w = os.pipe()
        child = os.fork()
    except Exception as exc:  # noqa: BLE001 - reported, then the child exits
        _report_failure(on_failure, step, exc)
        return 1
    if child == 0:
        os.close(alive_w)
        status = 1
        try:
            status = _pid1(conf, body, report, alive_r, on_failure)
        except BaseException as exc:  # noqa: BLE001
            _report_failure(on_failure, "worker", exc)
        finally:
            os._exit(status)
    os.close(alive_r)
    _prctl.set_name("ire-shim")
    for fd in keep_fds:
        os.close(fd)
    return _mirror(child)


def _mirror(child: int) -> int:
    """Wait for ``child`` and end this process the same way it ended."""
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot be caught anyway
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return os.waitstatus_to_exitcode(status)


def _parent_alive(alive_r: int) -> bool:
    """The shim holds the pipe's write end open for as long as it lives."""
    os.set_blocking(alive_r, False)
    try:
        return os.read(alive_r, 1) != b""
    except BlockingIOError:
        return True


def _pid1(
    conf: Confinement, body: Body, report: list[str], alive_r: int, on_failure: Callable[[str], None] | None
) -> int:
    """Pid 1 of the new namespace: mounts, privileges, rlimits, Landlock, seccomp, then ``body``."""
    step = "parent"
    try:
        _prctl.set_death_signal()
        if not _parent_alive(alive_r):
            return 1
        step = "mounts"
        namespaces.set_hostname(conf.hostname)
        nodes = [device.name for device in present(conf.devices)]
        mounts.build_view(conf.profile.tmp_bytes, nodes)
        report.append("mounts")
        step = "landlock"
        ruleset = _ruleset(conf, nodes)  # paths are opened while still root; enforced below
        step = "privileges"
        privileges.drop_to(conf.uid, conf.gid)
        report += ["no_new_privs", "capabilities", f"uid:{conf.uid}"]
        _prctl.set_death_signal()
        if not _parent_alive(alive_r):
            return 1
        os.close(alive_r)
        step = "rlimits"
        rlimits.apply(conf.profile)
        report.append("rlimits")
        step = "landlock"
        ruleset.enforce()
        report.append(f"landlock:abi{ruleset.abi}")
        step = "seccomp"
        seccomp.load_deny_list(allow_exec=conf.allow_exec)
        report.append("seccomp:phase1")
        os.environ.clear()
        os.environ.update(conf.env)
        os.chdir(mounts.PRIVATE_TMP if conf.allow_exec else "/")
    except Exception as exc:  # noqa: BLE001 - reported, then the child exits
        _report_failure(on_failure, step, exc)
        return 1
    return body(report)


def _ruleset(conf: Confinement, nodes: Sequence[str]) -> landlock.Ruleset:
    ruleset = landlock.Ruleset.create()
    ruleset.allow(conf.read_paths, landlock.READ)
    ruleset.allow(_WORKER_READ, landlock.READ)
    ruleset.allow(["/dev"], landlock.READ_DIR)
    ruleset.allow([f"/dev/{name}" for name in BASE_DEVICES], _DEVICE_RW)
    # GPU nodes are driven through ioctls; the base nodes need none.
    ruleset.allow([f"/dev/{name}" for name in nodes], _DEVICE_RW | landlock.IOCTL_DEV)
    ruleset.allow([mounts.PRIVATE_TMP], landlock.SCRATCH)
    if conf.allow_exec:
        ruleset.allow(_EXEC_PATHS, landlock.READ | landlock.EXECUTE)
        ruleset.allow(_EXEC_READ, landlock.READ)
    return ruleset
