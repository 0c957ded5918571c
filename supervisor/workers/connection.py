"""One framed connection to a worker, with several requests in flight.

Each request gets an id; frames are parsed as they arrive (an asyncio protocol, with no
reader task between the socket and the waiting call) and resolve the matching future.
The worker is hostile by assumption: a frame over the size bound, an unparseable frame or
an unknown id ends the connection, and every call in flight on a dead connection gets
:class:`WorkerCrashedError`.

Requests made after a write to the worker, and before any reply to it, wait in the
connection and leave together, in one write, with the worker's next reply. A worker whose
frames are quick answers all the frames that reached it together in one write, so its
calls go and come back in groups: the calls of a group finish in the same turn of the
event loop, where their audit records are written together and their replies leave
together (supervisor/audit/turn.py). A worker whose frames take longer than its reply
hold (sandbox/worker.py) answers frame by frame, and each reply lets the waiting requests
go, so it always has the next frame queued.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Sequence
from typing import cast

import structlog
from google.protobuf.message import DecodeError

from protos import worker_pb2 as pb
from sandbox.errors import FrameError
from sandbox.framing import HEADER, encode_frame, parse_header
from supervisor.errors import WorkerCrashedError, WorkerProtocolError, WorkerStartError
from supervisor.tensors import Output, Outputs
from supervisor.workers.region import InputRegion, OutputRegion

log = structlog.get_logger(__name__)

_HEADER_SIZE = HEADER.size


def _expire(future: asyncio.Future[pb.FromWorker | Outputs]) -> None:
    """The call's timer: the caller gets TimeoutError; a late reply is dropped."""
    if not future.done():
        future.set_exception(TimeoutError())


