"""The supervisor's tensor path for one call, by tensor size: ``python -m bench.tensors``.

For one FP32 input and one output of the same size it times what the event-loop thread
does with the tensors of a prediction: check the request and digest its input, build the
worker's message and serialise it, parse the worker's reply, check it, digest it and build
the client's response (and serialise that, as gRPC does). The baseline, in the same
process, is what no version of that path can skip: a sha256 pass over the input and one
over the output, for the audit record.

``--malloc`` runs the same measurement again in a child process with glibc's malloc told
to keep large blocks on its heap (``MALLOC_MMAP_THRESHOLD_`` 32 MiB, the largest glibc
takes, and ``MALLOC_TRIM_THRESHOLD_`` 128 MiB): by default large blocks are fresh
mappings, or heap given back and taken again, whose pages fault on first touch, once per
copy. It is an operator's
choice (docs/operations.md), not a default: freed memory then stays with the process.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench._environment import describe
from bench._results import save_results
from protos import worker_pb2 as pb
from protos.inference import grpc_predict_v2_pb2 as oip
from sandbox.framing import encode_frame
from supervisor.modelgraph import TensorSpec
from supervisor.tensors import checked_response, decode_request

REPO = Path(__file__).resolve().parent.parent
SIZES = (256, 128 * 1024, 8 * 1024 * 1024)
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}
LIMIT = 1 << 30


def _per_call(fn: Callable[[], object], budget: float, rounds: int) -> float:
    """Median over ``rounds`` of the mean seconds per call, each round about ``budget`` s."""
    start = time.perf_counter()
    fn()
    once = max(time.perf_counter() - start, 1e-7)
    calls = max(1, int(budget / once))
    means = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls)
    return statistics.median(means)


def measure(size: int, budget: float, rounds: int) -> dict[str, float]:
    width = size // 4
    spec_in = [TensorSpec("x", "FP32", (-1, width))]
    spec_out = [TensorSpec("y", "FP32", (-1, width))]
    request = oip.ModelInferRequest(model_name="m")
    request.inputs.add(name="x", datatype="FP32", shape=[1, width])
    request.raw_input_contents.append(np.ones(width, np.float32).tobytes())
    request_size = request.ByteSize()
    reply = pb.FromWorker(id=1)
    reply.result.outputs.add(name="y", datatype="FP32", shape=[1, width], data=np.ones(width, np.float32).tobytes())
    wire = encode_frame(reply.SerializeToString())
    data = request.raw_input_contents[0]

    def path() -> bytes:
        decoded = decode_request(
            request, spec_in, spec_out, max_request_bytes=LIMIT, max_tensor_elements=LIMIT, size=request_size
        )
        message = decoded.message
        message.infer.model_key = "0" * 64
        message.id = 1
        encode_frame(message.SerializeToString())
        result = pb.FromWorker.FromString(bytes(memoryview(wire)[4:])).result
        response, _ = checked_response(request, "1", result, decoded.outputs, spec_out, max_tensor_elements=LIMIT)
        return response.SerializeToString()

    def digests() -> str:
        return hashlib.sha256(data).hexdigest() + hashlib.sha256(data).hexdigest()

    return {"path_us": _per_call(path, budget, rounds) * 1e6, "digests_us": _per_call(digests, budget, rounds) * 1e6}


def run(budget: float, rounds: int) -> dict[str, dict[str, float]]:
    return {str(size): measure(size, budget, rounds) for size in SIZES}


def _table(title: str, results: dict[str, dict[str, float]]) -> str:
    lines = [title, f"{'tensor bytes':>14} {'path µs':>10} {'2 sha256 µs':>12} {'path / sha256':>14}"]
    for size, row in results.items():
        ratio = row["path_us"] / row["digests_us"]
        lines.append(f"{int(size):>14,} {row['path_us']:>10,.1f} {row['digests_us']:>12,.1f} {ratio:>14.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per round per size (default 0.3)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--malloc", action="store_true", help="also measure with glibc malloc tuned for large blocks")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the child of --malloc
    args = parser.parse_args(argv)
    results = run(args.budget, args.rounds)
    if args.json:
        print(json.dumps(results))
        return 0
    print(_table("default malloc", results))
    document: dict[str, object] = {
        "benchmark": "tensors",
        "settings": {"budget": args.budget, "rounds": args.rounds, "malloc": args.malloc},
        "environment": describe(REPO),
        "default": results,
    }
    if args.malloc:
        command = [sys.executable, "-m", "bench.tensors", "--json", "--budget", str(args.budget)]
        child = subprocess.run(
            [*command, "--rounds", str(args.rounds)],
            env={**os.environ, **MALLOC_ENV},
            capture_output=True,
            text=True,
            check=True,
        )
        tuned = json.loads(child.stdout)
        document["malloc_tuned"] = {"env": MALLOC_ENV, "results": tuned}
        print()
        print(_table(f"malloc tuned ({', '.join(f'{k}={v}' for k, v in MALLOC_ENV.items())})", tuned))
        print()
        for size in results:
            gain = results[size]["path_us"] / tuned[size]["path_us"]
            print(f"{int(size):>14,} bytes: default / tuned path time {gain:.2f}")
    print(f"\nresults: {save_results('tensors', document)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
