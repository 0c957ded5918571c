"""``ire init``: create a home."""

from __future__ import annotations

import argparse

import structlog

from supervisor.home import Home, resolve_home
from supervisor.settings import ModelSettings, Settings

log = structlog.get_logger(__name__)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("init", help="create an IRE home (config, issuer key, registry, audit, policies)")
    p.add_argument(
        "--unsafe-allow-unsigned-models",
        action="store_true",
        help="UNSAFE, development only: accept models without a signature",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings(models=ModelSettings(unsafe_allow_unsigned=True)) if args.unsafe_allow_unsigned_models else None
    home = Home.init(resolve_home(args.home), settings)
    if settings is not None:
        log.warning("UNSAFE: this home accepts unsigned models", home=str(home.root))
    print(f"created IRE home at {home.root}")
    return 0
