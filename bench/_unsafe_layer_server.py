"""`ire serve` with named layers of the prediction path switched off: for bench.layers only.

Never a way to run IRE. It exists so that one benchmark can show what each layer costs
inside the real server, under load, rather than timed alone. It listens on loopback
only and says on stderr, at start, which layers it has switched off.

    python -m bench._unsafe_layer_server --without audit --without policy
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

LAYERS = ("audit", "policy", "quota", "metrics", "all")


def _replace(cls: type, name: str, value: Any) -> None:
    """Set ``cls.name``, which must exist: a renamed method must not leave a layer on unnoticed."""
    if not callable(getattr(cls, name, None)):
        raise SystemExit(f"bench._unsafe_layer_server: {cls.__qualname__}.{name} is gone; update this file")
    setattr(cls, name, value)


def _without_audit() -> None:
    from supervisor.audit.writer import AuditWriter

    # Calls append through append_many (supervisor/audit/turn.py); append is built on it.
    _replace(AuditWriter, "append_many", lambda self, records: [None] * len(records))


def _without_policy() -> None:
    from supervisor.service import InferenceService

    async def allow(self: Any, *args: Any) -> None:
        return None

    _replace(InferenceService, "_authorize", allow)


def _without_quota() -> None:
    from supervisor.quota.admission import Quotas

    async def admit(self: Any, tenant: str, request_bytes: int, batch: int) -> None:
        return None  # Quotas.release accepts None: the unsafe fail-open path

    _replace(Quotas, "admit", admit)


def _without_metrics() -> None:
    from supervisor.transport.calls import CallRunner

    original = CallRunner.__init__

    def init(self: CallRunner, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self._metrics = None

    _replace(CallRunner, "__init__", init)


def _without_all() -> None:
    """ModelInfer is the worker round trip alone: no token, policy, quota, checks or audit."""
    from protos import worker_pb2 as pb
    from supervisor.tensors import encode_response
    from supervisor.transport.grpc_inference import InferenceServicer

    found: dict[str, Any] = {}

    async def model_infer(self: Any, request: Any, context: Any) -> Any:
        service = self._service
        if not found:
            tenant = service._registry.list_tenants()[0].name
            found.update(tenant=tenant, model=service._registry.list_models(tenant)[0])
        model = found["model"]
        tensor = request.inputs[0]
        forwarded = pb.Tensor(
            name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape), data=request.raw_input_contents[0]
        )
        message = pb.ToWorker(
            infer=pb.InferRequest(model_key=model.sha256, inputs=[forwarded], outputs=[model.outputs[0].name])
        )
        result = await service._pool.infer(found["tenant"], model.sha256, lambda: service._load_bytes(model), message)
        return encode_response(request, model.version, result)

    _replace(InferenceServicer, "ModelInfer", model_infer)


PATCHES: dict[str, Callable[[], None]] = {
    "audit": _without_audit,
    "policy": _without_policy,
    "quota": _without_quota,
    "metrics": _without_metrics,
    "all": _without_all,
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench._unsafe_layer_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--without", action="append", choices=LAYERS, default=[], help="a layer to switch off")
    args = p.parse_args(argv)
    for layer in args.without:
        PATCHES[layer]()
    off = ", ".join(args.without) or "none"
    print(f"UNSAFE bench._unsafe_layer_server, for benchmarks only: layers switched off: {off}", file=sys.stderr)
    from supervisor.cli import main as ire

    return ire(["serve", "--listen", "127.0.0.1:0"])


if __name__ == "__main__":
    sys.exit(main())
