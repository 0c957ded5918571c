"""The tenant worker: runs ONNX Runtime on model bytes the supervisor verified.

The worker is untrusted. It never opens a model path: models arrive as bytes inside a
``LoadModel`` frame. It answers frames in order on one socket; every frame carries an id
so the supervisor can keep several requests in flight.

A GPU worker asks ONNX Runtime for CUDAExecutionProvider on device 0, which is its slice
(``CUDA_VISIBLE_DEVICES`` names only that one). ORT falls back to CPU without an error
when CUDA cannot be used, so the worker checks ``session.get_providers()`` and refuses the
load (``GPU_UNUSABLE``) unless the spawn allowed CPU fallback.
"""

from __future__ import annotations

import mmap
import os
import select
import socket
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from protos import worker_pb2 as pb
from sandbox.dtypes import NUMPY_TO_OIP, OIP_TO_NUMPY
from sandbox.errors import FrameError
from sandbox.framing import HEADER, encode_frame, parse_header, write_frame

# The largest frame the worker accepts. Model bytes travel in one frame, so this bounds
# the model size a worker will ever allocate for.
MAX_INBOUND_FRAME = 2**31 - 1
# One recv reads up to this much, so pipelined requests cost one syscall between them.
RECV_CHUNK_BYTES = 256 * 1024
# Replies to requests that arrived together leave together, unless the first one would
# wait longer than this for the others to be computed.
REPLY_HOLD_SECONDS = 0.0005

_Code = pb.WorkerError.Code
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


class _BadRequestError(Exception):
    """The request cannot be run as given."""


class Worker:
    """Holds the loaded sessions and answers one frame at a time."""

    def __init__(
        self,
        intra_op_threads: int,
        confinement: list[str],
        *,
        gpu: bool = False,
        allow_cpu_fallback: bool = False,
        region: mmap.mmap | None = None,
        output_region: mmap.mmap | None = None,
    ) -> None:
        self._sessions: dict[str, ort.InferenceSession] = {}
        # The input region the supervisor writes large inputs into, mapped read-only.
        self._region = region
        # The output region large outputs are written into (when the request gives a range).
        self._output_region = output_region
        self._threads = intra_op_threads
        self._confinement = confinement
        self._gpu = gpu
        self._allow_cpu_fallback = allow_cpu_fallback
        # CPU is listed after CUDA for the nodes CUDA has no kernel for.
        self._providers: list[str | tuple[str, dict[str, str]]] = [(CUDA, {"device_id": "0"}), CPU] if gpu else [CPU]
        self._handlers: dict[str, Callable[[pb.ToWorker], pb.FromWorker]] = {
            "load": self._load,
            "unload": self._unload,
            "infer": self._infer,
            "ping": lambda _msg: pb.FromWorker(pong=pb.Pong()),
        }

    def hello(self) -> pb.FromWorker:
        return pb.FromWorker(
            id=0,
            hello=pb.Hello(
                pid=os.getpid(),
                onnxruntime_version=ort.__version__,
                confinement=self._confinement,
                input_region_bytes=len(self._region) if self._region is not None else 0,
                output_region_bytes=len(self._output_region) if self._output_region is not None else 0,
            ),
        )

    def handle(self, msg: pb.ToWorker) -> pb.FromWorker:
        case = msg.WhichOneof("body")
        handler = self._handlers.get(case or "")
        try:
            if handler is None:
                raise _BadRequestError(f"frame without a known body: {case!r}")
            reply = handler(msg)
        except _BadRequestError as exc:
            reply = _error(_Code.BAD_REQUEST, str(exc))
        except Exception as exc:  # noqa: BLE001 - reported to the supervisor, never to a client
            reply = _error(_Code.INTERNAL, f"{type(exc).__name__}: {exc}")
        reply.id = msg.id
        return reply

    def _load(self, msg: pb.ToWorker) -> pb.FromWorker:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(msg.load.onnx, sess_options=options, providers=self._providers)
        except Exception as exc:  # noqa: BLE001 - any ORT load failure is LOAD_FAILED
            return _error(_Code.LOAD_FAILED, f"{type(exc).__name__}: {exc}")
        got = session.get_providers()
        if self._gpu and (not got or got[0] != CUDA) and not self._allow_cpu_fallback:
            return _error(
                _Code.GPU_UNUSABLE,
                f"CUDA was wanted but ONNX Runtime fell back to CPU: session providers {got}, "
                f"available {ort.get_available_providers()}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r}",
            )
        self._sessions[msg.load.model_key] = session
        return pb.FromWorker(loaded=pb.ModelLoaded(model_key=msg.load.model_key, providers=session.get_providers()))

    def _unload(self, msg: pb.ToWorker) -> pb.FromWorker:
        self._sessions.pop(msg.unload.model_key, None)
        return pb.FromWorker(pong=pb.Pong())

    def _infer(self, msg: pb.ToWorker) -> pb.FromWorker:
        request = msg.infer
        session = self._sessions.get(request.model_key)
        if session is None:
            return _error(_Code.NOT_LOADED, f"model {request.model_key} is not loaded")
        names = list(request.outputs)
        feeds = {t.name: _to_array(t, self._region) for t in request.inputs}
        try:
            arrays = session.run(names, feeds)
        except Exception as exc:
            raise _BadRequestError(f"{type(exc).__name__}: {exc}") from exc
        # Built in place: appending a finished Tensor, then wrapping the result, copies both.
        reply = pb.FromWorker()
        outputs = reply.result.outputs
        place = self._output_range(request)
        for name, array in zip(names, arrays, strict=True):
            place = _fill_tensor(outputs.add(), name, np.asarray(array), self._output_region, place)
        return reply

    def _output_range(self, request: pb.InferRequest) -> tuple[int, int] | None:
        """[start, end) of the output region this request may write, if it gave one that fits."""
        length = request.output_region_length
        region = self._output_region
        if not length or region is None:
            return None
        start = request.output_region_offset
        return (start, start + length) if start + length <= len(region) else None


