"""Closed-loop load generator for one OIP ModelInfer target, run as its own process.

``concurrency`` asyncio workers share one grpc.aio channel and each keeps one request
(batch 1 of the MLP unless ``--batch``/``--width`` say otherwise) in flight. With
``--tokens-file`` (one bearer token a line) calls go round-robin over the tokens: one
tenant each in the many-tenants scenario. ``--samples`` writes the measured latencies
(ms, one a line) for the plot. With ``--cpu-pid`` it also reports the CPU each call cost
the server (that process and its children) and this load generator. Calls completing
during the warm-up are discarded; calls completing during the measured window give
throughput and latency percentiles. It stops by itself after warm-up + duration (plus
one call timeout for calls still in flight).

    python -m bench.loadgen --target 127.0.0.1:8001 --concurrency 16 --duration 5 --json

The bearer token comes from ``--token`` or, so that it stays out of ``ps``, $IRE_BENCH_TOKEN.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import grpc
import numpy as np
import psutil

from bench._address import require_loopback
from bench._cpu import CpuSample, sample
from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.client import build_request

TOKEN_ENV = "IRE_BENCH_TOKEN"
# The first call may start an IRE worker and load the model; later calls get CALL_TIMEOUT.
FIRST_CALL_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 10.0
INPUT_WIDTH = 64


@dataclass
class Window:
    """Monotonic times: calls ending in [measure_from, end) count; none start after end."""

    measure_from: float
    end: float
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class LoadResult:
    target: str
    model: str
    concurrency: int
    warmup_s: float
    duration_s: float
    requests: int
    errors: dict[str, int]
    error_count: int
    throughput_rps: float
    latency_ms: dict[str, float]
    # Microseconds of CPU per measured call: "server" and "loadgen" (with --cpu-pid only).
    cpu_us_per_call: dict[str, float] = field(default_factory=dict)


Metadata = tuple[tuple[str, str], ...]


def make_request(model: str, seed: int = 0, batch: int = 1, width: int = INPUT_WIDTH) -> oip.ModelInferRequest:
    x = np.random.default_rng(seed).standard_normal((batch, width)).astype(np.float32)
    return build_request(model, {"input": x}, {"input": "FP32"})


class RoundRobin:
    """The metadata of the next call: one token after another, shared by every worker."""

    def __init__(self, tokens: list[str]) -> None:
        self._metadata: list[Metadata] = [(("authorization", f"Bearer {t}"),) for t in tokens] or [()]
        self._next = 0

    def __call__(self) -> Metadata:
        metadata = self._metadata[self._next]
        self._next = (self._next + 1) % len(self._metadata)
        return metadata


async def _worker(
    stub: oip_grpc.GRPCInferenceServiceStub,
    request: oip.ModelInferRequest,
    metadata: RoundRobin,
    window: Window,
) -> None:
    while time.perf_counter() < window.end:
        start = time.perf_counter()
        code = ""
        try:
            await stub.ModelInfer(request, metadata=metadata(), timeout=CALL_TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
        done = time.perf_counter()
        if not window.measure_from <= done < window.end:
            continue
        if code:
            window.errors[code] += 1
        else:
            window.latencies.append(done - start)


async def _check_first_call(
    stub: oip_grpc.GRPCInferenceServiceStub, request: oip.ModelInferRequest, metadata: Metadata, batch: int
) -> None:
    """One call before timing: the target must answer with one output of ``batch`` rows."""
    response = await stub.ModelInfer(request, metadata=metadata, timeout=FIRST_CALL_TIMEOUT_SECONDS)
    shapes = [list(t.shape) for t in response.outputs]
    if len(shapes) != 1 or not shapes[0] or shapes[0][0] != batch:
        raise RuntimeError(f"got output shapes {shapes}, expected one output of {batch} row(s)")


async def _sample_cpu(server_pid: int, window: Window) -> tuple[CpuSample, CpuSample]:
    """CPU samples taken when the measured window opens and when it closes."""
    await asyncio.sleep(max(0.0, window.measure_from - time.perf_counter()))
    first = sample(server_pid)
    await asyncio.sleep(max(0.0, window.end - time.perf_counter()))
    return first, sample(server_pid)


async def run_load(
    target: str,
    tokens: list[str],
    model: str,
    concurrency: int,
    warmup: float,
    duration: float,
    batch: int = 1,
    width: int = INPUT_WIDTH,
    cpu_pid: int | None = None,
) -> tuple[LoadResult, list[float]]:
    """The summary, and the measured latencies in milliseconds."""
    request = make_request(model, batch=batch, width=width)
    metadata = RoundRobin(tokens)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        for _ in range(len(tokens) or 1):  # every tenant's worker is up before the clock starts
            await _check_first_call(stub, request, metadata(), batch)
        now = time.perf_counter()
        window = Window(measure_from=now + warmup, end=now + warmup + duration)
        cpu = asyncio.create_task(_sample_cpu(cpu_pid, window)) if cpu_pid is not None else None
        await asyncio.gather(*(_worker(stub, request, metadata, window) for _ in range(concurrency)))
        samples = await cpu if cpu is not None else None
    result = _summarise(target, model, concurrency, warmup, duration, window)
    if samples is not None:
        result = replace(result, cpu_us_per_call=samples[0].per_call_us(samples[1], result.requests))
    return result, [1000.0 * v for v in window.latencies]


def _summarise(target: str, model: str, concurrency: int, warmup: float, duration: float, window: Window) -> LoadResult:
    ms = np.asarray(window.latencies) * 1000.0
    if ms.size:
        p50, p90, p99 = (float(v) for v in np.percentile(ms, [50, 90, 99]))
        latency = {"p50": p50, "p90": p90, "p99": p99, "mean": float(ms.mean()), "max": float(ms.max())}
    else:
        latency = {key: float("nan") for key in ("p50", "p90", "p99", "mean", "max")}
    return LoadResult(
        target=target,
        model=model,
        concurrency=concurrency,
        warmup_s=warmup,
        duration_s=duration,
        requests=int(ms.size),
        errors=dict(window.errors),
        error_count=sum(window.errors.values()),
        throughput_rps=ms.size / duration,
        latency_ms=latency,
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.loadgen", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="loopback HOST:PORT of an OIP v2 gRPC server")
    p.add_argument("--token", help=f"bearer token (default: ${TOKEN_ENV}; none if unset)")
    p.add_argument("--model", default="mlp")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds excluded from the statistics")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds")
    p.add_argument("--batch", type=int, default=1, help="rows per request (default 1)")
    p.add_argument("--width", type=int, default=INPUT_WIDTH, help=f"input columns (default {INPUT_WIDTH})")
    p.add_argument("--tokens-file", help="one bearer token a line, used round-robin (overrides --token)")
    p.add_argument("--samples", help="write the measured latencies (ms, one a line) to this file")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.add_argument("--cpu-pid", type=int, help="also report CPU per call of this server process and its children")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.warmup < 0 or args.duration <= 0 or args.batch < 1 or args.width < 1:
        p.error("need --concurrency, --batch, --width >= 1, --warmup >= 0 and --duration > 0")
    try:
        require_loopback(args.target)
    except ValueError as exc:
        p.error(str(exc))
    if args.cpu_pid is not None and not psutil.pid_exists(args.cpu_pid):
        p.error(f"--cpu-pid {args.cpu_pid}: no such process")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    if args.tokens_file:
        with open(args.tokens_file) as f:
            tokens = [line.strip() for line in f if line.strip()]
    else:
        token = args.token or os.environ.get(TOKEN_ENV)
        tokens = [token] if token else []
    # The hard bound: warm-up + duration, the first calls' allowance, one call timeout to drain.
    bound = args.warmup + args.duration + FIRST_CALL_TIMEOUT_SECONDS * max(1, len(tokens)) + CALL_TIMEOUT_SECONDS
    coro = run_load(
        args.target,
        tokens,
        args.model,
        args.concurrency,
        args.warmup,
        args.duration,
        args.batch,
        args.width,
        args.cpu_pid,
    )
    try:
        result, samples = asyncio.run(asyncio.wait_for(coro, bound))
    except (grpc.aio.AioRpcError, RuntimeError, TimeoutError) as exc:
        detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
        print(f"loadgen: {args.target} failed before or during the run: {detail}", file=sys.stderr)
        return 1
    if args.samples:
        with open(args.samples, "w") as f:
            f.write("".join(f"{v:.4f}\n" for v in samples))
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        lat = result.latency_ms
        print(
            f"{result.target} c={result.concurrency}: {result.throughput_rps:.1f} req/s, "
            f"p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms, "
            f"{result.requests} ok, errors {result.errors or 0}"
        )
        if cpu := result.cpu_us_per_call:
            print(f"CPU per call: server {cpu['server']:.0f} µs, loadgen {cpu['loadgen']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
