"""One framed connection to a worker, with several requests in flight.

Each request gets an id; a reader task resolves the matching future. The worker is
hostile by assumption: a frame over the size bound, an unparseable frame or an unknown id
ends the connection, and every call in flight on a dead connection gets
:class:`WorkerCrashedError`.
"""

from __future__ import annotations

import asyncio
import itertools
import socket

import structlog
from google.protobuf.message import DecodeError

from protos import worker_pb2 as pb
from sandbox.errors import FrameError
from sandbox.framing import HEADER, encode_frame, parse_header
from supervisor.errors import WorkerCrashedError, WorkerProtocolError, WorkerStartError

log = structlog.get_logger(__name__)


def _expire(future: asyncio.Future[pb.FromWorker]) -> None:
    """The call's timer: the caller gets TimeoutError; a late reply is dropped."""
    if not future.done():
        future.set_exception(TimeoutError())


class WorkerConnection:
    def __init__(
        self,
        pid: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        max_frame_bytes: int,
    ) -> None:
        self.pid = pid
        self.hello: pb.Hello | None = None
        self._reader = reader
        self._writer = writer
        self._max = max_frame_bytes
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[pb.FromWorker]] = {}
        # Ids of calls given up by the caller (cancelled or timed out): their late replies
        # are dropped instead of counting as a protocol violation.
        self._abandoned: set[int] = set()
        self._closed: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self.exit_code: int | None = None
        # Pipelined frames: requests made in one event-loop turn leave in one write (one
        # syscall, one wake-up of the worker) at the end of that turn.
        self._outbox: list[bytes] = []
        # The loop the streams belong to, kept: get_running_loop() costs a getpid() syscall.
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(cls, pid: int, sock: socket.socket, max_frame_bytes: int, timeout: float) -> WorkerConnection:
        """Wrap ``sock`` and wait for the worker's hello."""
        sock.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=sock, limit=2**16)
        conn = cls(pid, reader, writer, max_frame_bytes)
        try:
            first = await asyncio.wait_for(conn._read(), timeout)
        except (TimeoutError, WorkerProtocolError, WorkerCrashedError):
            writer.close()
            raise
        if first.WhichOneof("body") == "error":
            # The confinement failed in the child before the worker could start.
            writer.close()
            raise WorkerStartError(f"worker {pid} did not start: {first.error.detail[:500]}")
        if first.WhichOneof("body") != "hello":
            writer.close()
            raise WorkerProtocolError(f"worker sent {first.WhichOneof('body')!r} first, expected 'hello'")
        conn.hello = first.hello
        conn._task = asyncio.create_task(conn._read_loop(), name=f"worker-{pid}-reader")
        return conn

    @property
    def alive(self) -> bool:
        return self._closed is None

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def _read(self) -> pb.FromWorker:
        try:
            header = await self._reader.readexactly(HEADER.size)
            length = parse_header(header, self._max)
            payload = await self._reader.readexactly(length)
        except asyncio.IncompleteReadError as exc:
            raise WorkerCrashedError(f"worker {self.pid} closed its connection") from exc
        except (ConnectionError, OSError) as exc:
            raise WorkerCrashedError(f"worker {self.pid} connection failed: {exc}") from exc
        except FrameError as exc:
            raise WorkerProtocolError(f"worker {self.pid}: {exc}") from exc
        try:
            return pb.FromWorker.FromString(payload)
        except DecodeError as exc:
            raise WorkerProtocolError(f"worker {self.pid} sent an unparseable frame") from exc

    async def _read_loop(self) -> None:
        try:
            while True:
                msg = await self._read()
                future = self._pending.pop(msg.id, None)
                if future is None and msg.id in self._abandoned:
                    self._abandoned.discard(msg.id)
                    continue
                if future is None:
                    raise WorkerProtocolError(f"worker {self.pid} answered unknown request id {msg.id}")
                if not future.done():
                    future.set_result(msg)
        except (WorkerCrashedError, WorkerProtocolError) as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            self._fail(WorkerCrashedError(f"worker {self.pid} connection closed"))
            raise

    def _fail(self, exc: BaseException) -> None:
        if self._closed is None:
            self._closed = exc
            if isinstance(exc, WorkerProtocolError):
                log.warning("worker broke the protocol", pid=self.pid, error=str(exc))
        self._writer.close()
        pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerCrashedError(f"worker {self.pid} died with the call in flight"))

    async def request(self, message: pb.ToWorker, timeout: float) -> pb.FromWorker:
        """Send ``message`` and wait for its reply."""
        if self._closed is not None:
            raise WorkerCrashedError(f"worker {self.pid} is gone")
        message.id = next(self._ids)
        loop = self._loop
        future: asyncio.Future[pb.FromWorker] = loop.create_future()
        self._pending[message.id] = future
        # One timer instead of wait_for(shield(...)): no extra future, task or callbacks per
        # call. A caller cancelled mid-call cancels ``future``; the id is then abandoned.
        timer = loop.call_later(timeout, _expire, future)
        try:
            if not self._outbox:
                loop.call_soon(self._flush)
            self._outbox.append(encode_frame(message.SerializeToString()))
            await self._writer.drain()  # back-pressure only: returns at once unless paused
            return await future
        except TimeoutError:
            raise  # a subclass of OSError, but the connection itself is fine
        except (ConnectionError, OSError) as exc:
            self._fail(WorkerCrashedError(str(exc)))
            raise WorkerCrashedError(f"worker {self.pid} connection failed") from exc
        finally:
            timer.cancel()
            if self._pending.pop(message.id, None) is not None and self._closed is None:
                self._abandoned.add(message.id)

    def _flush(self) -> None:
        """Write every frame queued in this turn, in order, as one buffer."""
        frames, self._outbox = self._outbox, []
        if not frames or self._closed is not None:
            return
        try:
            self._writer.write(frames[0] if len(frames) == 1 else b"".join(frames))
        except (ConnectionError, OSError, RuntimeError) as exc:
            self._fail(WorkerCrashedError(f"worker {self.pid} connection failed: {exc}"))

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._fail(WorkerCrashedError(f"worker {self.pid} was stopped"))