def _error(code: pb.WorkerError.Code, detail: str) -> pb.FromWorker:
    return pb.FromWorker(error=pb.WorkerError(code=code, detail=detail[:2000]))


def _to_array(tensor: pb.Tensor, region: mmap.mmap | None = None) -> np.ndarray:
    dtype = OIP_TO_NUMPY.get(tensor.datatype)
    if dtype is None:
        raise _BadRequestError(f"input {tensor.name!r} has unknown datatype {tensor.datatype!r}")
    try:
        length = tensor.region_length
        if not length:
            return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))
        # In the input region: read in place (the supervisor leaves the range alone until
        # this call's reply has arrived).
        offset = tensor.region_offset
        if region is None or tensor.data or offset + length > len(region) or length % np.dtype(dtype).itemsize:
            raise _BadRequestError(f"input {tensor.name!r}: bad input region range {offset}+{length}")
        count = length // np.dtype(dtype).itemsize
        return np.frombuffer(region, dtype=dtype, count=count, offset=offset).reshape(tuple(tensor.shape))
    except ValueError as exc:
        raise _BadRequestError(f"input {tensor.name!r}: {exc}") from exc


def _fill_tensor(
    tensor: pb.Tensor,
    name: str,
    array: np.ndarray,
    region: mmap.mmap | None = None,
    place: tuple[int, int] | None = None,
) -> tuple[int, int] | None:
    """Fill ``tensor`` with ``array``: into ``place`` ([start, end) of ``region``) when it
    fits there, with one copy, else into ``data``. Returns what is left of ``place``."""
    datatype = NUMPY_TO_OIP.get(array.dtype)
    if datatype is None:
        raise _BadRequestError(f"output {name!r} has dtype {array.dtype}, which OIP cannot carry")
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(array.shape)
    dtype = OIP_TO_NUMPY[datatype]
    nbytes = array.size * dtype.itemsize
    if region is not None and place is not None and 0 < nbytes <= place[1] - place[0]:
        start = place[0]
        np.copyto(np.frombuffer(region, dtype=dtype, count=array.size, offset=start).reshape(array.shape), array)
        tensor.region_offset, tensor.region_length = start, nbytes
        return _align(start + nbytes), place[1]
    tensor.data = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return place


def _align(offset: int) -> int:
    """The next cache-line boundary: outputs in the region start on one, as inputs do."""
    return (offset + 63) & ~63


def _map_region(fd: int, size: int, *, writable: bool = False) -> mmap.mmap | None:
    """A region (read-only: the input region; ``writable``: the output region); None
    without one, or when its size is not ``size``."""
    if fd < 0:
        return None
    try:
        if size <= 0 or os.fstat(fd).st_size != size:
            return None
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0))
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


