"""``ire config check``: validate a configuration file (and the IRE_* overrides in force)."""

from __future__ import annotations

import argparse
from pathlib import Path

from supervisor.cli._common import open_home
from supervisor.settings import load_settings, render_settings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("config", help="check configuration")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate FILE (default: the home's config.toml)")
    check.add_argument("file", nargs="?", type=Path)
    check.add_argument("--show", action="store_true", help="print the effective settings")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    path = args.file or open_home(args).config
    settings = load_settings(path)
    print(f"{path}: valid")
    if args.show:
        print(render_settings(settings), end="")
    return 0