class WorkerConnection(asyncio.Protocol):
    def __init__(self, pid: int, max_frame_bytes: int) -> None:
        self.pid = pid
        self.hello: pb.Hello | None = None
        self._max = max_frame_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.FromWorker | Outputs]] = {}
        # Ids of calls given up by the caller (cancelled or timed out): their late replies
        # are dropped instead of counting as a protocol violation.
        self._abandoned: set[int] = set()
        self._closed: BaseException | None = None
        self.exit_code: int | None = None
        # The loop, kept: get_running_loop() costs a getpid() syscall.
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        # Bytes of a frame not yet whole.
        self._partial = bytearray()
        # The first frame (the hello) goes here rather than to a call.
        self._first: asyncio.Future[pb.FromWorker] | None = self._loop.create_future()
        # Pipelined frames: requests made in one event-loop turn leave in one write (one
        # syscall, one wake-up of the worker) at the end of that turn, or, when the worker
        # has not replied since the last write (``_unanswered``), with its next reply.
        self._outbox: list[bytes] = []
        self._unanswered = False
        # Back-pressure: set while the transport's write buffer is over its high mark.
        self._paused = False
        self._drained: list[asyncio.Future[None]] = []
        # The worker's input region (supervisor/workers/region.py), once its hello said it
        # mapped it, and the ranges each call in flight (or abandoned) holds there.
        self._region: InputRegion | None = None
        self._region_min = 0
        self._ranges: dict[int, list[int]] = {}
        # The worker's output region, and the range (start, length) each call in flight (or
        # abandoned) gave the worker for its outputs.
        self._output_region: OutputRegion | None = None
        self._output_min = 0
        self._output_ranges: dict[int, tuple[int, int]] = {}

    @classmethod
    async def open(cls, pid: int, sock: socket.socket, max_frame_bytes: int, timeout: float) -> WorkerConnection:
        """Wrap ``sock`` and wait for the worker's hello."""
        sock.setblocking(False)
        conn = cls(pid, max_frame_bytes)
        first = conn._first
        assert first is not None
        await conn._loop.create_unix_connection(lambda: conn, sock=sock)
        try:
            hello = await asyncio.wait_for(first, timeout)
        except (TimeoutError, WorkerProtocolError, WorkerCrashedError):
            conn._close_transport()
            raise
        if hello.WhichOneof("body") == "error":
            # The confinement failed in the child before the worker could start.
            conn._close_transport()
            raise WorkerStartError(f"worker {pid} did not start: {hello.error.detail[:500]}")
        if hello.WhichOneof("body") != "hello":
            conn._close_transport()
            raise WorkerProtocolError(f"worker sent {hello.WhichOneof('body')!r} first, expected 'hello'")
        conn.hello = hello.hello
        return conn

    def use_region(self, region: InputRegion, min_bytes: int) -> None:
        """Send input tensors of at least ``min_bytes`` through ``region`` from now on."""
        self._region, self._region_min = region, min_bytes

    def use_output_region(self, region: OutputRegion, min_bytes: int) -> None:
        """Give a call whose outputs come to ``min_bytes`` or more a range of ``region``."""
        self._output_region, self._output_min = region, min_bytes

    @property
    def alive(self) -> bool:
        return self._closed is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._partial:
            self._partial += data
            buffer: bytes | bytearray = self._partial
        else:
            buffer = data
        size = len(buffer)
        pos = 0
        try:
            while size - pos >= _HEADER_SIZE:
                end = pos + _HEADER_SIZE + parse_header(bytes(buffer[pos : pos + _HEADER_SIZE]), self._max)
                if end > size:
                    break
                # One copy of the payload, also when it is in the bytearray of a frame
                # that spanned reads (slicing that, then bytes(), would copy it twice).
                message = pb.FromWorker.FromString(bytes(memoryview(buffer)[pos + _HEADER_SIZE : end]))
                pos = end
                self._deliver(message)
                if self._closed is not None:
                    return
        except FrameError as exc:
            self._fail(WorkerProtocolError(f"worker {self.pid}: {exc}"))
            return
        except DecodeError:
            self._fail(WorkerProtocolError(f"worker {self.pid} sent an unparseable frame"))
            return
        if self._outbox and not self._unanswered:
            self._loop.call_soon(self._flush)  # the worker replied: what waited goes now
        if buffer is data:
            if pos < size:
                self._partial += data[pos:]
        elif pos:
            del self._partial[:pos]

    def eof_received(self) -> bool | None:
        self._fail(WorkerCrashedError(f"worker {self.pid} closed its connection"))
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._fail(WorkerCrashedError(f"worker {self.pid} closed its connection"))
        else:
            self._fail(WorkerCrashedError(f"worker {self.pid} connection failed: {exc}"))

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_writers(None)

    # -- internals ---------------------------------------------------------------------------

    def _deliver(self, message: pb.FromWorker) -> None:
        first = self._first
        if first is not None:
            self._first = None
            if not first.done():
                first.set_result(message)
            return
        self._unanswered = False
        if self._ranges:
            self._give_back(message.id)
        result: pb.FromWorker | Outputs = message
        if self._output_ranges and (given := self._output_ranges.pop(message.id, None)) is not None:
            copied, problem = self._copy_out(message, given)
            if self._output_region is not None:
                self._output_region.give_back(given[0])
            if problem:
                self._fail(WorkerProtocolError(f"worker {self.pid} {problem}"))
                return
            if copied is not None:
                result = copied
        future = self._pending.pop(message.id, None)
        if future is None:
            if message.id in self._abandoned:
                self._abandoned.discard(message.id)
                return
            self._fail(WorkerProtocolError(f"worker {self.pid} answered unknown request id {message.id}"))
            return
        if not future.done():
            future.set_result(result)

    def _wake_writers(self, exc: BaseException | None) -> None:
        waiters, self._drained = self._drained, []
        for waiter in waiters:
            if not waiter.done():
                if exc is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(exc)

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def _give_back(self, call_id: int) -> None:
        ranges = self._ranges.pop(call_id, None)
        if ranges is not None and self._region is not None:
            for start in ranges:
                self._region.give_back(start)

    def _copy_out(self, message: pb.FromWorker, given: tuple[int, int]) -> tuple[Outputs | None, str]:
        """The reply's outputs as plain bytes, those the worker wrote into the range ``given``
        copied out of it now, before anything reads them: the worker may write there again
        at any time, and only the copy is checked and answered with. None when no output is
        in the region; and what is wrong with the reply, or ''."""
        region = self._output_region
        if region is None or message.WhichOneof("body") != "result":
            return None, ""
        start, end = given[0], given[0] + given[1]
        outputs: list[Output] = []
        copied = False
        for tensor in message.result.outputs:
            length = tensor.region_length
            if not length:
                outputs.append(Output(tensor.name, tensor.datatype, list(tensor.shape), tensor.data))
                continue
            offset = tensor.region_offset
            if offset < start or offset + length > end or tensor.data:
                return None, f"wrote output {tensor.name!r} at {offset}+{length}, outside its range {start}+{given[1]}"
            outputs.append(Output(tensor.name, tensor.datatype, list(tensor.shape), region.read(offset, length)))
            copied = True
        return (Outputs(outputs) if copied else None), ""

    def _into_region(self, call_id: int, message: pb.ToWorker, aside: Sequence[tuple[int, bytes]]) -> None:
        """Large inputs into the input region where they fit, the rest into the frame:
        ``aside``, (index, bytes) the caller left out of ``message``, and the tensors of
        ``message`` of at least the region's threshold (a merged batch's, say)."""
        region = self._region
        inputs = message.infer.inputs
        taken: list[int] = []
        for index, data in aside:
            start = region.put(data) if region is not None else None
            if start is None:
                inputs[index].data = data
            else:
                taken.append(start)
                inputs[index].region_offset, inputs[index].region_length = start, len(data)
        if region is not None:
            for tensor in inputs:
                if tensor.region_length or tensor.ByteSize() < self._region_min:
                    continue
                data = tensor.data
                start = region.put(data)
                if start is not None:
                    taken.append(start)
                    tensor.ClearField("data")
                    tensor.region_offset, tensor.region_length = start, len(data)
        if taken:
            self._ranges[call_id] = taken

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
            if isinstance(exc, WorkerProtocolError):
                log.warning("worker broke the protocol", pid=self.pid, error=str(exc))
            # The worker is gone or cut off: nothing uses its regions any more.
            self._ranges.clear()
            self._output_ranges.clear()
            for region in (self._region, self._output_region):
                if region is not None:
                    region.close()
            self._region = self._output_region = None
        self._close_transport()
        self._partial.clear()
        first, self._first = self._first, None
        if first is not None and not first.done():
            first.set_exception(exc)
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerCrashedError(f"worker {self.pid} died with the call in flight"))
        self._wake_writers(WorkerCrashedError(f"worker {self.pid} is gone"))

    async def request(
        self, message: pb.ToWorker, timeout: float, aside: Sequence[tuple[int, bytes]] = ()
    ) -> pb.FromWorker:
        """Send ``message`` and wait for its reply. ``aside``: (input index, bytes) of inputs
        left out of ``message``, written into the input region when they fit, else into it."""
        # Without a range of the output region the reply is always the worker's message.
        return cast(pb.FromWorker, await self._call(message, timeout, aside, 0))

    async def infer(
        self, message: pb.ToWorker, timeout: float, aside: Sequence[tuple[int, bytes]] = (), output_bytes: int = 0
    ) -> pb.FromWorker | Outputs:
        """:meth:`request` for an infer ``message`` whose outputs are expected to come to
        ``output_bytes``. From the output region's threshold up the call gets a range of
        that region for them, and when the worker wrote any there the reply is its result
        as :class:`~supervisor.tensors.Outputs`, copied out of the region."""
        return await self._call(message, timeout, aside, output_bytes)

    async def _call(
        self, message: pb.ToWorker, timeout: float, aside: Sequence[tuple[int, bytes]], output_bytes: int
    ) -> pb.FromWorker | Outputs:
        if self._closed is not None:
            raise WorkerCrashedError(f"worker {self.pid} is gone")
        message.id = call_id = next(self._ids)
        loop = self._loop
        future: asyncio.Future[pb.FromWorker | Outputs] = loop.create_future()
        self._pending[call_id] = future
        # One timer instead of wait_for(shield(...)): no extra future, task or callbacks per
        # call. A caller cancelled mid-call cancels ``future``; the id is then abandoned.
        timer = loop.call_later(timeout, _expire, future)
        try:
            if aside or (self._region is not None and message.HasField("infer")):
                self._into_region(call_id, message, aside)
            if output_bytes and output_bytes >= self._output_min and self._output_region is not None:
                start = self._output_region.reserve(output_bytes)
                if start is not None:
                    self._output_ranges[call_id] = (start, output_bytes)
                    message.infer.output_region_offset, message.infer.output_region_length = start, output_bytes
            if not self._outbox and not self._unanswered:
                loop.call_soon(self._flush)
            self._outbox.append(encode_frame(message.SerializeToString()))
            if self._paused:
                # Back-pressure: wait until the worker has read what is queued.
                waiter: asyncio.Future[None] = loop.create_future()
                self._drained.append(waiter)
                await waiter
            return await future
        finally:
            timer.cancel()
            if self._pending.pop(call_id, None) is not None and self._closed is None:
                self._abandoned.add(call_id)

    def _flush(self) -> None:
        """Write every frame queued, in order, as one buffer, unless the worker has not
        replied since the last write."""
        if self._unanswered:
            return
        frames, self._outbox = self._outbox, []
        if not frames or self._closed is not None or self._transport is None:
            return
        self._unanswered = True
        try:
            self._transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._fail(WorkerCrashedError(f"worker {self.pid} connection failed: {exc}"))

    def close(self) -> None:
        self._fail(WorkerCrashedError(f"worker {self.pid} was stopped"))