class FrameReader:
    """Frames from the supervisor, read in chunks; ``buffered`` says whether another whole
    frame has already arrived. The length is bounded before any allocation for it.

    It waits for data in ``poll`` rather than in ``recv``. A socket has one wait queue for
    its readers and writers, and a blocked ``recv`` is woken by every event on it: each
    time the supervisor read a reply, the buffer space it freed woke the worker, which
    found nothing to read and slept again, a second wake-up for every frame. ``poll``
    asked for input only is not woken by that.
    """

    def __init__(self, sock: socket.socket, max_bytes: int) -> None:
        self._sock = sock
        self._max = max_bytes
        self._buf = bytearray()
        self._input = select.poll()
        self._input.register(sock.fileno(), select.POLLIN)

    def buffered(self) -> bool:
        if len(self._buf) < HEADER.size:
            return False
        return len(self._buf) >= HEADER.size + parse_header(bytes(self._buf[: HEADER.size]), self._max)

    def _fill(self) -> bool:
        self._input.poll()  # until input, end of stream or an error, which recv then reports
        chunk = self._sock.recv(RECV_CHUNK_BYTES)
        self._buf += chunk
        return bool(chunk)

    def read(self) -> bytes | None:
        """The next frame's payload; ``None`` on a clean end of stream."""
        while len(self._buf) < HEADER.size:
            if not self._fill():
                if self._buf:
                    raise FrameError(f"connection closed after {len(self._buf)} of {HEADER.size} bytes")
                return None
        length = parse_header(bytes(self._buf[: HEADER.size]), self._max)
        end = HEADER.size + length
        if len(self._buf) >= end:
            # One copy: slicing the bytearray, then bytes() of the slice, would make two.
            with memoryview(self._buf) as view:
                payload = bytes(view[HEADER.size : end])
            del self._buf[:end]
            return payload
        # A frame larger than what has arrived (a model): read the rest straight into place.
        out = bytearray(length)
        have = len(self._buf) - HEADER.size
        out[:have] = self._buf[HEADER.size :]
        self._buf.clear()
        view = memoryview(out)
        while have < length:
            n = self._sock.recv_into(view[have:], length - have)
            if n == 0:
                raise FrameError(f"connection closed after {have} of {length} bytes")
            have += n
        return bytes(out)


def serve(
    sock: socket.socket,
    intra_op_threads: int,
    confinement: list[str],
    after_warmup: Callable[[], None] | None = None,
    *,
    gpu: bool = False,
    allow_cpu_fallback: bool = False,
    region_fd: int = -1,
    region_bytes: int = 0,
    output_region_fd: int = -1,
    output_region_bytes: int = 0,
) -> int:
    """Answer frames on ``sock`` until the supervisor closes it; return an exit status.

    ``after_warmup`` runs once, right after the first successful inference has been
    answered: by then a model is loaded and has run, so the strict seccomp allow-list
    can be loaded without starving ONNX Runtime's first-run set-up. ``region_fd`` is the
    input region (supervisor/workers/region.py), mapped here read-only; ``output_region_fd``
    the output region, mapped for writing. Their sizes, or 0 when one could not be mapped,
    go back in the hello.
    """
    region = _map_region(region_fd, region_bytes)
    output_region = _map_region(output_region_fd, output_region_bytes, writable=True)
    worker = Worker(
        intra_op_threads,
        confinement,
        gpu=gpu,
        allow_cpu_fallback=allow_cpu_fallback,
        region=region,
        output_region=output_region,
    )
    write_frame(sock, worker.hello().SerializeToString())
    frames = FrameReader(sock, MAX_INBOUND_FRAME)
    replies: list[bytes] = []
    held_since = 0.0
    while True:
        payload = frames.read()
        if payload is None:
            return 0
        reply = worker.handle(pb.ToWorker.FromString(payload))
        if not replies:
            held_since = time.perf_counter()
        replies.append(encode_frame(reply.SerializeToString()))
        warm = after_warmup is not None and reply.WhichOneof("body") == "result"
        if warm or not frames.buffered() or time.perf_counter() - held_since > REPLY_HOLD_SECONDS:
            sock.sendall(replies[0] if len(replies) == 1 else b"".join(replies))
            replies.clear()
        if warm and after_warmup is not None:
            after_warmup()
            after_warmup = None
