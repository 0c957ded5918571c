"""The floor for Python gRPC: a minimal grpc.aio server running the MLP in its own process.

It implements only ServerLive and ModelInfer of the OIP v2 service, with no auth, policy,
audit or sandbox; ONNX Runtime runs on the event loop thread with the session options
IRE's workers use. Whatever ``ire serve`` costs above this is IRE's own overhead.

With ``--worker-process`` ONNX Runtime runs instead in one plain child process, reached
over a Unix socket with pipelined, id-tagged frames, as IRE reaches its workers: the floor
of a design that isolates the model in another process, so that a run shows how much of
IRE's cost is the isolation and how much the per-call security work.

    python -m bench.floor_server --model model.onnx --listen 127.0.0.1:0 [--worker-process]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
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
# A frame to or from the model process: payload bytes, call id, rows; then FP32 rows.
FRAME = struct.Struct("<IQI")


def load_session(path: str) -> ort.InferenceSession:
    """One CPU session with IRE's worker options: one intra-op and one inter-op thread."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])


class _Floor(oip_grpc.GRPCInferenceServiceServicer):
    """What both floors share: ServerLive, and one model name."""

    def __init__(self, model_name: str) -> None:
        self._model_name = model_name

    async def ServerLive(
        self, request: oip.ServerLiveRequest, context: grpc.aio.ServicerContext
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def _check_model(self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext) -> None:
        if request.model_name != self._model_name:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"got model {request.model_name!r}, expected {self._model_name!r}"
            )


class FloorServicer(_Floor):
    """ModelInfer for FP32 raw contents in and out; every other RPC is UNIMPLEMENTED."""

    def __init__(self, session: ort.InferenceSession, model_name: str) -> None:
        super().__init__(model_name)
        self._session = session
        self._output_names = [o.name for o in session.get_outputs()]

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelInferResponse:
        await self._check_model(request, context)
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


def model_process(sock: socket.socket, path: str) -> None:
    """The child of ``--worker-process``: answer every frame that has arrived, in one write."""
    session = load_session(path)
    input_name = session.get_inputs()[0].name
    buffer = b""
    while chunk := sock.recv(1 << 18):
        buffer += chunk
        replies = []
        while len(buffer) >= FRAME.size:
            size, call, rows = FRAME.unpack_from(buffer)
            if len(buffer) < FRAME.size + size:
                break
            x = np.frombuffer(buffer[FRAME.size : FRAME.size + size], dtype=np.float32).reshape(rows, -1)
            buffer = buffer[FRAME.size + size :]
            y = np.ascontiguousarray(session.run(None, {input_name: x})[0], dtype=np.float32).tobytes()
            replies.append(FRAME.pack(len(y), call, rows) + y)
        if replies:
            sock.sendall(b"".join(replies))


class ModelProcess:
    """The parent's end: calls made in one event-loop turn leave in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer
        self._loop = asyncio.get_running_loop()
        self._pending: dict[int, asyncio.Future[bytes]] = {}
        self._outbox: list[bytes] = []
        self._next = 0
        self._task = self._loop.create_task(self._read_loop())

    async def _read_loop(self) -> None:
        while True:
            size, call, _rows = FRAME.unpack(await self._reader.readexactly(FRAME.size))
            self._pending.pop(call).set_result(await self._reader.readexactly(size))

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        self._writer.write(b"".join(frames))

    async def run(self, rows: int, data: bytes) -> bytes:
        self._next += 1
        future = self._loop.create_future()
        self._pending[self._next] = future
        if not self._outbox:
            self._loop.call_soon(self._flush)
        self._outbox.append(FRAME.pack(len(data), self._next, rows) + data)
        return await future


class ProcessFloorServicer(_Floor):
    """ModelInfer for one FP32 raw input, run in the model process."""

    def __init__(self, model: ModelProcess, model_name: str, output_name: str, output_width: int) -> None:
        super().__init__(model_name)
        self._model = model
        self._output_name, self._output_width = output_name, output_width

    async def ModelInfer(
        self, request: oip.ModelInferRequest, context: grpc.aio.ServicerContext
    ) -> oip.ModelInferResponse:
        await self._check_model(request, context)
        tensor = request.inputs[0]
        if tensor.datatype != "FP32" or len(request.raw_input_contents) != 1:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "expected one FP32 input in raw_input_contents")
        rows = int(tensor.shape[0])
        data = await self._model.run(rows, request.raw_input_contents[0])
        response = oip.ModelInferResponse(model_name=self._model_name, id=request.id)
        response.outputs.add(name=self._output_name, datatype="FP32", shape=[rows, self._output_width])
        response.raw_output_contents.append(data)
        return response


async def serve(model: str, model_name: str, listen: str, lifetime: float, worker: socket.socket | None = None) -> None:
    server = grpc.aio.server()
    if worker is None:
        servicer: _Floor = FloorServicer(load_session(model), model_name)
    else:
        output = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).get_outputs()[0]
        reader, writer = await asyncio.open_unix_connection(sock=worker)
        servicer = ProcessFloorServicer(ModelProcess(reader, writer), model_name, output.name, int(output.shape[-1]))
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
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
    p.add_argument("--worker-process", action="store_true", help="run the model in a child process (see above)")
    args = p.parse_args(argv)
    try:
        require_loopback(args.listen)
    except ValueError as exc:
        p.error(str(exc))
    worker = None
    if args.worker_process:
        # Forked before gRPC or the event loop start: the child holds nothing of theirs.
        ours, theirs = socket.socketpair()
        if os.fork() == 0:
            ours.close()
            model_process(theirs, args.model)
            os._exit(0)  # the parent closed its end: exit without running its handlers
        theirs.close()
        worker = ours
    asyncio.run(serve(args.model, args.name, args.listen, args.lifetime, worker))
    return 0


if __name__ == "__main__":
    sys.exit(main())
