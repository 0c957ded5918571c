"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse

from supervisor.home import Home, resolve_home


def open_home(args: argparse.Namespace) -> Home:
    return Home.open(resolve_home(args.home))
