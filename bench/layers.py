"""What each layer of the prediction path costs inside the real server, under load.

Each layer timed alone (bench.audit, bench.policy) costs a few microseconds; the server
under load pays more for it, because every process shares the two cores and its caches.
This runs, alternated round after round at one concurrency (16 by default):

- ``floor`` and ``floor-proc``, the references of bench.all;
- ``ire``: ``ire serve`` as shipped;
- ``-audit``, ``-policy``, ``-quota``, ``-metrics``: the same server with that one layer
  switched off (bench._unsafe_layer_server, a benchmark-only entry point);
- ``hop-only``: ``ModelInfer`` cut down to the worker round trip (no token, policy,
  quota, tensor checks, audit or metrics), the cost of isolation alone.

For each it reports req/s, the ratio to the floor, and the CPU per call of the server
(with its workers) and of the load generator. A layer's cost is how much CPU per call
the server saves without it. Results go to bench/results/layers-<UTC>.json.

    python -m bench.layers [--rounds 3] [--duration 4] [--concurrency 16]

Exit status: 0 clean; 1 the benchmark could not run; 3 it ran but some calls failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import _report
from bench._environment import describe
from bench._procs import ServerProcess, ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import save_results, utc_stamp
from bench._setup import MODEL, BenchHome, make_bench_home
from bench.loadgen import CALL_TIMEOUT_SECONDS, FIRST_CALL_TIMEOUT_SECONDS, TOKEN_ENV
from bench.serve import BenchError

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60.0
EXIT_FAILED, EXIT_CALL_ERRORS = 1, 3
IRE_PATTERN, FLOOR_PATTERN = r"IRE serving on (\S+)", r"FLOOR serving on (\S+)"
# Variant name -> the layers bench._unsafe_layer_server switches off.
WITHOUT = {
    "-audit": ["audit"],
    "-policy": ["policy"],
    "-quota": ["quota"],
    "-metrics": ["metrics"],
    "hop-only": ["all"],
}


def _servers(model_path: Path, home_root: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
    # Dynamic batching off (the shipped "auto" merges the MLP's calls): each call then pays
    # for each layer itself, and "hop only", which bypasses the batcher, compares like with like.
    ire_env = dict(base, IRE_HOME=str(home_root), IRE_WORKERS__DYNAMIC_BATCHING="off")
    floor = [sys.executable, "-m", "bench.floor_server", "--model", str(model_path), "--name", MODEL]
    found = {
        "floor": (floor, base, FLOOR_PATTERN),
        "floor-proc": ([*floor, "--worker-process"], base, FLOOR_PATTERN),
        "ire": ([sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"], ire_env, IRE_PATTERN),
    }
    for name, layers in WITHOUT.items():
        switches = (arg for layer in layers for arg in ("--without", layer))
        argv = [sys.executable, "-m", "bench._unsafe_layer_server", *switches]
        found[name] = (argv, ire_env, IRE_PATTERN)
    return found


def run_once(
    server: ServerProcess, token: str, args: argparse.Namespace, model: str = MODEL, width: int | None = None
) -> dict[str, Any]:
    """One loadgen run against ``server`` at ``args``' concurrency and duration; its JSON."""
    env = {k: v for k, v in os.environ.items() if k != "IRE_HOME"}
    env[TOKEN_ENV] = token
    argv = [
        sys.executable, "-m", "bench.loadgen", "--json", "--target", server.address, "--model", model,
        "--concurrency", str(args.concurrency), "--warmup", str(args.warmup), "--duration", str(args.duration),
        "--cpu-pid", str(server.process.pid), *(["--width", str(width)] if width is not None else []),
    ]  # fmt: skip
    bound = args.warmup + args.duration + FIRST_CALL_TIMEOUT_SECONDS + CALL_TIMEOUT_SECONDS + 30.0
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=bound)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"loadgen against {server.name} ran past {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(f"loadgen against {server.name} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return dict(json.loads(proc.stdout))


