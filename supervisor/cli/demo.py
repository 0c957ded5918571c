"""``ire demo``: the whole flow in a temporary home."""

from __future__ import annotations

import argparse

from supervisor.demo import run_demo
from supervisor.logs import configure


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="run the whole flow in a temporary home and print each step")
    p.add_argument("--keep", action="store_true", help="keep the temporary home for inspection")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.log_level == "info":
        configure("warning")  # the demo prints its own steps; keep the server's lines for problems
    return run_demo(keep=args.keep)
