"""The escape suite: each attack, through `ire sandbox run` and through a real confined worker.

The worker path forks real workers from the real launcher code, confined by the same
``sandbox.confine.spawn``, with a test-only body that runs a probe instead of the frame
loop (see tests/sandbox_probe_launcher.py for why and how production cannot reach it).
Probes run under the phase-1 seccomp filter, the state in which a crafted model's bytes
are parsed; one test shows the phase-2 allow-list kills what phase 1 would only refuse.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.home import Home
from tests import sandbox_probes
from tests.sandbox_probe_workers import UID_BASE, ProbeWorkers, cgroup_dir

pytestmark = pytest.mark.root

PROBE_SOURCE = Path(sandbox_probes.__file__).read_text()


@dataclass
class Outcome:
    """What a probe reported (None if it died first) and how its process ended."""

    result: dict[str, Any] | None
    exit_code: int | None
    oom_killed: bool
    stderr: str = ""


# ---------------------------------------------------------------- `ire sandbox run`


def sandbox_run(probe: str, args: dict[str, Any], limits: dict[str, str] | None = None) -> Outcome:
    code = f"{PROBE_SOURCE}\nmain({probe!r}, json.loads({json.dumps(json.dumps(args))}))\n"
    options = [x for k, v in (limits or {}).items() for x in (f"--{k}", v)]
    env = {k: v for k, v in os.environ.items() if k != "IRE_HOME"}
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "sandbox", "run", *options, "--", "/usr/bin/python3", "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1]) if lines else None
    oom = "exceeded its memory limit" in proc.stderr
    return Outcome(result, proc.returncode, oom, proc.stderr)


# ---------------------------------------------------------------- a real worker


@pytest.fixture(scope="module")
def probe_workers() -> Iterator[ProbeWorkers]:
    workers = ProbeWorkers()
    yield workers
    workers.close()


_LIMIT_FIELDS = {"memory": "memory_bytes", "cpu": "cpu", "pids": "pids"}


def _worker_attack(workers: ProbeWorkers) -> Callable[..., Outcome]:
    def attack(probe: str, args: dict[str, Any], limits: dict[str, str] | None = None) -> Outcome:
        overrides: dict[str, Any] = {}
        for key, value in (limits or {}).items():
            overrides[_LIMIT_FIELDS[key]] = int(value[:-1]) * 1024 * 1024 if key == "memory" else float(value)
        if "pids" in overrides:
            overrides["pids"] = int(overrides["pids"])
        worker = workers.spawn(**overrides)
        result = worker.run(probe, args)
        code, oom = worker.finish()
        return Outcome(result, code, oom)

    return attack


@pytest.fixture(params=["sandbox-run", "worker"])
def attack(request: pytest.FixtureRequest) -> Callable[..., Outcome]:
    if request.param == "sandbox-run":
        return sandbox_run
    return _worker_attack(request.getfixturevalue("probe_workers"))


# ---------------------------------------------------------------- host fixtures


@pytest.fixture(scope="module")
def host_files() -> Iterator[dict[str, Path]]:
    """Files on the host a sandbox must not see: another tenant's, the supervisor's keys,
    a world-readable file (only Landlock and the mount view stand in its way), and a
    world-writable directory."""
    root = Path("/var/tmp") / f"ire-escape-{secrets.token_hex(4)}"
    root.mkdir(mode=0o755)
    other = root / "tenant-2"
    other.mkdir(mode=0o700)
    (other / "secret").write_text("tenant 2 data")
    for path in (other, other / "secret"):
        os.chown(path, UID_BASE + 2, UID_BASE + 2)
    public = root / "public.txt"
    public.write_text("world readable")
    public.chmod(0o644)
    writable = root / "writable"
    writable.mkdir()
    writable.chmod(0o777)
    home = Home.init(root / "home")
    yield {
        "root": root,
        "other_tenant": other / "secret",
        "public": public,
        "writable": writable,
        "home": home.root,
        "issuer_key": home.issuer_key_path,
    }
    shutil.rmtree(root)


# ---------------------------------------------------------------- the attacks


def test_confinement_report_lists_every_layer(probe_workers: ProbeWorkers) -> None:
    worker = probe_workers.spawn()
    ident = worker.run("identity", {})
    worker.finish()
    assert [item.partition(":")[0] for item in worker.report] == [
        "cgroups",
        "namespaces",
        "mounts",
        "no_new_privs",
        "capabilities",
        "uid",
        "rlimits",
        "landlock",
        "seccomp",
    ]
    assert ident is not None
    assert (ident["uid"], ident["gid"], ident["groups"], ident["pid"]) == (UID_BASE + 1, UID_BASE + 1, [], 1)
    assert int(ident["cap_eff"], 16) == 0 and int(ident["cap_bnd"], 16) == 0
    assert ident["no_new_privs"] == "1" and ident["seccomp"] == "2"


def test_new_sockets_refused(attack: Callable[..., Outcome]) -> None:
    outcome = attack("sockets", {})
    assert outcome.result == {"inet": errno.EPERM, "inet6": errno.EPERM, "unix": errno.EPERM, "socketpair": errno.EPERM}


def test_connect_to_host_listener_refused(attack: Callable[..., Outcome]) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.settimeout(0.2)
        outcome = attack("connect", {"port": listener.getsockname()[1]})
        assert outcome.result is not None and outcome.result["errno"] != 0
        with pytest.raises(TimeoutError):
            listener.accept()


def test_other_tenant_files_and_supervisor_keys_unreadable(
    attack: Callable[..., Outcome], host_files: dict[str, Path]
) -> None:
    paths = [str(host_files[k]) for k in ("other_tenant", "public", "home", "issuer_key", "root")]
    outcome = attack("read_files", {"paths": [*paths, "/etc/shadow", "/root"]})
    assert outcome.result is not None
    leaked = {path: what for path, what in outcome.result.items() if not what.startswith("errno")}
    assert leaked == {}


def test_writes_outside_private_tmp_refused(attack: Callable[..., Outcome], host_files: dict[str, Path]) -> None:
    targets = [str(host_files["writable"] / "x"), "/etc/ire-escape", "/var/tmp/ire-escape", "/dev/ire-escape"]
    outcome = attack("write_files", {"paths": [*targets, "/tmp/allowed"]})
    assert outcome.result is not None
    assert outcome.result.pop("/tmp/allowed") == "written", "the private /tmp must stay writable"
    assert all(what.startswith("errno") for what in outcome.result.values()), outcome.result
    assert not (host_files["writable"] / "x").exists() and not Path("/etc/ire-escape").exists()


def test_fork_bomb_held_by_pids_limit(attack: Callable[..., Outcome]) -> None:
    outcome = attack("fork_bomb", {"tries": 200}, {"pids": "16"})
    assert outcome.result is not None
    assert outcome.result["errno"] == errno.EAGAIN
    assert outcome.result["forked"] < 16


def test_memory_bomb_killed_and_reported_as_oom(attack: Callable[..., Outcome]) -> None:
    outcome = attack("memory_bomb", {"mib": 512}, {"memory": "64M"})
    assert outcome.result is None, "the bomb must not complete"
    assert outcome.oom_killed
    assert outcome.exit_code in (137, -9)


def test_cpu_spin_throttled_to_quota(attack: Callable[..., Outcome]) -> None:
    outcome = attack("cpu_spin", {"seconds": 1.5}, {"cpu": "0.25"})
    assert outcome.result is not None
    share = outcome.result["cpu"] / outcome.result["wall"]
    assert 0.05 < share < 0.4, f"spinning got {share:.2f} CPUs, quota 0.25"


def test_cpu_quota_seen_in_cgroup_accounting(probe_workers: ProbeWorkers) -> None:
    worker = probe_workers.spawn(cpu=0.25)
    group = cgroup_dir(worker.inner_pid, "cpuacct")
    before, start = int((group / "cpuacct.usage").read_text()), time.monotonic()
    assert worker.run("cpu_spin", {"seconds": 1.5}) is not None
    used = (int((group / "cpuacct.usage").read_text()) - before) / 1e9
    wall = time.monotonic() - start
    worker.finish()
    assert used / wall < 0.4, f"cpuacct says {used:.2f} s of CPU in {wall:.2f} s, quota 0.25"


def test_ptrace_of_supervisor_refused(attack: Callable[..., Outcome]) -> None:
    outcome = attack("ptrace", {"pid": os.getpid()})
    assert outcome.result is not None
    assert outcome.result["ptrace"] == errno.EPERM
    assert outcome.result["proc_mem"] in (errno.ENOENT, errno.EACCES)


def test_mount_unshare_setns_clone_newuser_refused(attack: Callable[..., Outcome]) -> None:
    outcome = attack("namespaces", {})
    assert outcome.result == {
        "mount": errno.EPERM,
        "unshare_user": errno.EPERM,
        "unshare_net": errno.EPERM,
        "clone_newuser": errno.EPERM,
        "clone3": errno.ENOSYS,
        "setns": errno.EPERM,
    }


def test_host_proc_1_environ_unreadable(attack: Callable[..., Outcome]) -> None:
    """Neither the host's init nor a host process holding a secret in its environment is
    readable: /proc is the sandbox's own pid namespace."""
    secret = secrets.token_hex(16)
    holder = subprocess.Popen(["sleep", "60"], env={"IRE_TEST_SECRET": secret})
    try:
        host_init = Path("/proc/1/environ").read_bytes().hex()
    except PermissionError:
        host_init = None
    try:
        outcome = attack("proc_environ", {"pids": [holder.pid]})
    finally:
        holder.kill()
        holder.wait()
    assert outcome.result is not None
    assert secret.encode().hex() not in json.dumps(outcome.result)
    assert host_init is None or outcome.result["/proc/1/environ"] != host_init
    assert outcome.result[f"/proc/{holder.pid}/environ"].startswith("errno")
    assert max(outcome.result["pids"]) < 10, "only the sandbox's own processes are visible"


