"""``ire signer``: trust, list and remove model-signing keys."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from protos import admin_pb2 as pb
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.errors import InvalidInputError
from supervisor.signing import trusted_signer

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("signer", help="manage the keys trusted to sign models")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="trust an EC public key (PEM), platform-wide or for one tenant")
    add.add_argument("--name", required=True)
    add.add_argument("--tenant", default="", help="trust it for this tenant only")
    add.add_argument("pubkey", type=Path)
    add.set_defaults(run=run_add)
    listing = actions.add_parser("list", help="list trusted signers")
    listing.set_defaults(run=run_list)
    remove = actions.add_parser("remove", help="stop trusting a signer; its models no longer load")
    remove.add_argument("name")
    remove.set_defaults(run=run_remove)
    for action in (add, listing, remove):
        add_remote_options(action)


def run_add(args: argparse.Namespace) -> int:
    if not _NAME.match(args.name):
        raise InvalidInputError(f"signer name {args.name!r} is invalid; expected letters, digits, '.', '_', '-'")
    try:
        signer = trusted_signer(args.name, args.tenant, args.pubkey.read_bytes())
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"cannot read an EC public key from {args.pubkey}: {exc}") from exc
    if args.server:
        request = pb.AddSignerRequest(name=args.name, tenant=args.tenant, public_key_pem=signer.public_key_pem)
        admin_call(args, "AddSigner", request)
    else:
        open_home(args).registry().add_signer(signer)
    scope = f"tenant {args.tenant}" if args.tenant else "every tenant"
    print(f"trusted signer {signer.name} ({signer.key_hint[:16]}…) for {scope}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    if args.server:
        signers = list(admin_call(args, "ListSigners", pb.ListSignersRequest()).signers)
    else:
        signers = list(open_home(args).registry().list_signers())
    for s in signers:
        print(f"{s.name}\t{s.tenant or '*'}\t{s.key_hint}")
    return 0


def run_remove(args: argparse.Namespace) -> int:
    if args.server:
        admin_call(args, "RemoveSigner", pb.RemoveSignerRequest(name=args.name))
    else:
        open_home(args).registry().remove_signer(args.name)
    print(f"removed signer {args.name}")
    return 0
