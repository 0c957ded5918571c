"""``ire audit checkpoint``: sign a checkpoint now, locally or on a running supervisor.

With ``--server`` it calls the admin API's ExportAuditCheckpoint, and ``--out`` receives
the export bundle of ``[--since, --until]`` that the new checkpoint proves.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from protos import admin_pb2 as pb
from supervisor.audit import AuditWriter, admin_record, local_principal
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.errors import InvalidInputError


def register(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = actions.add_parser("checkpoint", help="sign a checkpoint now; with --server, fetch a bundle it proves")
    p.add_argument("--since", type=float, default=0.0, help="bundle start, unix seconds (default 0)")
    p.add_argument("--until", type=float, default=0.0, help="bundle end, unix seconds (default now)")
    p.add_argument("--out", type=Path, help="write the bundle here (with --server)")
    add_remote_options(p)
    p.set_defaults(run=run_checkpoint)


def run_checkpoint(args: argparse.Namespace) -> int:
    if args.server:
        reply = admin_call(
            args, "ExportAuditCheckpoint", pb.ExportAuditCheckpointRequest(since=args.since, until=args.until)
        )
        if args.out is not None:
            fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(reply.bundle)
        print(f"checkpoint at tree size {reply.tree_size}" + (f"; bundle in {args.out}" if args.out else ""))
        return 0
    if args.out is not None:
        raise InvalidInputError("--out needs --server; locally, use `ire audit export`")
    home = open_home(args)
    writer = AuditWriter.for_home(home)
    try:
        writer.append(admin_record("audit.checkpoint", local_principal()))
        size = writer.checkpoint("cli")
    finally:
        writer.close(strict=True)
    print(f"checkpoint at tree size {size}")
    return 0
