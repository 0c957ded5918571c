"""Medians over rounds, the results table and the IRE/floor ratio table.

Each measure is the median of its rounds taken on its own, so one noisy round on this
shared two-core machine moves a figure less than it would in a mean.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

IRE = "ire"
FLOOR = "floor"
MEASURES = ("throughput_rps", "p50", "p90", "p99")

# medians[concurrency][server] -> the summary from median_of_rounds
Medians = Mapping[int, Mapping[str, Mapping[str, Any]]]


def median_of_rounds(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The per-measure median of loadgen results, plus errors (by status code) summed over rounds."""
    codes: Counter[str] = Counter()
    for r in runs:
        codes.update(r["errors"])
    summary = {
        "throughput_rps": statistics.median(r["throughput_rps"] for r in runs),
        # Each round's, in order: servers alternate within a round, so rounds pair up.
        "throughput_rounds": [r["throughput_rps"] for r in runs],
        **{p: statistics.median(r["latency_ms"][p] for r in runs) for p in ("p50", "p90", "p99")},
        "requests": sum(r["requests"] for r in runs),
        "errors": sum(codes.values()),
        "error_codes": dict(codes),
    }
    for part in ("server", "loadgen"):  # CPU per call, when the loadgen was given --cpu-pid
        values = [r["cpu_us_per_call"][part] for r in runs if part in r.get("cpu_us_per_call", {})]
        if values:
            summary[f"cpu_{part}_us"] = statistics.median(values)
    return summary


def round_ratios(ours: Mapping[str, Any], peer: Mapping[str, Any]) -> list[float]:
    """Throughput ratios round by round (each round runs both servers, one after the other):
    how far one round's ratio strays from another shows how noisy the median is."""
    pairs = zip(ours.get("throughput_rounds", ()), peer.get("throughput_rounds", ()), strict=False)
    return [a / b for a, b in pairs if b]


def ratios(ire: Mapping[str, Any], floor: Mapping[str, Any]) -> dict[str, float]:
    """IRE divided by floor: below 1 for throughput and above 1 for latency is IRE's cost."""
    return {measure: ire[measure] / floor[measure] if floor[measure] else float("nan") for measure in MEASURES}


def render(medians: Medians, rounds: int) -> str:
    """``medians[concurrency][server]`` as a results table followed by a ratio table."""
    lines = [
        f"Median of {rounds} round(s); batch 1, 64→256→256→10 FP32 MLP.",
        "",
        f"{'server':<7} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6}",
    ]
    for concurrency, by_server in medians.items():
        for server in (IRE, FLOOR):
            m = by_server[server]
            lines.append(
                f"{server:<7} {concurrency:>4} {m['throughput_rps']:>9.1f} {m['p50']:>8.3f} "
                f"{m['p90']:>8.3f} {m['p99']:>8.3f} {int(m['errors']):>6}"
            )
    lines += ["", f"{'IRE/floor':<9} {'conc':>4} {'req/s':>7} {'p50':>7} {'p99':>7}"]
    for concurrency, by_server in medians.items():
        r = ratios(by_server[IRE], by_server[FLOOR])
        lines.append(f"{'':<9} {concurrency:>4} {r['throughput_rps']:>7.3f} {r['p50']:>7.3f} {r['p99']:>7.3f}")
    return "\n".join(lines)


def error_banner(medians: Medians) -> str | None:
    """A loud multi-line warning when any run had errors, else None."""
    bad = [
        f"  {server} at concurrency {concurrency}: {m['errors']} failed call(s) {m['error_codes']}"
        for concurrency, by_server in medians.items()
        for server, m in by_server.items()
        if m["errors"]
    ]
    if not bad:
        return None
    rule = "!" * 72
    return "\n".join([rule, "ERRORS DURING THE BENCHMARK: these figures are not comparable.", *bad, rule])