def test_signal_to_other_tenant_refused(attack: Callable[..., Outcome]) -> None:
    victim = subprocess.Popen(["sleep", "60"], user=UID_BASE + 2, group=UID_BASE + 2)
    try:
        outcome = attack("signal_other", {"pid": victim.pid})
        assert outcome.result is not None and outcome.result["kill"] in (errno.ESRCH, errno.EPERM)
        assert victim.poll() is None, "the other tenant's process must survive"
    finally:
        victim.kill()
        victim.wait()


def test_signal_to_other_tenants_worker_refused(probe_workers: ProbeWorkers) -> None:
    victim = probe_workers.spawn(number=2)
    attacker = probe_workers.spawn(number=1)
    result = attacker.run("signal_other", {"pid": victim.inner_pid})
    attacker.finish()
    assert result is not None and result["kill"] in (errno.ESRCH, errno.EPERM)
    assert victim.run("identity", {}) is not None, "the victim must still answer"
    victim.finish()


def test_setuid_root_binary_gains_nothing(tmp_path: Path) -> None:
    target = Path("/usr/local/bin") / f"ire-escape-id-{secrets.token_hex(4)}"
    shutil.copy("/usr/bin/id", target)
    os.chown(target, 0, 0)
    target.chmod(0o755 | stat.S_ISUID | stat.S_ISGID)
    try:
        env = {k: v for k, v in os.environ.items() if k != "IRE_HOME"}
        proc = subprocess.run(
            [sys.executable, "-m", "supervisor", "sandbox", "run", "--", str(target), "-u"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == str(UID_BASE), "the setuid bit must not make the command root"
    finally:
        target.unlink()


def test_worker_cannot_exec_any_binary(probe_workers: ProbeWorkers) -> None:
    """A worker has no reason to exec, so a setuid binary cannot even be started."""
    worker = probe_workers.spawn()
    result = worker.run("exec_binary", {"path": "/usr/bin/passwd"})
    worker.finish()
    assert result == {"errno": errno.EPERM}


def test_strict_filter_kills_what_phase_one_refuses(probe_workers: ProbeWorkers) -> None:
    worker = probe_workers.spawn()
    assert worker.run("sockets", {}, strict=True) is None
    code, oom = worker.finish()
    assert (code, oom) == (-signal.SIGSYS, False)


def test_no_cgroups_or_zombies_left_after_workers_exit(probe_workers: ProbeWorkers) -> None:
    worker = probe_workers.spawn()
    worker.run("fork_bomb", {"tries": 5})
    worker.finish()
    launcher = psutil.Process(probe_workers.launcher.pid)
    deadline = time.monotonic() + 5
    while launcher.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p for p in launcher.children() if p.status() == psutil.STATUS_ZOMBIE] == []
    scope = cgroup_dir(probe_workers.launcher.pid, "pids") / "ire-test" / f"l-{probe_workers.launcher.pid}"
    # Only the launcher's spare groups (pre-created, empty) remain while it runs.
    assert all(not (g / "cgroup.procs").read_text().strip() for g in scope.iterdir() if g.is_dir())
