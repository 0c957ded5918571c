"""Worker sandbox costs: cold start through every layer, and inference throughput confined
against the same worker unconfined, measured in the same run (`python -m bench.sandbox`).

- cold start: from the spawn request to the launcher, through cgroups, namespaces, mounts,
  privilege drop, rlimits, Landlock and seccomp, to the worker's reply that the MLP is
  loaded. The reference is a plain ``python3 -c pass`` start, timed in the same run.
- throughput: sequential batch-1 MLP calls over the worker's framed socket (the
  supervisor's own WorkerConnection), a confined worker (strict seccomp active after the
  first call) alternating with an unconfined one, rounds interleaved; median of rounds.

Needs root (as `ire serve` does). Results go to bench/results/sandbox-<UTC>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._environment import describe
from bench._results import save_results
from protos import worker_pb2 as pb
from sandbox.profile import profile_for
from supervisor.modelgraph.build import build_mlp
from supervisor.settings import SandboxSettings
from supervisor.workers.connection import WorkerConnection
from supervisor.workers.launcher import LauncherClient

REPO = Path(__file__).resolve().parent.parent
MODEL = build_mlp()
KEY = "mlp"


def unique_memory_mb(pid: int) -> float:
    """The process's USS: private clean + private dirty pages, in MB (10^6 bytes)."""
    kb = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                kb += int(line.split()[1])
    return kb * 1024 / 1e6


def _python_start(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(["/usr/bin/python3", "-c", "pass"], check=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


class Bench:
    def __init__(self, launcher: LauncherClient) -> None:
        self.launcher = launcher
        self.exits: dict[int, asyncio.Future[int]] = {}
        self.uid = SandboxSettings().uid_base + 1

    def on_exit(self, pid: int, code: int, _oom: bool) -> None:
        future = self.exits.get(pid)
        if future is not None and not future.done():
            future.set_result(code)

    async def start(self, confined: bool) -> tuple[WorkerConnection, float]:
        """A worker with the MLP loaded, and the milliseconds that took."""
        start = time.perf_counter()
        pid, sock = await self.launcher.spawn(
            "bench",
            "w",
            1,
            30,
            uid=self.uid if confined else 0,
            profile=profile_for("standard") if confined else None,
            unsafe_no_sandbox=not confined,
        )
        self.exits[pid] = asyncio.get_running_loop().create_future()
        conn = await WorkerConnection.open(pid, sock, 1 << 26, 30)
        reply = await conn.request(pb.ToWorker(load=pb.LoadModel(model_key=KEY, onnx=MODEL)), 30)
        assert reply.WhichOneof("body") == "loaded", reply
        return conn, (time.perf_counter() - start) * 1000

    async def stop(self, conn: WorkerConnection) -> None:
        conn.close()
        self.launcher.stop(conn.pid)
        await asyncio.wait_for(self.exits[conn.pid], 10)
        del self.exits[conn.pid]

    @staticmethod
    async def throughput(conn: WorkerConnection, seconds: float) -> float:
        x = np.ones((1, 64), np.float32)
        request = pb.InferRequest(
            model_key=KEY,
            inputs=[pb.Tensor(name="input", datatype="FP32", shape=[1, 64], data=x.tobytes())],
            outputs=["output"],
        )
        done, deadline = 0, time.perf_counter() + seconds
        start = time.perf_counter()
        while time.perf_counter() < deadline:
            reply = await conn.request(pb.ToWorker(infer=request), 10)
            assert reply.WhichOneof("body") == "result", reply
            done += 1
        return done / (time.perf_counter() - start)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    launcher = LauncherClient.start(cgroup_parent="ire-bench")
    if launcher.ready.unavailable:
        launcher.close()
        raise SystemExit(f"workers cannot be confined here: {list(launcher.ready.unavailable)}")
    bench = Bench(launcher)
    launcher.attach(asyncio.get_running_loop(), bench.on_exit)
    try:
        cold: dict[str, list[float]] = {"confined": [], "unconfined": []}
        for _ in range(args.starts):
            for mode in ("confined", "unconfined"):
                conn, ms = await bench.start(mode == "confined")
                cold[mode].append(ms)
                await bench.stop(conn)
                await asyncio.sleep(args.gap)  # spawns are not back to back in service
        python = _python_start(args.starts)
        workers = {mode: (await bench.start(mode == "confined"))[0] for mode in ("confined", "unconfined")}
        rps: dict[str, list[float]] = {"confined": [], "unconfined": []}
        for conn in workers.values():
            await bench.throughput(conn, 0.5)  # warm-up; the confined worker loads strict seccomp here
        for _ in range(args.rounds):
            for mode, conn in workers.items():
                rps[mode].append(await bench.throughput(conn, args.seconds))
        # Idle: the MLP loaded, warm after the rounds, no call in flight.
        uss = {mode: unique_memory_mb(conn.pid) for mode, conn in workers.items()}
        for conn in workers.values():
            await bench.stop(conn)
    finally:
        launcher.close()
    return {"cold_start_ms": cold, "python_c_pass_ms": python, "throughput_rps": rps, "idle_uss_mb": uss}


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=30, help="cold starts per mode")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between cold starts")
    parser.add_argument("--rounds", type=int, default=5, help="throughput rounds per mode")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per throughput round")
    args = parser.parse_args(argv)
    raw = asyncio.run(run(args))
    cold, python, rps = raw["cold_start_ms"], raw["python_c_pass_ms"], raw["throughput_rps"]
    print("| start | p50 ms | p90 ms | max ms |")
    print("| --- | --- | --- | --- |")
    for name, values in (("worker, confined", cold["confined"]), ("worker, unconfined", cold["unconfined"])):
        print(f"| {name} | {_p(values, 50):.1f} | {_p(values, 90):.1f} | {max(values):.1f} |")
    print(f"| python3 -c pass | {_p(python, 50):.1f} | {_p(python, 90):.1f} | {max(python):.1f} |")
    confined, unconfined = statistics.median(rps["confined"]), statistics.median(rps["unconfined"])
    print("\n| worker | req/s (median of rounds) |")
    print("| --- | --- |")
    print(f"| confined | {confined:.0f} |\n| unconfined | {unconfined:.0f} |")
    print(f"\nconfined / unconfined throughput: {confined / unconfined:.3f}")
    uss = raw["idle_uss_mb"]
    print(f"idle worker USS (MLP loaded): confined {uss['confined']:.1f} MB, unconfined {uss['unconfined']:.1f} MB")
    path = save_results("sandbox", {"args": vars(args), "environment": describe(REPO), **raw})
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
