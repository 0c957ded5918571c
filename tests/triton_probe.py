"""Drive an IRE server with the unmodified NVIDIA Triton client, in a process of its own.

Usage: python tests/triton_probe.py ADDRESS TOKEN INPUTS.npz OUT.json [--expired-token TOKEN]

tritonclient registers its own ``inference.*`` protobuf messages in the default descriptor
pool, which clashes with IRE's generated ``inference`` protos; so this script imports only
tritonclient, grpc, numpy and the standard library, never ``supervisor``, ``protos`` or
``sandbox``, and the tests run it as a subprocess.

INPUTS.npz holds ``mlp_input`` (FP32 [n, 64]) and ``tokens`` (INT64 [n, 4]). Every step is
recorded in OUT.json even when it fails: a step is ``{"ok": true, ...}`` or
``{"ok": false, "error": {...}}``; arrays are ``{"dtype", "shape", "data"}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60


def _array(value: np.ndarray) -> dict[str, Any]:
    return {"dtype": value.dtype.name, "shape": list(value.shape), "data": value.tolist()}


def _error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, InferenceServerException):
        return {"kind": "InferenceServerException", "status": exc.status(), "message": exc.message()}
    if isinstance(exc, grpc.RpcError):
        return {"kind": "RpcError", "status": str(exc.code()), "message": exc.details()}
    return {"kind": type(exc).__name__, "status": None, "message": "".join(traceback.format_exception(exc))}


def _step(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return {"ok": True, **fn()}
    except Exception as exc:
        return {"ok": False, "error": _error(exc)}


def _tensors(tensors: Any) -> list[dict[str, Any]]:
    return [{"name": t.name, "datatype": t.datatype, "shape": [int(d) for d in t.shape]} for t in tensors]


def _raw_infer(
    client: triton.InferenceServerClient,
    model: str,
    name: str,
    datatype: str,
    value: np.ndarray,
    outputs: list[str],
    headers: dict[str, str] | None,
) -> dict[str, Any]:
    """The ordinary tritonclient path: InferInput.set_data_from_numpy, which sends raw_input_contents."""
    infer_input = triton.InferInput(name, list(value.shape), datatype)
    infer_input.set_data_from_numpy(value)
    requested = [triton.InferRequestedOutput(o) for o in outputs]
    result = client.infer(model, [infer_input], outputs=requested, headers=headers, client_timeout=TIMEOUT_S)
    response = result.get_response()
    return {
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": {o: _array(result.as_numpy(o)) for o in outputs},
        "output_datatypes": {t.name: t.datatype for t in response.outputs},
    }


def _typed_infer(
    address: str, token: str, model: str, name: str, datatype: str, value: np.ndarray, field: str
) -> dict[str, Any]:
    """Typed contents, built with tritonclient's own generated messages and sent with its own stub.

    tritonclient's high-level InferInput always sends raw contents, so this is the only way to
    send e.g. ``contents.fp32_contents`` with the Triton client library.
    """
    request = service_pb2.ModelInferRequest(model_name=model)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=list(value.shape))
    getattr(tensor.contents, field).extend(value.ravel().tolist())
    with grpc.insecure_channel(address) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(request, metadata=(("authorization", f"Bearer {token}"),), timeout=TIMEOUT_S)
    # Decode the reply with tritonclient's own InferResult, as a Triton user would.
    result = triton.InferResult(response)
    return {
        "model_name": response.model_name,
        "outputs": {t.name: _array(result.as_numpy(t.name)) for t in response.outputs},
        "output_datatypes": {t.name: t.datatype for t in response.outputs},
        "raw_output_contents": len(response.raw_output_contents),
    }


def probe(address: str, token: str, inputs: dict[str, np.ndarray], expired_token: str | None = None) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"}
    x = np.ascontiguousarray(inputs["mlp_input"], dtype=np.float32)
    tokens = np.ascontiguousarray(inputs["tokens"], dtype=np.int64)
    client = triton.InferenceServerClient(url=address)
    results: dict[str, Any] = {"tritonclient_version": _version()}

    results["live"] = _step(lambda: {"value": bool(client.is_server_live(headers=headers, client_timeout=TIMEOUT_S))})
    results["ready"] = _step(lambda: {"value": bool(client.is_server_ready(headers=headers, client_timeout=TIMEOUT_S))})
    results["model_ready"] = _step(
        lambda: {"value": bool(client.is_model_ready("mlp", headers=headers, client_timeout=TIMEOUT_S))}
    )

    def metadata() -> dict[str, Any]:
        meta = client.get_model_metadata("mlp", headers=headers, client_timeout=TIMEOUT_S)
        return {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            "inputs": _tensors(meta.inputs),
            "outputs": _tensors(meta.outputs),
        }

    results["metadata_mlp"] = _step(metadata)
    results["mlp_raw"] = _step(lambda: _raw_infer(client, "mlp", "input", "FP32", x, ["output"], headers))
    results["mlp_typed"] = _step(lambda: _typed_infer(address, token, "mlp", "input", "FP32", x, "fp32_contents"))
    results["tokens_raw"] = _step(
        lambda: _raw_infer(client, "tokens", "tokens", "INT64", tokens, ["scores", "total"], headers)
    )
    results["tokens_typed"] = _step(
        lambda: _typed_infer(address, token, "tokens", "tokens", "INT64", tokens, "int64_contents")
    )
    # Refusals: tritonclient raises InferenceServerException carrying the gRPC status.
    results["mlp_no_token"] = _step(lambda: _raw_infer(client, "mlp", "input", "FP32", x, ["output"], None))
    results["mlp_garbage_token"] = _step(
        lambda: _raw_infer(client, "mlp", "input", "FP32", x, ["output"], {"authorization": "Bearer not.a.jwt"})
    )
    if expired_token is not None:
        results["mlp_expired_token"] = _step(
            lambda: _raw_infer(
                client, "mlp", "input", "FP32", x, ["output"], {"authorization": f"Bearer {expired_token}"}
            )
        )
    client.close()
    return results


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("tritonclient")
    except Exception:
        return "unknown"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address", help="host:port of the IRE gRPC server")
    parser.add_argument("token", help="a valid JWT for the tenant that owns mlp and tokens")
    parser.add_argument("inputs", help=".npz with mlp_input (FP32 [n, 64]) and tokens (INT64 [n, 4])")
    parser.add_argument("out", help="where to write the JSON results")
    parser.add_argument("--expired-token", help="a correctly signed but expired JWT, expected to be refused")
    args = parser.parse_args(argv[1:])
    with np.load(args.inputs) as data:
        inputs = {k: data[k] for k in data.files}
    results = probe(args.address, args.token, inputs, args.expired_token)
    # Prove the separation this script exists for: IRE's own modules were never loaded here.
    results["foreign_modules"] = sorted(
        m for m in sys.modules if m.split(".")[0] in ("supervisor", "protos", "sandbox")
    )
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(results, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
