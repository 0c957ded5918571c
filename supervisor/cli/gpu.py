"""``ire gpu list``: the node's GPUs and MIG slices, and which worker holds each."""

from __future__ import annotations

import argparse
import json

from supervisor.cli._common import open_home
from supervisor.gpu.factory import STATE_FILE, open_inventory
from supervisor.settings import GpuSettings


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("gpu", help="GPU inventory and assignments")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="show GPUs, MIG slices and their assignments")
    listing.add_argument("--inventory", help="override gpu.inventory, e.g. simulated:mixed")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(run=run_list)


def run_list(args: argparse.Namespace) -> int:
    home = open_home(args)
    settings = home.settings().gpu
    if args.inventory:
        settings = GpuSettings(inventory=args.inventory)
    inventory = open_inventory(settings)
    state = home.root / STATE_FILE
    held = {a["slice"]["uuid"]: a for a in json.loads(state.read_text())} if state.exists() else {}
    rows: list[dict[str, object]] = []
    for s in inventory.slices():
        usage = inventory.usage(s.uuid)
        holder = held.get(s.uuid)
        rows.append(
            {
                "slice": s.uuid,
                "profile": s.profile,
                "memory_gib": round(s.memory_bytes / 1024**3, 1),
                "gpu": s.parent_uuid,
                "gi": s.gpu_instance,
                "ci": s.compute_instance,
                "tenant": holder["tenant"] if holder else "",
                "memory_used_gib": round(usage.memory_used_bytes / 1024**3, 2) if usage else None,
            }
        )
    if args.json:
        print(json.dumps({"gpus": [g.__dict__ for g in inventory.gpus()], "slices": rows}, indent=2))
        return 0
    gpus = inventory.gpus()
    if not gpus:
        print("no GPUs (no NVML driver, or gpu.inventory = none); workers run on CPU")
        return 0
    for g in gpus:
        mig = "MIG on" if g.mig_enabled else "MIG off"
        print(f"GPU {g.index} {g.uuid} {g.name} {g.memory_bytes / 1024**3:.0f} GiB {mig}")
    for r in rows:
        holder = f"tenant {r['tenant']}" if r["tenant"] else "free"
        print(f"  {r['slice']}  {r['profile']!s:<8} {r['memory_gib']!s:>6} GiB  gi={r['gi']} ci={r['ci']}  {holder}")
    return 0
