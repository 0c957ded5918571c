"""Large inputs: what the worker's input region saves, inside the real server, under load.

A call of the ``wide`` model carries 1 MiB of input and 4 bytes of output, and its run
reads the input once, so moving the input is most of what a call costs. This runs,
alternated round after round (concurrency 4 by default):

- ``floor``: the in-process floor of bench.all, serving the same model;
- ``ire-frames``: ``ire serve`` with ``workers.input_region = false``, every input in the
  worker's frames;
- ``ire``: ``ire serve`` as shipped, inputs of 64 KiB or more through the input region
  (supervisor/workers/region.py);
- ``ire-malloc``: the same, with glibc's malloc keeping large blocks on its heap
  (docs/operations.md, "Large tensors and glibc's malloc"), an operator's option.

It reports req/s, p50, the ratio to ``ire-frames`` and to the floor, and the CPU per call
of the server (with its workers). Results go to bench/results/region-<UTC>.json.

    python -m bench.region [--rounds 3] [--duration 4] [--concurrency 4]

Exit status: 0 clean; 1 the benchmark could not run; 3 it ran but some calls failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import _report
from bench._environment import describe
from bench._procs import ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import save_results, utc_stamp
from bench._setup import WIDE_MODEL, WIDE_WIDTH, make_bench_home
from bench.layers import FLOOR_PATTERN, IRE_PATTERN, START_TIMEOUT_SECONDS, run_once
from bench.loadgen import TOKEN_ENV
from bench.serve import BenchError
from bench.tensors import MALLOC_ENV

REPO = Path(__file__).resolve().parent.parent
EXIT_FAILED, EXIT_CALL_ERRORS = 1, 3


def _servers(model_path: Path, home_root: Path) -> dict[str, tuple[list[str], dict[str, str], str]]:
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
    ire_env = dict(base, IRE_HOME=str(home_root), IRE_WORKERS__DYNAMIC_BATCHING="false")
    ire = [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"]
    floor = [sys.executable, "-m", "bench.floor_server", "--model", str(model_path), "--name", WIDE_MODEL]
    return {
        "floor": (floor, base, FLOOR_PATTERN),
        "ire-frames": (ire, dict(ire_env, IRE_WORKERS__INPUT_REGION="false"), IRE_PATTERN),
        "ire": (ire, ire_env, IRE_PATTERN),
        "ire-malloc": (ire, dict(ire_env, **MALLOC_ENV), IRE_PATTERN),
    }  # fmt: skip


def render(medians: dict[str, dict[str, Any]], concurrency: int, rounds: int) -> str:
    floor, frames = medians["floor"]["throughput_rps"], medians["ire-frames"]["throughput_rps"]
    lines = [
        f"wide model, 1 MiB in a call, concurrency {concurrency}, median of {rounds} round(s);",
        "srv: CPU µs per call of the server with its workers.",
        "",
        f"{'server':<11} {'req/s':>8} {'p50 ms':>7} {'/frames':>8} {'/floor':>7} {'srv µs':>7} {'errors':>6}",
    ]
    for name, m in medians.items():
        rps = m["throughput_rps"]
        lines.append(
            f"{name:<11} {rps:>8.1f} {m['p50']:>7.2f} {rps / frames:>8.3f} {rps / floor:>7.3f}"
            f" {m.get('cpu_server_us', float('nan')):>7.0f} {int(m['errors']):>6}"
        )
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.region", description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3, help="alternations of the servers (default 3)")
    p.add_argument("--duration", type=float, default=4.0, help="measured seconds per run (default 4)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run (default 1)")
    p.add_argument("--concurrency", type=int, default=4, help="calls in flight (default 4)")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        p.error("need --rounds >= 1, --duration > 0, --warmup >= 0 and --concurrency >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    exit_on_sigterm()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="ire-bench-region-"))
    runs: dict[str, list[dict[str, Any]]] = {}
    try:
        home = make_bench_home(workdir / "bench", token_ttl_seconds=3600, wide=True)
        assert home.wide_model_path is not None
        servers = _servers(home.wide_model_path, home.home.root)
        for round_ in range(args.rounds):
            for name, (command, env, pattern) in servers.items():
                print(f"  {name:<11} round {round_ + 1}/{args.rounds} ...", flush=True)
                server = start_server(name, command, env, pattern, workdir, START_TIMEOUT_SECONDS, cwd=REPO)
                try:
                    runs.setdefault(name, []).append(run_once(server, home.token, args, WIDE_MODEL, WIDE_WIDTH))
                finally:
                    stop(server.process)
    except (BenchError, ServerStartError) as exc:
        print(f"bench.region: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    medians = {name: _report.median_of_rounds(results) for name, results in runs.items()}
    stamp = utc_stamp()
    document = {
        "benchmark": "region",
        "timestamp": stamp,
        "argv": sys.argv,
        "settings": vars(args),
        "environment": describe(REPO),
        "medians": medians,
        "runs": runs,
        "elapsed_s": time.monotonic() - started,
    }
    path = save_results("region", document, stamp)
    print()
    print(render(medians, args.concurrency, args.rounds))
    print(f"\nresults: {path}\nelapsed: {time.monotonic() - started:.0f} s")
    return EXIT_CALL_ERRORS if any(m["errors"] for m in medians.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
