"""Every benchmark of issue 10 in one run: IRE against MLServer 1.7.1 and the floor.

Scenarios, all with every IRE security layer on (JWT auth, Rego policy, quotas, sandboxed
workers, durable audit):

- the 64→256→256→10 MLP at batch 1, concurrency 1, 16 and 64: IRE as shipped (dynamic
  batching "auto", which merges the MLP's calls: its rows are proven independent), IRE with
  dynamic batching off (``workers.dynamic_batching = "off"``), MLServer, the floor, and the
  floor with its model in a child process (``floor-proc``: the cost of isolating the model,
  without IRE's security work);
- the large MLP (4.2 M parameters) at batch 32: the same five;
- many tenants round-robin under a cap on live workers (IRE alone: the peers have no tenants);
- worker cold start and idle worker memory (``bench.sandbox``);
- audit and policy micro-benchmarks (``bench.audit``, ``bench.policy``), and the
  supervisor's tensor path by tensor size (``bench.tensors``).

Servers alternate inside each round, and each figure is the median over rounds. The load
generator is its own process. The table compares the ratios with issue 10's targets; a PNG
of the latency distributions and a JSON of everything go to bench/results/.

    python -m bench.all [--quick] [--rounds N] [--duration S]

Exit status: 0 clean; 1 the benchmark could not run; 3 it ran but some calls failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import _report, mlserver_env
from bench._environment import describe
from bench._procs import ServerProcess, ServerStartError, exit_on_sigterm, start_server, stop
from bench._results import results_path, save_results, utc_stamp
from bench._setup import LARGE_HIDDEN, LARGE_MODEL, MODEL, BenchHome, make_bench_home
from bench._targets import render_targets, targets
from bench.loadgen import CALL_TIMEOUT_SECONDS, FIRST_CALL_TIMEOUT_SECONDS, TOKEN_ENV
from bench.serve import BenchError

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT_SECONDS = 120.0
EXIT_FAILED, EXIT_CALL_ERRORS = 1, 3
IRE, IRE_UNBATCHED, MLSERVER, FLOOR, FLOOR_PROC = "ire", "ire-unbatched", "mlserver", "floor", "floor-proc"
# The many-tenants scenario: more tenants than the cap, so workers are stopped and started.
MAX_WORKERS = 16
LARGE_BATCH = 32
LARGE_CONCURRENCY = 4
TENANTS_CONCURRENCY = 4


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    concurrency: int
    servers: tuple[str, ...]
    batch: int = 1
    width: int = 64
    tenants: bool = False


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    peers = tuple(
        s
        for s in (IRE, IRE_UNBATCHED, MLSERVER, FLOOR, FLOOR_PROC)
        if not (s == MLSERVER and args.no_mlserver) and not (s == IRE_UNBATCHED and args.no_unbatched)
    )
    found = [Scenario(f"mlp c{c}", MODEL, c, peers) for c in args.concurrency]
    found.append(Scenario(f"large b{LARGE_BATCH}", LARGE_MODEL, LARGE_CONCURRENCY, peers, LARGE_BATCH, LARGE_HIDDEN))
    if args.tenants:
        found.append(Scenario(f"{args.tenants} tenants", MODEL, TENANTS_CONCURRENCY, (IRE,), tenants=True))
    return found


class Servers:
    """IRE, the two floors (one model each) and MLServer, started once for the whole run."""

    def __init__(
        self, workdir: Path, bench_home: BenchHome, args: argparse.Namespace, unbatched_home: BenchHome | None = None
    ) -> None:
        self.workdir, self.bench_home, self.args = workdir, bench_home, args
        self.unbatched_home = unbatched_home
        self.base_env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME")}
        self.started: dict[str, ServerProcess] = {}
        self.tokens_file = workdir / "tenant-tokens"
        self.tokens_file.write_text("\n".join(bench_home.tenant_tokens) + "\n")

    def _start(self, name: str, argv: list[str], env: dict[str, str], pattern: str) -> None:
        self.started[name] = start_server(name, argv, env, pattern, self.workdir, START_TIMEOUT_SECONDS, cwd=REPO)

    def start(self) -> None:
        home = self.bench_home
        assert home.large_model_path is not None
        ire_env = dict(self.base_env, IRE_HOME=str(home.home.root), IRE_WORKERS__MAX_WORKERS=str(MAX_WORKERS))
        serve = [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"]
        self._start(IRE, serve, ire_env, r"IRE serving on (\S+)")
        if self.unbatched_home is not None:
            # Its own home: the same models and settings, and dynamic batching off.
            unbatched_env = dict(
                self.base_env, IRE_HOME=str(self.unbatched_home.home.root), IRE_WORKERS__DYNAMIC_BATCHING="off"
            )
            self._start(IRE_UNBATCHED, serve, unbatched_env, r"IRE serving on (\S+)")
        for key, path, model in ((MODEL, home.model_path, MODEL), (LARGE_MODEL, home.large_model_path, LARGE_MODEL)):
            for name, extra in ((FLOOR, []), (FLOOR_PROC, ["--worker-process"])):
                self._start(f"{name}-{key}",
                            [sys.executable, "-m", "bench.floor_server", "--model", str(path), "--name", model,
                             "--listen", "127.0.0.1:0", "--lifetime", "7200", *extra],
                            self.base_env, r"FLOOR serving on (\S+)")  # fmt: skip
        if not self.args.no_mlserver:
            python = mlserver_env.python()
            for key, path in ((MODEL, home.model_path), (LARGE_MODEL, home.large_model_path)):
                self._start(f"{MLSERVER}-{key}",
                            [str(python), str(REPO / "bench" / "mlserver_peer.py"), "--model", str(path),
                             "--name", key, "--dir", str(self.workdir / f"mlserver-{key}")],
                            self.base_env, r"MLSERVER serving on (\S+)")  # fmt: skip

    def stop(self) -> None:
        for server in reversed(list(self.started.values())):
            stop(server.process)

    def target(self, server: str, scenario: Scenario) -> tuple[ServerProcess, dict[str, str], list[str]]:
        """The process, the loadgen's environment and its extra arguments."""
        if server == IRE:
            extra = ["--tokens-file", str(self.tokens_file)] if scenario.tenants else []
            return self.started[IRE], dict(self.base_env, **{TOKEN_ENV: self.bench_home.token}), extra
        if server == IRE_UNBATCHED and self.unbatched_home is not None:
            return self.started[IRE_UNBATCHED], dict(self.base_env, **{TOKEN_ENV: self.unbatched_home.token}), []
        return self.started[f"{server}-{scenario.model}"], self.base_env, []


