"""``ire model``: register and list models."""

from __future__ import annotations

import argparse
from pathlib import Path

from supervisor.cli._common import open_home
from supervisor.models import register_model


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("model", help="manage models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    reg = actions.add_parser("register", help="register the ONNX model in directory PATH")
    reg.add_argument("--tenant", required=True)
    reg.add_argument("--name", required=True)
    reg.add_argument("--version", default="", help="default: the next integer version")
    reg.add_argument("path", type=Path)
    reg.set_defaults(run=run_register)
    listing = actions.add_parser("list", help="list models")
    listing.add_argument("--tenant")
    listing.set_defaults(run=run_list)


def _specs(specs: tuple[object, ...]) -> str:
    return ", ".join(f"{s.name}:{s.datatype}{list(s.shape)}" for s in specs)  # type: ignore[attr-defined]


def run_register(args: argparse.Namespace) -> int:
    home = open_home(args)
    record = register_model(home, home.registry(), args.tenant, args.name, args.path, args.version)
    print(f"registered {record.tenant}/{record.name} version {record.version} sha256 {record.sha256}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for m in open_home(args).registry().list_models(args.tenant):
        fields = [m.tenant, m.name, m.version, m.sha256[:16], str(m.byte_size)]
        print("\t".join([*fields, f"in: {_specs(m.inputs)}", f"out: {_specs(m.outputs)}"]))
    return 0
