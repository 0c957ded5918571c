"""``ire serve``: run the supervisor in the foreground."""

from __future__ import annotations

import argparse

import uvloop

from supervisor.cli._common import open_home
from supervisor.server import serve


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="serve the OIP v2 gRPC API until SIGTERM")
    p.add_argument("--listen", help="HOST:PORT (default: server.listen in config.toml); port 0 picks a free one")
    p.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="serve even where workers cannot be confined, running them unconfined (development only; "
        "logged as a warning on every call)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    home = open_home(args)

    def announce(port: int) -> None:
        host = (args.listen or home.settings().server.listen).rsplit(":", 1)[0]
        print(f"IRE serving on {host}:{port}", flush=True)

    # uvloop: the event loop is most of the supervisor's per-call overhead (bench/README.md).
    uvloop.run(serve(home, args.listen, on_ready=announce, unsafe_no_sandbox=args.unsafe_no_sandbox))
    return 0
