"""Large tensors: what the worker's regions save, inside the real server, under load.

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

With ``--outputs`` it serves the ``tall`` model instead, 256 bytes in and 1 MiB out (a
``Tile``), and ``ire-frames`` is ``ire serve`` with ``workers.output_region = false``:
what the output region saves.

It reports req/s, p50, the ratio to ``ire-frames`` and to the floor, and the CPU per call
of the server (with its workers). Results go to bench/results/region-<UTC>.json (or
region-outputs-<UTC>.json).

    python -m bench.region [--outputs] [--rounds 3] [--duration 4] [--concurrency 4]

Exit status: 0 clean; 1 the benchmark could not run; 3 it ran but some calls failed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from bench._procs import exit_on_sigterm
from bench._setup import TALL_MODEL, WIDE_MODEL, WIDE_WIDTH, BenchHome
from bench.layers import FLOOR_PATTERN, IRE_PATTERN, Servers, alternate, parse_args
from bench.loadgen import TOKEN_ENV
from bench.tensors import MALLOC_ENV


def _servers(model_path: Path, home_root: Path, outputs: bool = False) -> Servers:
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
    ire_env = dict(base, IRE_HOME=str(home_root), IRE_WORKERS__DYNAMIC_BATCHING="off")
    ire = [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"]
    model = TALL_MODEL if outputs else WIDE_MODEL
    floor = [sys.executable, "-m", "bench.floor_server", "--model", str(model_path), "--name", model]
    frames = {"IRE_WORKERS__OUTPUT_REGION" if outputs else "IRE_WORKERS__INPUT_REGION": "false"}
    return {
        "floor": (floor, base, FLOOR_PATTERN),
        "ire-frames": (ire, dict(ire_env, **frames), IRE_PATTERN),
        "ire": (ire, ire_env, IRE_PATTERN),
        "ire-malloc": (ire, dict(ire_env, **MALLOC_ENV), IRE_PATTERN),
    }  # fmt: skip


def render(medians: dict[str, dict[str, Any]], concurrency: int, rounds: int, outputs: bool = False) -> str:
    floor, frames = medians["floor"]["throughput_rps"], medians["ire-frames"]["throughput_rps"]
    what = "tall model, 1 MiB out of a call" if outputs else "wide model, 1 MiB in a call"
    lines = [
        f"{what}, concurrency {concurrency}, median of {rounds} round(s);",
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


def main(argv: list[str] | None = None) -> int:
    outputs_help = "serve the tall model (1 MiB out) and compare the output region with frames"
    args = parse_args(argv, "python -m bench.region", __doc__ or "", concurrency=4, flags=[("--outputs", outputs_help)])
    exit_on_sigterm()

    def servers(home: BenchHome) -> Servers:
        path = home.tall_model_path if args.outputs else home.wide_model_path
        assert path is not None
        return _servers(path, home.home.root, args.outputs)

    return alternate(
        "region-outputs" if args.outputs else "region",
        args,
        servers,
        lambda medians: render(medians, args.concurrency, args.rounds, args.outputs),
        wide=not args.outputs,
        tall=args.outputs,
        model=TALL_MODEL if args.outputs else WIDE_MODEL,
        width=None if args.outputs else WIDE_WIDTH,
    )


if __name__ == "__main__":
    sys.exit(main())
