"""Closed-loop load generator for one OIP ModelInfer target, run as its own process.

``concurrency`` asyncio workers share one grpc.aio channel and each keeps one batch-1
request of the MLP in flight. Calls completing during the warm-up are discarded; calls
completing during the measured window give throughput and latency percentiles. It stops
by itself after warm-up + duration (plus one call timeout for calls still in flight).

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
from dataclasses import asdict, dataclass, field

import grpc
import numpy as np

from bench._address import require_loopback
from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.client import build_request

TOKEN_ENV = "IRE_BENCH_TOKEN"
# The first call may start an IRE worker and load the model; later calls get CALL_TIMEOUT.
FIRST_CALL_TIMEOUT_SECONDS = 60.0
CALL_TIMEOUT_SECONDS = 10.0
INPUT_WIDTH = 64
OUTPUT_SHAPE = [1, 10]


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


def make_request(model: str, seed: int = 0) -> oip.ModelInferRequest:
    x = np.random.default_rng(seed).standard_normal((1, INPUT_WIDTH)).astype(np.float32)
    return build_request(model, {"input": x}, {"input": "FP32"})


async def _worker(
    stub: oip_grpc.GRPCInferenceServiceStub,
    request: oip.ModelInferRequest,
    metadata: tuple[tuple[str, str], ...],
    window: Window,
) -> None:
    while time.perf_counter() < window.end:
        start = time.perf_counter()
        code = ""
        try:
            await stub.ModelInfer(request, metadata=metadata, timeout=CALL_TIMEOUT_SECONDS)
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
    stub: oip_grpc.GRPCInferenceServiceStub, request: oip.ModelInferRequest, metadata: tuple[tuple[str, str], ...]
) -> None:
    """One call before timing: the target must answer with the MLP's [1, 10] output."""
    response = await stub.ModelInfer(request, metadata=metadata, timeout=FIRST_CALL_TIMEOUT_SECONDS)
    shapes = [list(t.shape) for t in response.outputs]
    if shapes != [OUTPUT_SHAPE]:
        raise RuntimeError(f"got output shapes {shapes}, expected [{OUTPUT_SHAPE}]")


async def run_load(
    target: str, token: str | None, model: str, concurrency: int, warmup: float, duration: float
) -> LoadResult:
    request = make_request(model)
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(target) as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        await _check_first_call(stub, request, metadata)
        now = time.perf_counter()
        window = Window(measure_from=now + warmup, end=now + warmup + duration)
        await asyncio.gather(*(_worker(stub, request, metadata, window) for _ in range(concurrency)))
    return _summarise(target, model, concurrency, warmup, duration, window)


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
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.warmup < 0 or args.duration <= 0:
        p.error("need --concurrency >= 1, --warmup >= 0 and --duration > 0")
    try:
        require_loopback(args.target)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV)
    # The hard bound: warm-up + duration, the first call's allowance, one call timeout to drain.
    bound = args.warmup + args.duration + FIRST_CALL_TIMEOUT_SECONDS + CALL_TIMEOUT_SECONDS
    coro = run_load(args.target, token, args.model, args.concurrency, args.warmup, args.duration)
    try:
        result = asyncio.run(asyncio.wait_for(coro, bound))
    except (grpc.aio.AioRpcError, RuntimeError, TimeoutError) as exc:
        detail = f"{exc.code().name}: {exc.details()}" if isinstance(exc, grpc.aio.AioRpcError) else repr(exc)
        print(f"loadgen: {args.target} failed before or during the run: {detail}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(asdict(result)))
    else:
        lat = result.latency_ms
        print(
            f"{result.target} c={result.concurrency}: {result.throughput_rps:.1f} req/s, "
            f"p50 {lat['p50']:.3f} ms, p90 {lat['p90']:.3f} ms, p99 {lat['p99']:.3f} ms, "
            f"{result.requests} ok, errors {result.errors or 0}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
