"""``ire sandbox``: probe the worker confinement (``run``) and what this host supports (``check``).

``ire sandbox run`` goes through the same confinement function as every worker
(``sandbox.confine.spawn``), in exec mode so it can run system programs; exit status is
the command's own, or 128 plus the signal that ended it.
"""

from __future__ import annotations

import argparse
import os
import sys

from sandbox import execmode
from sandbox.cgroups import open_driver
from sandbox.confine import Confinement
from sandbox.errors import SandboxError
from sandbox.hostcheck import check
from sandbox.profile import parse_size, profile_for
from supervisor.cli._common import open_home
from supervisor.errors import ConfigError
from supervisor.home import resolve_home
from supervisor.registry.records import TIERS
from supervisor.settings import Settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help="probe the worker sandbox")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    run_p = actions.add_parser(
        "run",
        help="run a command under a worker's confinement",
        usage="ire sandbox run [--tenant T] [--memory 256M] [--cpu 0.5] [--pids N] -- CMD ARGS...",
    )
    run_p.add_argument("--tenant", help="run as this tenant's worker uid, with its tier's limits")
    run_p.add_argument("--tier", choices=TIERS, help="limits of this tier (default: the tenant's, else standard)")
    run_p.add_argument("--memory", help="memory limit, e.g. 256M")
    run_p.add_argument("--cpu", type=float, help="CPU quota in CPUs, e.g. 0.5")
    run_p.add_argument("--pids", type=int, help="most tasks (processes and threads)")
    run_p.add_argument("--timeout", type=float, help="wall-clock seconds before the command is killed")
    run_p.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD ARGS...")
    run_p.set_defaults(run=run_command)
    check_p = actions.add_parser("check", help="print what this host supports: cgroups, namespaces, seccomp, Landlock")
    check_p.set_defaults(run=run_check)


def _settings_and_identity(args: argparse.Namespace) -> tuple[Settings, int, str]:
    """(settings, uid, tier). Without --tenant the probe runs as uid_base, no tenant's uid."""
    if args.tenant:
        home = open_home(args)
        settings = home.settings()
        tenant = home.registry().get_tenant(args.tenant)
        return settings, settings.sandbox.uid_base + tenant.number, args.tier or tenant.tier
    try:
        settings = open_home(args).settings()
    except ConfigError:
        if args.home or os.environ.get("IRE_HOME"):
            resolve_home(args.home)  # a named home that fails to open is an error
            raise
        settings = Settings()
    return settings, settings.sandbox.uid_base, args.tier or "standard"


def run_command(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise ConfigError("no command given; usage: ire sandbox run [OPTIONS] -- CMD ARGS...")
    if os.geteuid() != 0:
        raise ConfigError("ire sandbox run needs root (cgroups, namespaces, uid change); see `ire sandbox check`")
    settings, uid, tier = _settings_and_identity(args)
    overrides: dict[str, int | float] = {}
    try:
        if args.memory:
            overrides["memory_bytes"] = parse_size(args.memory)
        if args.cpu is not None:
            overrides["cpu"] = args.cpu
        if args.pids is not None:
            overrides["pids"] = args.pids
        if args.timeout is not None:
            overrides["wall_seconds"] = args.timeout
        profile = profile_for(tier, overrides)
        cgroups = open_driver(settings.sandbox.cgroup_parent, "run")
    except SandboxError as exc:
        raise ConfigError(str(exc)) from exc
    conf = Confinement(profile=profile, uid=uid, gid=uid, allow_exec=True, env=dict(execmode.EXEC_ENV))
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        result = execmode.run(argv, conf, cgroups)
    finally:
        cgroups.close()
    if result.oom_killed:
        print(f"ire sandbox run: the command exceeded its memory limit ({profile.memory_bytes} bytes)", file=sys.stderr)
    if result.timed_out:
        print(f"ire sandbox run: the command ran past {profile.wall_seconds} s and was killed", file=sys.stderr)
    return result.exit_code


def run_check(args: argparse.Namespace) -> int:
    report = check()
    for line in report.lines():
        print(line)
    print("workers can be confined here" if report.can_confine else "workers cannot be fully confined here")
    return 0 if report.can_confine else 1
