"""``ire tenant``: create, list, update, suspend, resume and delete tenants.

Each acts on the local home, or on a running supervisor through its admin API with
``--server``.
"""

from __future__ import annotations

import argparse

from protos import admin_pb2 as pb
from supervisor.admin import check_labels
from supervisor.audit import audited_action, local_principal
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.errors import InvalidInputError
from supervisor.registry import Tenant
from supervisor.registry.records import TIERS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tenant", help="manage tenants")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a tenant")
    create.add_argument("name")
    create.add_argument("--tier", default="standard", choices=TIERS)
    create.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    create.set_defaults(run=run_create)
    listing = actions.add_parser("list", help="list tenants")
    listing.set_defaults(run=run_list)
    update = actions.add_parser("update", help="change a tenant's tier and/or labels (merged)")
    update.add_argument("name")
    update.add_argument("--tier", choices=TIERS)
    update.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    update.set_defaults(run=run_update)
    for name, helptext in (
        ("suspend", "refuse every token of the tenant"),
        ("resume", "honour the tenant's tokens again"),
        ("delete", "delete a tenant that has no models"),
    ):
        action = actions.add_parser(name, help=helptext)
        action.add_argument("name")
        action.set_defaults(run=run_state)
    for action in (create, listing, update, *(actions.choices[n] for n in ("suspend", "resume", "delete"))):
        add_remote_options(action)


def _labels(pairs: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise InvalidInputError(f"--label {pair!r}: expected KEY=VALUE")
        out[key] = value
    return check_labels(out)


def _show(tenant: Tenant | pb.Tenant) -> str:
    return f"{tenant.name}\t{tenant.tier}" + ("\tsuspended" if tenant.suspended else "")


def run_create(args: argparse.Namespace) -> int:
    labels = _labels(args.label)
    if args.server:
        request = pb.CreateTenantRequest(name=args.name, tier=args.tier, labels=labels)
        created = admin_call(args, "CreateTenant", request).tenant
    else:
        home = open_home(args)
        with audited_action(home, "tenant.create", local_principal(), tenant=args.name, tier=args.tier):
            created = home.registry().create_tenant(args.name, args.tier, labels)
    print(f"created tenant {created.name} (tier {created.tier})")
    return 0


def run_list(args: argparse.Namespace) -> int:
    if args.server:
        tenants: list[Tenant | pb.Tenant] = []
        token = ""
        while True:
            page = admin_call(args, "ListTenants", pb.ListTenantsRequest(page_token=token))
            tenants.extend(page.tenants)
            token = page.next_page_token
            if not token:
                break
    else:
        tenants = list(open_home(args).registry().list_tenants())
    for tenant in tenants:
        print(_show(tenant))
    return 0


def run_update(args: argparse.Namespace) -> int:
    labels = _labels(args.label)
    if args.server:
        request = pb.UpdateTenantRequest(name=args.name, tier=args.tier or "", labels=labels)
        updated: Tenant | pb.Tenant = admin_call(args, "UpdateTenant", request).tenant
    else:
        home = open_home(args)
        registry = home.registry()
        merged = {**dict(registry.get_tenant(args.name).labels), **labels}
        with audited_action(home, "tenant.update", local_principal(), tenant=args.name, tier=args.tier):
            updated = registry.update_tenant(args.name, args.tier, check_labels(merged))
    print(_show(updated))
    return 0


def run_state(args: argparse.Namespace) -> int:
    if args.server:
        if args.action == "delete":
            admin_call(args, "DeleteTenant", pb.DeleteTenantRequest(name=args.name))
        else:
            request = pb.SuspendTenantRequest(name=args.name, suspended=args.action == "suspend")
            admin_call(args, "SuspendTenant", request)
    else:
        home = open_home(args)
        registry = home.registry()
        with audited_action(home, f"tenant.{args.action}", local_principal(), tenant=args.name):
            if args.action == "delete":
                registry.delete_tenant(args.name)
            else:
                registry.set_suspended(args.name, args.action == "suspend")
    print(f"{args.action}: tenant {args.name}")
    return 0
