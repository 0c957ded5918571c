"""Issue 10's targets, checked against one run of ``bench.all``."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from typing import Any

# (name, comparison, bound): "≥" met when the figure is at least the bound, "≤" at most.
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("IRE throughput / MLServer, concurrency 16", "≥", 1.5),
    ("IRE p50 / MLServer p50, concurrency 1", "≤", 1.0),
    ("IRE throughput / floor server, concurrency 16", "≥", 0.7),
    ("IRE p99 / p50, concurrency 16", "≤", 3.0),
    ("worker cold start p50 (ms)", "≤", 60.0),
    ("idle worker unique memory, USS (MB)", "≤", 80.0),
)


def _ratio(medians: Mapping[str, Any], scenario: str, a: tuple[str, str], b: tuple[str, str]) -> float | None:
    by_server = medians.get(scenario, {})
    try:
        return float(by_server[a[0]][a[1]] / by_server[b[0]][b[1]])
    except (KeyError, ZeroDivisionError):
        return None


def targets(medians: Mapping[str, Any], micro: Mapping[str, Any], ire: str = "ire") -> list[dict[str, Any]]:
    """Each target with its figure (None when not measured) and whether it is met.

    ``ire`` names the IRE server whose figures count ("ire" as shipped, or a variant).
    """
    sandbox = micro.get("sandbox", {}).get("data", {})
    cold = sandbox.get("cold_start_ms", {}).get("confined")
    uss = sandbox.get("idle_uss_mb", {}).get("confined")
    figures: dict[str, Callable[[], float | None]] = {
        TARGETS[0][0]: lambda: _ratio(medians, "mlp c16", (ire, "throughput_rps"), ("mlserver", "throughput_rps")),
        TARGETS[1][0]: lambda: _ratio(medians, "mlp c1", (ire, "p50"), ("mlserver", "p50")),
        TARGETS[2][0]: lambda: _ratio(medians, "mlp c16", (ire, "throughput_rps"), ("floor", "throughput_rps")),
        TARGETS[3][0]: lambda: _ratio(medians, "mlp c16", (ire, "p99"), (ire, "p50")),
        TARGETS[4][0]: lambda: statistics.median(cold) if cold else None,
        TARGETS[5][0]: lambda: float(uss) if uss is not None else None,
    }
    found = []
    for name, comparison, bound in TARGETS:
        value = figures[name]()
        met = None if value is None else (value >= bound if comparison == "≥" else value <= bound)
        found.append({"measure": name, "target": f"{comparison} {bound:g}", "figure": value, "met": met})
    return found


def render_targets(found: list[dict[str, Any]]) -> str:
    lines = [f"{'issue 10 target':<47} {'target':>7} {'figure':>8}  met"]
    for t in found:
        figure = "n/a" if t["figure"] is None else f"{t['figure']:.3f}"
        met = {True: "yes", False: "NO", None: "not measured"}[t["met"]]
        lines.append(f"{t['measure']:<47} {t['target']:>7} {figure:>8}  {met}")
    return "\n".join(lines)
