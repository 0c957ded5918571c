"""One command: throughput and p50/p90/p99 of ``ire serve`` against the Python gRPC floor.

It builds a throwaway home holding the 64→256→256→10 MLP, starts the real ``ire serve``
and ``bench.floor_server`` on loopback, then runs ``bench.loadgen`` (its own process)
at each concurrency, alternating IRE and floor round after round so that the noise of a
shared machine falls on both alike. Figures are medians over rounds; the ratio IRE/floor
is the number to compare across machines. Results go to bench/results/serve-<UTC>.json.

    python -m bench.serve [--duration 5] [--warmup 1] [--concurrency 1,16] [--rounds 2]

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
from pathlib import Path
from typing import Any

from bench import _report
from bench._environment import describe
from bench._procs import ServerProcess, ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import save_results, utc_stamp
from bench._setup import MODEL, make_bench_home
from bench.loadgen import CALL_TIMEOUT_SECONDS, FIRST_CALL_TIMEOUT_SECONDS, TOKEN_ENV

REPO = Path(__file__).resolve().parent.parent
# Seconds each server has to print its address; `ire serve` starts a launcher first.
START_TIMEOUT_SECONDS = 60.0
EXIT_FAILED = 1
EXIT_CALL_ERRORS = 3

Run = dict[str, Any]  # one loadgen run: server, concurrency, round and loadgen's JSON result
Medians = dict[int, dict[str, dict[str, Any]]]  # [concurrency][server] -> _report.median_of_rounds


class BenchError(RuntimeError):
    """The benchmark could not produce a result (a server or the load generator failed)."""


def _loadgen_bound(warmup: float, duration: float) -> float:
    """Wall-clock bound on one loadgen process: its own bound plus start-up slack."""
    return warmup + duration + FIRST_CALL_TIMEOUT_SECONDS + CALL_TIMEOUT_SECONDS + 30.0


def run_loadgen(
    server: ServerProcess, env: dict[str, str], concurrency: int, args: argparse.Namespace
) -> dict[str, Any]:
    argv = [
        sys.executable, "-m", "bench.loadgen", "--json", "--target", server.address, "--model", MODEL,
        "--concurrency", str(concurrency), "--warmup", str(args.warmup), "--duration", str(args.duration),
    ]  # fmt: skip
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=_loadgen_bound(args.warmup, args.duration)
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"loadgen against {server.name} ran past {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(f"loadgen against {server.name} exited {proc.returncode}: {proc.stderr.strip()[-2000:]}")
    if server.process.poll() is not None:
        raise BenchError(f"{server.name} exited with status {server.process.returncode} during the run")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def measure(servers: dict[str, tuple[ServerProcess, dict[str, str]]], args: argparse.Namespace) -> list[Run]:
    """Every (concurrency, round, server) run, servers alternating inside each round."""
    runs: list[Run] = []
    for concurrency in args.concurrency:
        for round_ in range(args.rounds):
            for name, (server, env) in servers.items():
                print(f"  {name:<5} concurrency {concurrency:>3} round {round_ + 1}/{args.rounds} ...", flush=True)
                result = run_loadgen(server, env, concurrency, args)
                runs.append({"server": name, "concurrency": concurrency, "round": round_, "result": result})
    return runs


def summarise(runs: list[Run], args: argparse.Namespace) -> Medians:
    return {
        c: {
            name: _report.median_of_rounds([r["result"] for r in runs if r["concurrency"] == c and r["server"] == name])
            for name in (_report.IRE, _report.FLOOR)
        }
        for c in args.concurrency
    }


def benchmark(args: argparse.Namespace, workdir: Path) -> tuple[list[Run], Medians]:
    runs_total = len(args.concurrency) * args.rounds * 2
    bound = START_TIMEOUT_SECONDS * 2 + runs_total * _loadgen_bound(args.warmup, args.duration)
    bench_home = make_bench_home(workdir / "bench", token_ttl_seconds=int(bound) + 600)
    base_env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
    started: list[ServerProcess] = []
    try:
        ire = start_server(
            _report.IRE,
            [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"],
            dict(base_env, IRE_HOME=str(bench_home.home.root)),
            r"IRE serving on (\S+)",
            workdir,
            START_TIMEOUT_SECONDS,
            cwd=REPO,
        )
        started.append(ire)
        floor = start_server(
            _report.FLOOR,
            [sys.executable, "-m", "bench.floor_server", "--model", str(bench_home.model_path), "--name", MODEL,
             "--listen", "127.0.0.1:0", "--lifetime", str(int(bound))],
            base_env,
            r"FLOOR serving on (\S+)",
            workdir,
            START_TIMEOUT_SECONDS,
            cwd=REPO,
        )  # fmt: skip
        started.append(floor)
        print(f"ire serve on {ire.address}, floor on {floor.address}", flush=True)
        servers = {
            _report.IRE: (ire, dict(base_env, **{TOKEN_ENV: bench_home.token})),
            _report.FLOOR: (floor, base_env),
        }
        runs = measure(servers, args)
    finally:
        for server in reversed(started):
            stop(server.process)
    return runs, summarise(runs, args)


def write_results(args: argparse.Namespace, runs: list[Run], medians: Medians) -> Path:
    stamp = utc_stamp()
    document = {
        "benchmark": "serve",
        "timestamp": stamp,
        "argv": sys.argv,
        "settings": {k: getattr(args, k) for k in ("duration", "warmup", "concurrency", "rounds")},
        "environment": describe(REPO),
        "medians": {str(c): by_server for c, by_server in medians.items()},
        "ratios_ire_over_floor": {
            str(c): _report.ratios(by_server[_report.IRE], by_server[_report.FLOOR]) for c, by_server in medians.items()
        },
        "runs": runs,
    }
    return save_results("serve", document, stamp)


def _concurrencies(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"got {text!r}, expected positive integers separated by commas")
    return values


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per run, not measured (default 1)")
    p.add_argument("--concurrency", type=_concurrencies, default=[1, 16], help="comma-separated (default 1,16)")
    p.add_argument("--rounds", type=int, default=2, help="IRE/floor alternations per concurrency (default 2)")
    args = p.parse_args(argv)
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1:
        p.error("need --duration > 0, --warmup >= 0 and --rounds >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    exit_on_sigterm()
    workdir = Path(tempfile.mkdtemp(prefix="ire-bench-"))
    try:
        runs, medians = benchmark(args, workdir)
    except (BenchError, ServerStartError) as exc:
        print(f"bench.serve: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    path = write_results(args, runs, medians)
    print()
    print(_report.render(medians, args.rounds))
    banner = _report.error_banner(medians)
    if banner:
        print(banner, file=sys.stderr)
    print(f"\nresults: {path}")
    return EXIT_CALL_ERRORS if banner else 0


if __name__ == "__main__":
    sys.exit(main())
