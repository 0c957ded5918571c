"""Where the event-loop thread's CPU goes, step by step, inside `ire serve` under load.

`ire serve`, with every layer on, runs as bench._step_server, which counts the CPU time
its event-loop thread spends in each step of a prediction. The load generator keeps
``--concurrency`` calls in flight; after the warm-up the server is told to start a
window, and ``--duration`` seconds later to end it. The table gives, per call, the CPU
of each step on that thread, its share of the thread's CPU, and what is left: gRPC, the
event loop, tasks and futures. These are what a step costs in the loaded server; bench.audit
and bench.policy time the same steps alone, where they cost several times less.

    python -m bench.steps [--duration 6] [--warmup 2] [--concurrency 16]

Results go to bench/results/steps-<UTC>.json. Exit status: 0 clean; 1 it could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._environment import describe
from bench._procs import ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import save_results, utc_stamp
from bench._setup import MODEL, make_bench_home
from bench._step_server import CALLBACKS, TIMER, WHOLE_CALL
from bench.loadgen import CALL_TIMEOUT_SECONDS, FIRST_CALL_TIMEOUT_SECONDS, TOKEN_ENV
from bench.serve import BenchError

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 60.0
EXIT_FAILED = 1
# How long the server has to write the window after SIGUSR2.
WRITE_TIMEOUT_SECONDS = 10.0
# Seconds the load generator runs past the window, so that the window sees full load.
TAIL_SECONDS = 1.0


def render(window: dict[str, Any]) -> str:
    calls = window["calls"]
    steps: dict[str, dict[str, int]] = window["steps"]
    timer = steps.get(TIMER)
    # One timing costs about what the empty TIMER step measures; it is taken off each row.
    cost = timer["ns"] / timer["timed"] if timer and timer["timed"] else 0.0

    def per_call(label: str, nested: int = 0) -> float:
        entry = steps.get(label)
        if entry is None:
            return 0.0
        return (entry["ns"] - cost * (entry["timed"] + nested)) / 1000 / calls

    thread = window["loop_thread_cpu_ns"] / 1000 / calls
    lines = [
        f"{calls:,} calls in {window['wall_ns'] / 1e9:.1f} s ({calls / (window['wall_ns'] / 1e9):,.0f} req/s); "
        f"event-loop thread: {thread:.0f} µs of CPU per call",
        "",
        f"{'step (on the event-loop thread)':<40} {'µs/call':>8} {'share':>6}",
    ]
    for label in window["order"]:
        if label in steps:
            us = per_call(label)
            lines.append(f"{label:<40} {us:>8.1f} {us / thread:>6.1%}")
    # Timings nested inside the call's coroutine inflate it; they are taken off too.
    nested = sum(e["timed"] for k, e in steps.items() if k not in (TIMER, WHOLE_CALL, *CALLBACKS))
    ire = per_call(WHOLE_CALL, nested) + sum(per_call(label) for label in CALLBACKS)
    rest = thread - ire - cost * sum(e["timed"] for e in steps.values()) / 1000 / calls
    lines += ["", "including the steps inside them:"]
    for label in window["whole"]:
        if label in steps and label != WHOLE_CALL:
            inside = sum(steps[k]["timed"] for k in window["inside"].get(label, ()) if k in steps)
            us = per_call(label, inside)
            lines.append(f"{label:<40} {us:>8.1f} {us / thread:>6.1%}")
    lines += [
        f"{'IRE code on the thread, all of it':<40} {ire:>8.1f} {ire / thread:>6.1%}",
        f"{'gRPC, the event loop, tasks, timing':<40} {rest:>8.1f} {rest / thread:>6.1%}",
        f"(each row has the cost of timing it, {cost / 1000:.1f} µs, taken off)",
    ]
    return "\n".join(lines)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.steps", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=6.0, help="measured seconds (default 6)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before the window (default 2)")
    p.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.concurrency < 1:
        p.error("need --duration > 0, --warmup >= 0 and --concurrency >= 1")
    return args


def _measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    home = make_bench_home(workdir / "bench", token_ttl_seconds=3600)
    base = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
    out = workdir / "window.json"
    server_env = dict(base, IRE_HOME=str(home.home.root))  # as shipped: dynamic batching "auto"
    argv = [sys.executable, "-m", "bench._step_server", "--out", str(out)]
    server = start_server("ire-steps", argv, server_env, r"IRE serving on (\S+)", workdir, START_TIMEOUT_SECONDS, REPO)
    try:
        loadgen_argv = [
            sys.executable, "-m", "bench.loadgen", "--json", "--target", server.address, "--model", MODEL,
            "--concurrency", str(args.concurrency), "--warmup", str(args.warmup),
            "--duration", str(args.duration + TAIL_SECONDS),
        ]  # fmt: skip
        loadgen = subprocess.Popen(
            loadgen_argv, env=dict(base, **{TOKEN_ENV: home.token}), cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        try:
            time.sleep(args.warmup)
            server.process.send_signal(signal.SIGUSR1)
            time.sleep(args.duration)
            server.process.send_signal(signal.SIGUSR2)
            bound = FIRST_CALL_TIMEOUT_SECONDS + CALL_TIMEOUT_SECONDS + TAIL_SECONDS + 30.0
            stdout, _ = loadgen.communicate(timeout=bound)
        finally:
            if loadgen.poll() is None:
                loadgen.kill()
                loadgen.wait()
        if loadgen.returncode != 0:
            raise BenchError(f"loadgen exited {loadgen.returncode}")
        deadline = time.monotonic() + WRITE_TIMEOUT_SECONDS
        while not out.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not out.exists():
            raise BenchError("the server did not write its window (see its stderr in the work directory)")
        window = dict(json.loads(out.read_text()))
        if not window["calls"]:
            raise BenchError("no call completed inside the window")
        window["loadgen"] = json.loads(stdout)
        return window
    finally:
        stop(server.process)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="ire-bench-steps-"))
    try:
        window = _measure(args, workdir)
    except (BenchError, ServerStartError, subprocess.TimeoutExpired) as exc:
        print(f"bench.steps: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    stamp = utc_stamp()
    document = {
        "benchmark": "steps",
        "timestamp": stamp,
        "argv": sys.argv,
        "settings": vars(args),
        "environment": describe(REPO),
        "window": window,
    }
    path = save_results("steps", document, stamp)
    print(render(window))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