def run_loadgen(servers: Servers, server: str, scenario: Scenario, args: argparse.Namespace, samples: Path) -> Any:
    process, env, extra = servers.target(server, scenario)
    argv = [
        sys.executable, "-m", "bench.loadgen", "--json", "--target", process.address, "--model", scenario.model,
        "--concurrency", str(scenario.concurrency), "--warmup", str(args.warmup), "--duration", str(args.duration),
        "--batch", str(scenario.batch), "--width", str(scenario.width), "--samples", str(samples),
        "--cpu-pid", str(process.process.pid), *extra,
    ]  # fmt: skip
    first_calls = FIRST_CALL_TIMEOUT_SECONDS * (args.tenants if scenario.tenants else 1)
    bound = args.warmup + args.duration + first_calls + CALL_TIMEOUT_SECONDS + 30.0
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=REPO, timeout=bound)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"loadgen against {server} ({scenario.name}) ran past {exc.timeout:.0f} s") from exc
    if proc.returncode != 0:
        raise BenchError(f"loadgen against {server} ({scenario.name}) exited {proc.returncode}: {proc.stderr[-2000:]}")
    if process.process.poll() is not None:
        raise BenchError(f"{process.name} exited with status {process.process.returncode} during {scenario.name}")
    return json.loads(proc.stdout)


def measure(servers: Servers, args: argparse.Namespace) -> tuple[dict[str, dict[str, Any]], dict[str, Path]]:
    """Medians per scenario and server, and the last round's latency samples."""
    runs: dict[tuple[str, str], list[Any]] = {}
    samples: dict[str, Path] = {}
    for scenario in scenarios(args):
        for round_ in range(args.rounds):
            for server in scenario.servers:
                print(f"  {scenario.name:<12} {server:<8} round {round_ + 1}/{args.rounds} ...", flush=True)
                path = servers.workdir / f"samples-{scenario.name.replace(' ', '_')}-{server}"
                result = run_loadgen(servers, server, scenario, args, path)
                runs.setdefault((scenario.name, server), []).append(result)
                samples[f"{scenario.name} · {server}"] = path
    medians: dict[str, dict[str, Any]] = {}
    for (scenario_name, server), results in runs.items():
        medians.setdefault(scenario_name, {})[server] = _report.median_of_rounds(results)
    return medians, samples