def render(medians: dict[str, dict[str, Any]], concurrency: int, rounds: int) -> str:
    floor, ire = medians["floor"], medians["ire"]
    lines = [
        f"MLP batch 1, concurrency {concurrency}, median of {rounds} round(s). CPU µs per call: the server",
        "with its workers (srv) and the load generator (lg). A layer's cost: the srv µs saved without it.",
        "",
        f"{'server':<11} {'req/s':>8} {'/floor':>7} {'srv µs':>7} {'lg µs':>6} {'saved µs':>9} {'errors':>6}",
    ]
    for name, m in medians.items():
        srv, lg = m.get("cpu_server_us", float("nan")), m.get("cpu_loadgen_us", float("nan"))
        saved = ire.get("cpu_server_us", float("nan")) - srv if name in WITHOUT else float("nan")
        saved_text = f"{saved:>9.0f}" if saved == saved else f"{'':>9}"
        lines.append(
            f"{name:<11} {m['throughput_rps']:>8.0f} {m['throughput_rps'] / floor['throughput_rps']:>7.3f}"
            f" {srv:>7.0f} {lg:>6.0f} {saved_text} {int(m['errors']):>6}"
        )
    return "\n".join(lines)


def parse_args(
    argv: list[str] | None, prog: str, doc: str, concurrency: int = 16, flags: Sequence[tuple[str, str]] = ()
) -> argparse.Namespace:
    """The options of a benchmark that alternates servers (this one and bench.region), and
    its own boolean ``flags`` as (option, help)."""
    p = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    for option, text in flags:
        p.add_argument(option, action="store_true", help=text)
    p.add_argument("--rounds", type=int, default=3, help="alternations of the servers (default 3)")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per run (default 4)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (default 1)")
    p.add_argument("--concurrency", type=int, default=concurrency, help=f"calls in flight (default {concurrency})")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        p.error("need --rounds >= 1, --duration > 0, --warmup >= 0 and --concurrency >= 1")
    return args


Servers = dict[str, tuple[list[str], dict[str, str], str]]


def alternate(
    benchmark: str,
    args: argparse.Namespace,
    servers: Callable[[BenchHome], Servers],
    render_medians: Callable[[dict[str, dict[str, Any]]], str],
    *,
    wide: bool = False,
    tall: bool = False,
    model: str = MODEL,
    width: int | None = None,
) -> int:
    """Run ``servers`` one at a time, alternated for ``args.rounds`` rounds, against a fresh
    bench home; save bench/results/<benchmark>-<UTC>.json and print the medians. Exit status."""
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix=f"ire-bench-{benchmark}-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        home = make_bench_home(workdir / "bench", token_ttl_seconds=3600, wide=wide, tall=tall)
        found = servers(home)
        for round_ in range(args.rounds):
            for name, (command, env, pattern) in found.items():
                print(f"  {name:<11} round {round_ + 1}/{args.rounds} ...", flush=True)
                # One server at a time, started afresh: an idle peer would still take CPU.
                server = start_server(name, command, env, pattern, workdir, START_TIMEOUT_SECONDS, cwd=REPO)
                try:
                    runs.setdefault(name, []).append(run_once(server, home.token, args, model, width))
                finally:
                    stop(server.process)
    except (BenchError, ServerStartError) as exc:
        print(f"bench.{benchmark}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: _report.median_of_rounds(results) for name, results in runs.items()}
    stamp = utc_stamp()
    document = {
        "benchmark": benchmark,
        "timestamp": stamp,
        "argv": sys.argv,
        "settings": vars(args),
        "environment": describe(REPO),
        "medians": medians,
        "runs": runs,
        "elapsed_s": time.monotonic() - started,
    }
    path = save_results(benchmark, document, stamp)
    print()
    print(render_medians(medians))
    print(f"\nresults: {path}\nelapsed: {time.monotonic() - started:.0f} s")
    return EXIT_CALL_ERRORS if any(m["errors"] for m in medians.values()) else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, "python -m bench.layers", __doc__ or "")
    exit_on_sigterm()
    return alternate(
        "layers",
        args,
        lambda home: _servers(home.model_path, home.home.root),
        lambda medians: render(medians, args.concurrency, args.rounds),
    )


if __name__ == "__main__":
    sys.exit(main())
