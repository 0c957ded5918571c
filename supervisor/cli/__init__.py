"""The ``ire`` command line.

Exit codes: 0 success; 1 an IRE error (the diagnosis is printed on one line); 2 a usage
error; a failed ``ire predict`` exits 1 and prints the gRPC status.
"""

from __future__ import annotations

import argparse
import sys

from supervisor.cli import (
    audit,
    config,
    demo,
    gpu,
    health,
    init,
    model,
    policy,
    predict,
    quota,
    sandbox,
    serve,
    signer,
    tenant,
    token,
)
from supervisor.errors import IreError
from supervisor.logs import configure

EXIT_ERROR = 1
COMMANDS = (
    init,
    config,
    serve,
    health,
    tenant,
    quota,
    signer,
    gpu,
    token,
    model,
    policy,
    predict,
    audit,
    sandbox,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ire", description="IRE, the Inference Runtime Environment")
    parser.add_argument("--home", help="the IRE home directory (default: $IRE_HOME)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure(args.log_level)
    try:
        code: int = args.run(args)
    except IreError as exc:
        print(f"ire: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    return code
