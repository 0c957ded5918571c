"""Paired comparison of `ire serve` from two (or more) code trees, or with other settings.

The servers run side by side on one bench home, each from its own source tree (a copy
made with ``git worktree add`` or ``git ls-files | tar``, say). Each round the load
generator drives every server once at one concurrency, and the order flips from one round
to the next, so that a drift of the machine during a round weighs on all of them alike.
The figure for each server is the median over the rounds of its throughput divided by the
first server's in the same round, and the number of rounds it led. On a 2-core machine
whose speed moves by a tenth from one hour to the next, these ratios say what a change
gained; absolute req/s do not.

    python -m bench.ab [--rounds 10] [--duration 3] [--warmup 0.5] [--concurrency 16] \\
        base=/path/to/tree other=/path/to/tree[@IRE_SETTING=value;...] ...

A spec is ``label=tree``; ``@`` adds environment variables for that server only (settings
such as ``IRE_WORKERS__DYNAMIC_BATCHING=off``). Results go to bench/results/ab-<UTC>.json.
Exit status: 0 clean; 1 it could not run; 3 it ran but some calls failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._environment import describe
from bench._procs import ServerProcess, ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import save_results
from bench._setup import make_bench_home
from bench.layers import run_once
from bench.loadgen import TOKEN_ENV
from bench.serve import BenchError

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60.0
EXIT_FAILED, EXIT_ERRORS = 1, 3


@dataclass(frozen=True)
class Spec:
    label: str
    tree: Path
    env: dict[str, str]


def parse_spec(text: str) -> Spec:
    """``label=tree[@NAME=value;NAME=value]``; ValueError when malformed."""
    label, sep, rest = text.partition("=")
    if not sep or not label or not rest:
        raise ValueError(f"{text!r}: expected label=tree[@NAME=value;...]")
    tree, _, extra = rest.partition("@")
    env: dict[str, str] = {}
    for item in filter(None, extra.split(";")):
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"{text!r}: {item!r} is not NAME=value")
        env[name] = value
    path = Path(tree).resolve()
    if not (path / "supervisor" / "__main__.py").is_file():
        raise ValueError(f"{text!r}: {path} is not an IRE source tree")
    return Spec(label, path, env)


def paired(results: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per server: median req/s, median ratio to the first server round by round, rounds led."""
    first = next(iter(results.values()))
    summary: dict[str, dict[str, Any]] = {}
    for label, rates in results.items():
        ratios = [r / b for r, b in zip(rates, first, strict=True) if b > 0]
        summary[label] = {
            "median_rps": statistics.median(rates),
            "median_ratio": statistics.median(ratios) if ratios else float("nan"),
            "rounds_led": sum(r > 1.0 for r in ratios),
            "ratios": ratios,
        }
    return summary


def run(specs: list[Spec], args: argparse.Namespace, workdir: Path) -> tuple[dict[str, list[float]], int]:
    bench_home = make_bench_home(workdir / "bench", token_ttl_seconds=3600)
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME", "PYTHONPATH")}
    servers: dict[str, ServerProcess] = {}
    rates: dict[str, list[float]] = {spec.label: [] for spec in specs}
    errors = 0
    try:
        for spec in specs:
            env = base | {"IRE_HOME": str(bench_home.home.root)} | spec.env
            argv = [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"]
            servers[spec.label] = start_server(
                spec.label, argv, env, r"IRE serving on (\S+)", workdir, START_TIMEOUT_SECONDS, cwd=spec.tree
            )
        for round_ in range(args.rounds):
            order = specs if round_ % 2 == 0 else specs[::-1]
            for spec in order:
                result = run_once(servers[spec.label], bench_home.token, args)
                errors += int(result.get("error_count", 0))
                rates[spec.label].append(float(result["throughput_rps"]))
            line = "  ".join(f"{s.label} {rates[s.label][-1]:,.0f}" for s in specs)
            print(f"round {round_ + 1}/{args.rounds}: {line} req/s", flush=True)
    finally:
        for server in servers.values():
            stop(server.process)
    return rates, errors


def render(summary: dict[str, dict[str, Any]], rounds: int) -> str:
    first = next(iter(summary))
    lines = [f"{'server':<16} {'req/s':>9} {'/ ' + first:>14} {'led':>8}"]
    for label, s in summary.items():
        led = "" if label == first else f"{s['rounds_led']}/{rounds}"
        lines.append(f"{label:<16} {s['median_rps']:>9,.0f} {s['median_ratio']:>14.3f} {led:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("specs", nargs="+", help="label=tree[@NAME=value;...]; the first is the baseline")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--duration", type=float, default=3.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=0.5, help="warm-up seconds per run")
    p.add_argument("--concurrency", type=int, default=16)
    args = p.parse_args(argv)
    try:
        specs = [parse_spec(text) for text in args.specs]
    except ValueError as exc:
        p.error(str(exc))
    if len({s.label for s in specs}) != len(specs):
        p.error("labels must differ")
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        p.error("need --rounds >= 1, --duration > 0, --warmup >= 0 and --concurrency >= 1")
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="ire-ab-"))
    try:
        rates, errors = run(specs, args, workdir)
    except (BenchError, ServerStartError) as exc:
        print(f"bench.ab: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    summary = paired(rates)
    print(render(summary, args.rounds))
    document = {
        "environment": describe(REPO),
        "settings": {k: v for k, v in vars(args).items() if k != "specs"},
        "servers": {s.label: {"tree": str(s.tree), "env": s.env, **summary[s.label]} for s in specs},
        "errors": errors,
    }
    path = save_results("ab", document)
    print(f"results: {path}")
    return EXIT_ERRORS if errors else 0


if __name__ == "__main__":
    sys.exit(main())
