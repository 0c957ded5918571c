"""``ire tenant``: create and list tenants."""

from __future__ import annotations

import argparse

from supervisor.audit import audited_action, local_principal
from supervisor.cli._common import open_home
from supervisor.registry.records import TIERS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tenant", help="manage tenants")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a tenant")
    create.add_argument("name")
    create.add_argument("--tier", default="standard", choices=TIERS)
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="list tenants")
    listing.set_defaults(run=run_list)


def run_create(args: argparse.Namespace) -> int:
    home = open_home(args)
    with audited_action(home, "tenant.create", local_principal(), tenant=args.name, tier=args.tier):
        tenant = home.registry().create_tenant(args.name, args.tier)
    print(f"created tenant {tenant.name} (tier {tenant.tier})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    for tenant in open_home(args).registry().list_tenants():
        print(f"{tenant.name}\t{tenant.tier}")
    return 0
