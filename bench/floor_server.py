"""The floor for Python gRPC: a minimal grpc.aio server running the MLP in its own process.

It implements only ServerLive and ModelInfer of the OIP v2 service, with no auth, policy,
audit or worker processes; ONNX Runtime runs on the event loop thread with the session
options IRE's workers use. Whatever ``ire serve`` costs above this is IRE's own overhead.

    python -m bench.floor_server --model model.onnx --listen 127.0.0.1:0
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

import grpc
import numpy as np
import onnxruntime as ort

from bench._address import require_loopback
from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc

# The floor outlives its parent by at most this long if nobody sends SIGTERM.
DEFAULT_LIFETIME_SECONDS = 1800.0
STOP_GRACE_SECONDS = 1.0


def load_session(path: str) -> ort.InferenceSession:
    """One CPU session with IRE's worker options: one intra-op and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class FloorServicer(oip_grpc.GRPCInferenceServiceServicer):
    """ModelInfer for FP32 raw contents in and out; every other RPC is UNIMPLEMENTED."""

    def __init__(self, session: ort.InferenceSession, model_name: str) -> None:
        self._session = session
        self._model_name = model_name
        self._output_names = [o.name for o in session.get_outputs()]

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelInferResponse:
        if request.model_name != self._model_name:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"got model {request.model_name!r}, expected {self._model_name!r}"
            )
        feeds = {}
        for tensor, raw in zip(request.inputs, request.raw_input_contents, strict=True):
            if tensor.datatype != "FP32":
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT, f"got datatype {tensor.datatype!r}, expected 'FP32'"
                )
            feeds[tensor.name] = np.frombuffer(raw, dtype=np.float32).reshape(tuple(tensor.shape))
        arrays = self._session.run(self._output_names, feeds)
        response = oip.ModelInferResponse(model_name=self._model_name, id=request.id)
        for name, array in zip(self._output_names, arrays, strict=True):
            response.outputs.add(name=name, datatype="FP32", shape=array.shape)
            response.raw_output_contents.append(np.ascontiguousarray(array, dtype=np.float32).tobytes())
        return response


async def serve(model: str, model_name: str, listen: str, lifetime: float) -> None:
    server = grpc.aio.server()
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(FloorServicer(load_session(model), model_name), server)
    port = server.add_insecure_port(listen)
    await server.start()
    print(f"FLOOR serving on {listen.rsplit(':', 1)[0]}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await asyncio.wait_for(stop.wait(), lifetime)
    except TimeoutError:
        print(f"floor: lifetime of {lifetime:.0f} s is over, stopping", file=sys.stderr)
    await server.stop(STOP_GRACE_SECONDS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.floor_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="path of the .onnx file")
    p.add_argument("--name", default="mlp", help="model name requests must carry")
    p.add_argument("--listen", default="127.0.0.1:0", help="loopback HOST:PORT; port 0 picks a free one")
    p.add_argument("--lifetime", type=float, default=DEFAULT_LIFETIME_SECONDS, help="seconds before it stops itself")
    args = p.parse_args(argv)
    try:
        require_loopback(args.listen)
    except ValueError as exc:
        p.error(str(exc))
    asyncio.run(serve(args.model, args.name, args.listen, args.lifetime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
