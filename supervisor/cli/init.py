"""``ire init``: create a home."""

from __future__ import annotations

import argparse

from supervisor.home import Home, resolve_home


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create an IRE home (config, issuer key, registry, audit, policies)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    home = Home.init(resolve_home(args.home))
    print(f"created IRE home at {home.root}")
    return 0
