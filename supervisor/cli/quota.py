"""``ire quota``: set a tenant's quota overrides and show its limits and usage."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
from typing import Any

from protos import admin_pb2 as pb
from supervisor.cli._common import open_home
from supervisor.cli._remote import add_remote_options, admin_call
from supervisor.errors import InvalidInputError
from supervisor.quota import effective_limits, parse_overrides
from supervisor.quota.admission import open_store
from supervisor.quota.limits import parse_size

# CLI flag → (quota field, parser)
_FLAGS: dict[str, tuple[str, Any]] = {
    "rate": ("rate", lambda s: float(s.removesuffix("/s"))),
    "burst": ("burst", int),
    "concurrency": ("concurrency", int),
    "daily": ("daily", int),
    "max_request_bytes": ("max_request_bytes", parse_size),
    "max_batch": ("max_batch", int),
    "max_models": ("max_models", int),
    "max_model_bytes": ("max_model_bytes", parse_size),
    "memory": ("memory_bytes", parse_size),
    "cpu": ("cpu", float),
    "pids": ("pids", int),
    "gpu": ("gpu", lambda s: "" if s == "none" else s),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quota", help="set and show tenant quotas")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    setp = actions.add_parser("set", help="override the tier's quotas for one tenant")
    setp.add_argument("tenant")
    for flag in _FLAGS:
        setp.add_argument(f"--{flag.replace('_', '-')}", dest=flag, metavar="VALUE")
    setp.add_argument("--reset", action="store_true", help="drop every override first")
    setp.set_defaults(run=run_set)
    show = actions.add_parser("show", help="show a tenant's limits and current usage")
    show.add_argument("tenant")
    show.set_defaults(run=run_show)
    add_remote_options(setp)
    add_remote_options(show)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for flag, (field, parse) in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        try:
            raw[field] = parse(value)
        except ValueError as exc:
            raise InvalidInputError(f"--{flag.replace('_', '-')} {value!r}: {exc}") from exc
    return parse_overrides(raw)


def _remote_view(quota: pb.Quota) -> dict[str, Any]:
    usage = {"daily_used": quota.daily_used, "in_flight": quota.in_flight, "rate_tokens": round(quota.rate_tokens, 3)}
    return {
        "tenant": quota.tenant,
        "tier": quota.tier,
        "overrides": dict(quota.overrides),
        "limits": dict(quota.limits),
        "usage": usage if quota.usage_known else None,
    }


def run_set(args: argparse.Namespace) -> int:
    if args.server:
        overrides = {k: str(v) for k, v in collect(args).items()}
        request = pb.SetQuotaRequest(tenant=args.tenant, overrides=overrides, reset=args.reset)
        quota = admin_call(args, "SetQuota", request)
        print(f"quota overrides for {args.tenant}: {json.dumps(dict(quota.overrides), sort_keys=True)}")
        return 0
    registry = open_home(args).registry()
    tenant = registry.get_tenant(args.tenant)
    overrides = {} if args.reset else registry.quota_overrides(args.tenant)
    overrides.update(collect(args))
    effective_limits(tenant.tier, overrides)  # refuse before storing anything invalid
    registry.set_quota_overrides(args.tenant, overrides)
    print(f"quota overrides for {args.tenant}: {json.dumps(overrides, sort_keys=True)}")
    return 0


async def _usage(args: argparse.Namespace) -> dict[str, Any]:
    home = open_home(args)
    registry = home.registry()
    tenant = registry.get_tenant(args.tenant)
    limits = effective_limits(tenant.tier, registry.quota_overrides(args.tenant))
    store = open_store(home.settings().quota, home.root)
    try:
        usage = await store.usage(args.tenant, limits)
    finally:
        await store.close()
    return {
        "tenant": tenant.name,
        "tier": tenant.tier,
        "overrides": registry.quota_overrides(args.tenant),
        "limits": dataclasses.asdict(limits),
        "usage": {
            "daily_used": usage.daily_used,
            "in_flight": usage.in_flight,
            "rate_tokens": round(usage.rate_tokens, 3),
        },
    }


def run_show(args: argparse.Namespace) -> int:
    if args.server:
        quota = admin_call(args, "GetQuota", pb.GetQuotaRequest(tenant=args.tenant))
        print(json.dumps(_remote_view(quota), indent=2, sort_keys=True))
        return 0
    print(json.dumps(asyncio.run(_usage(args)), indent=2, sort_keys=True))
    return 0