def _run_json_tool(module: str, argv: list[str], timeout: float) -> dict[str, Any]:
    """Run one ``bench.<module>``; its results file (the "results: PATH" line) and its stdout."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv], capture_output=True, text=True, cwd=REPO, timeout=timeout
    )
    if proc.returncode != 0:
        return {"error": f"{module} exited {proc.returncode}: {proc.stderr[-1000:]}"}
    found = re.search(r"results: (\S+)", proc.stdout)
    data = json.loads(Path(found.group(1)).read_text()) if found else {}
    return {"stdout": proc.stdout, "data": data}


def micro(args: argparse.Namespace) -> dict[str, Any]:
    quick = args.quick
    print("  sandbox cold start and idle memory ...", flush=True)
    sandbox = _run_json_tool(
        "bench.sandbox",
        ["--starts", "8" if quick else "30", "--rounds", "1" if quick else "3", "--seconds", "1"],
        600,
    )
    print("  audit micro-benchmark ...", flush=True)
    audit = _run_json_tool(
        "bench.audit",
        ["--records", "20000", "--hot-path-calls", "5000", "--verify-records", "20000", "--rounds", "1"]
        if quick
        else [],
        600,
    )
    print("  policy micro-benchmark ...", flush=True)
    policy = _run_json_tool("bench.policy", ["--decisions", "2000" if quick else "20000", "--no-e2e"], 600)
    print("  tensor path micro-benchmark ...", flush=True)
    short = ["--budget", "0.1", "--rounds", "3"] if quick else []
    tensors = _run_json_tool("bench.tensors", ["--malloc", *short], 600)
    return {"sandbox": sandbox, "audit": audit, "policy": policy, "tensors": tensors}


def render(medians: dict[str, dict[str, Any]], rounds: int) -> str:
    lines = [
        f"Median of {rounds} round(s); every IRE security layer on; {IRE_UNBATCHED}: dynamic batching off.",
        "",
        "CPU µs/call: CPU time per call of the server with its worker processes (srv) and of the",
        "load generator (lg); the two cores are shared, so req/s follows their sum.",
        "",
        f"{'scenario':<13} {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'errors':>6}"
        f" {'srv µs':>7} {'lg µs':>6}",
    ]
    for scenario, by_server in medians.items():
        for server, m in by_server.items():
            lines.append(
                f"{scenario:<13} {server:<9} {m['throughput_rps']:>9.1f} {m['p50']:>8.3f} "
                f"{m['p90']:>8.3f} {m['p99']:>8.3f} {int(m['errors']):>6}"
                f" {m.get('cpu_server_us', float('nan')):>7.0f} {m.get('cpu_loadgen_us', float('nan')):>6.0f}"
            )
    lines += ["", f"{'scenario':<13} {'ratio':<20} {'req/s':>7} {'p50':>7} {'p99':>7}  req/s by round"]
    for scenario, by_server in medians.items():
        pairs = [(o, p) for o in (IRE, IRE_UNBATCHED) for p in (MLSERVER, FLOOR, FLOOR_PROC)]
        for ours, peer in [*pairs, (IRE, IRE_UNBATCHED), (FLOOR_PROC, FLOOR)]:
            if ours in by_server and peer in by_server:
                r = _report.ratios(by_server[ours], by_server[peer])
                name = f"{ours}/{peer}"
                by_round = " ".join(f"{x:.3f}" for x in _report.round_ratios(by_server[ours], by_server[peer]))
                figures = f"{r['throughput_rps']:>7.3f} {r['p50']:>7.3f} {r['p99']:>7.3f}"
                lines.append(f"{scenario:<13} {name:<20} {figures}  {by_round}")
    return "\n".join(lines)


def plot(samples: dict[str, Path], path: Path) -> Path | None:
    """Latency distributions (last round of each scenario and server) as one PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed (pip install -e '.[dev]'): no plot", file=sys.stderr)
        return None
    import numpy as np

    groups: dict[str, dict[str, Any]] = {}
    for label, sample_path in samples.items():
        scenario, server = label.split(" · ")
        if sample_path.exists():
            groups.setdefault(scenario, {})[server] = np.loadtxt(sample_path, ndmin=1)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 4), squeeze=False)
    for ax, (scenario, by_server) in zip(axes[0], groups.items(), strict=True):
        for server, values in by_server.items():
            if values.size:
                ordered = np.sort(values)
                ax.plot(ordered, np.linspace(0, 1, ordered.size), label=server)
        ax.set_xscale("log")
        ax.set_title(scenario)
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of calls")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.all", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short runs, one round: about 3 minutes")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 5; quick 2)")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run (default 1; quick 0.5)")
    p.add_argument("--rounds", type=int, help="alternations of the servers (default 3; quick 1)")
    p.add_argument("--concurrency", default="1,16,64", help="MLP concurrencies (default 1,16,64)")
    p.add_argument("--tenants", type=int, default=100, help="tenants for the round-robin scenario; 0 skips it")
    p.add_argument("--no-mlserver", action="store_true", help="leave MLServer out (no peer environment needed)")
    p.add_argument("--no-micro", action="store_true", help="skip cold start, audit, policy and tensors")
    p.add_argument("--no-unbatched", action="store_true", help="leave out IRE with dynamic batching off")
    args = p.parse_args(argv)
    args.duration = args.duration or (2.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if args.duration <= 0 or args.warmup < 0 or args.rounds < 1 or not args.concurrency or args.tenants < 0:
        p.error("need --duration > 0, --warmup >= 0, --rounds >= 1, --tenants >= 0 and a concurrency")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    exit_on_sigterm()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="ire-bench-all-"))
    stamp = utc_stamp()
    try:
        bench_home = make_bench_home(workdir / "bench", 7200, large=True, tenants=args.tenants)
        unbatched = None if args.no_unbatched else make_bench_home(workdir / "bench-unbatched", 7200, large=True)
        servers = Servers(workdir, bench_home, args, unbatched)
        try:
            servers.start()
            print("servers: " + ", ".join(f"{n} {s.address}" for n, s in servers.started.items()), flush=True)
            medians, samples = measure(servers, args)
        finally:
            servers.stop()
        extra = {} if args.no_micro else micro(args)
        png = plot(samples, results_path("all", stamp, ".png"))
    except (BenchError, ServerStartError, subprocess.CalledProcessError) as exc:
        print(f"bench.all: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    found = targets(medians, extra)
    found_unbatched = [] if args.no_unbatched else targets(medians, extra, ire=IRE_UNBATCHED)
    document = {
        "benchmark": "all",
        "timestamp": stamp,
        "argv": sys.argv,
        "settings": {
            k: getattr(args, k)
            for k in ("quick", "duration", "warmup", "rounds", "concurrency", "tenants", "no_unbatched")
        },
        "environment": describe(REPO),
        "medians": medians,
        "targets": found,
        "targets_without_batching": found_unbatched,
        "micro": {k: v.get("data", v) for k, v in extra.items()},
        "elapsed_s": time.monotonic() - started,
    }
    path = save_results("all", document, stamp)
    print()
    print(render(medians, args.rounds))
    for name, result in extra.items():
        print(f"\n--- {name} ---\n{result.get('stdout', result.get('error', '')).strip()}")
    print()
    print(render_targets(found))
    if found_unbatched:
        print(f"\nthe same targets for {IRE_UNBATCHED} (dynamic batching off):")
        print(render_targets(found_unbatched))
    bad = [f"  {s} · {v}: {m['errors']} failed call(s) {m['error_codes']}"
           for s, by in medians.items() for v, m in by.items() if m["errors"]]  # fmt: skip
    if bad:
        print("\n".join(["!" * 72, "ERRORS DURING THE BENCHMARK: these figures are not comparable.", *bad, "!" * 72]),
              file=sys.stderr)  # fmt: skip
    print(f"\nresults: {path}" + (f"\nplot: {png}" if png else ""))
    print(f"elapsed: {time.monotonic() - started:.0f} s")
    return EXIT_CALL_ERRORS if bad else 0


if __name__ == "__main__":
    sys.exit(main())
