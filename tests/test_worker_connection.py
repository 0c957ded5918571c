"""The supervisor's end of a worker connection, against a hostile peer on a real socketpair.

Every test runs on the standard event loop and on uvloop, which ``ire serve`` uses: their
transports differ (uvloop's do not derive from asyncio's classes).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
import uvloop

from protos import worker_pb2 as pb
from sandbox.framing import HEADER, encode_frame, read_frame
from supervisor.errors import WorkerCrashedError, WorkerProtocolError
from supervisor.workers.connection import WorkerConnection

Runner = Callable[[Coroutine[Any, Any, None]], None]
LOOPS: dict[str, Runner] = {"asyncio": asyncio.run, "uvloop": uvloop.run}


@pytest.fixture(params=sorted(LOOPS))
def run_on(request: pytest.FixtureRequest) -> Runner:
    return LOOPS[request.param]


def _hello() -> bytes:
    return encode_frame(pb.FromWorker(id=0, hello=pb.Hello(pid=1)).SerializeToString())


async def _open(peer_first: bytes, max_frame: int = 1024) -> tuple[WorkerConnection, socket.socket]:
    ours, theirs = socket.socketpair()
    theirs.sendall(peer_first)
    conn = await WorkerConnection.open(1234, ours, max_frame, timeout=5)
    return conn, theirs


def _ping() -> pb.ToWorker:
    return pb.ToWorker(ping=pb.Ping())


def _pong(call_id: int) -> bytes:
    """The worker's framed answer to ping ``call_id``."""
    return encode_frame(pb.FromWorker(id=call_id, pong=pb.Pong()).SerializeToString())


def _request_id(peer: socket.socket, max_frame: int = 1024) -> int:
    """The id of the next request the supervisor sent (``peer`` blocking)."""
    return pb.ToWorker.FromString(read_frame(peer, max_frame) or b"").id


def test_oversized_frame_from_worker_ends_connection(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        call = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        peer.sendall(struct.pack(">I", 10**9))  # announces 1 GB: refused before allocation
        with pytest.raises(WorkerCrashedError):
            await call
        assert not conn.alive
        peer.close()

    run_on(case())


def test_unparseable_frame_ends_connection(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        call = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        peer.sendall(encode_frame(b"\xff\xff\xff\xff"))
        with pytest.raises(WorkerCrashedError):
            await call
        assert isinstance(conn._closed, WorkerProtocolError)
        peer.close()

    run_on(case())


def test_reply_to_unknown_request_id_ends_connection(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        call = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        peer.sendall(_pong(999))
        with pytest.raises(WorkerCrashedError):
            await call
        peer.close()

    run_on(case())


def test_first_frame_must_be_hello(run_on: Runner) -> None:
    async def case() -> None:
        with pytest.raises(WorkerProtocolError, match="expected 'hello'"):
            await _open(_pong(0))

    run_on(case())


def test_replies_are_matched_by_id_out_of_order(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        first = asyncio.create_task(conn.request(_ping(), timeout=5))
        second = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        peer.setblocking(True)
        ids = [_request_id(peer) for _ in range(2)]
        for request_id in reversed(ids):
            peer.sendall(_pong(request_id))
        assert (await first).id == ids[0]
        assert (await second).id == ids[1]
        peer.close()

    run_on(case())


def test_late_reply_to_abandoned_call_is_dropped(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        with pytest.raises(TimeoutError):
            await conn.request(_ping(), timeout=0.05)
        peer.setblocking(True)
        peer.sendall(_pong(_request_id(peer)))
        await asyncio.sleep(0.05)
        assert conn.alive
        call = asyncio.create_task(conn.request(_ping(), timeout=5))
        peer.sendall(_pong(await asyncio.to_thread(_request_id, peer)))
        assert (await call).WhichOneof("body") == "pong"
        peer.close()

    run_on(case())


def test_cancelled_caller_abandons_its_call_and_the_connection_lives(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello())
        call = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert conn.in_flight == 0
        peer.setblocking(True)
        peer.sendall(_pong(_request_id(peer)))
        await asyncio.sleep(0.05)
        assert conn.alive  # the late reply to the cancelled call is dropped, not a violation
        peer.close()

    run_on(case())


def test_many_calls_in_flight_share_no_timers_after_replies(run_on: Runner) -> None:
    async def case() -> None:
        conn, peer = await _open(_hello(), max_frame=1 << 16)
        calls = [asyncio.create_task(conn.request(_ping(), timeout=0.2)) for _ in range(20)]
        await asyncio.sleep(0.05)
        peer.setblocking(True)
        for _ in range(20):
            peer.sendall(_pong(_request_id(peer, 1 << 16)))
        assert all(r.WhichOneof("body") == "pong" for r in await asyncio.gather(*calls))
        await asyncio.sleep(0.3)  # past every call's timeout: a timer left armed would do nothing
        assert conn.alive and conn.in_flight == 0
        peer.close()

    run_on(case())


def test_replies_split_across_reads_or_joined_in_one_are_each_delivered_once(run_on: Runner) -> None:
    """Frame boundaries never follow reads: a worker's replies may arrive in any cut."""

    async def case() -> None:
        conn, peer = await _open(_hello(), max_frame=1 << 20)
        calls = [asyncio.create_task(conn.request(_ping(), timeout=5)) for _ in range(4)]
        await asyncio.sleep(0.05)
        peer.setblocking(True)
        ids = [_request_id(peer, 1 << 20) for _ in range(4)]
        big = pb.FromWorker(id=ids[3], error=pb.WorkerError(detail="x" * 300_000))  # many reads
        frames = [_pong(i) for i in ids[:3]]
        stream = b"".join(frames) + encode_frame(big.SerializeToString())
        # Two whole frames and a header cut in two; then the rest a few bytes at a time, then
        # the large frame's remainder in one write.
        cuts = [len(frames[0]) + len(frames[1]) + 2, len(frames[0]) + len(frames[1]) + 7]
        peer.sendall(stream[: cuts[0]])
        await asyncio.sleep(0.02)
        peer.sendall(stream[cuts[0] : cuts[1]])
        await asyncio.sleep(0.02)
        await asyncio.to_thread(peer.sendall, stream[cuts[1] :])  # more than the socket buffers
        replies = await asyncio.gather(*calls)
        assert [r.id for r in replies] == ids
        assert [r.WhichOneof("body") for r in replies] == ["pong", "pong", "pong", "error"]
        assert replies[3].error.detail == "x" * 300_000
        assert conn.alive and conn.in_flight == 0
        peer.close()

    run_on(case())


def _frames(data: bytes) -> list[pb.ToWorker]:
    out, pos = [], 0
    while pos < len(data):
        (size,) = HEADER.unpack_from(data, pos)
        out.append(pb.ToWorker.FromString(data[pos + HEADER.size : pos + HEADER.size + size]))
        pos += HEADER.size + size
    return out


def test_requests_made_while_the_worker_answers_wait_and_then_leave_together(run_on: Runner) -> None:
    """Requests wait for the worker's next reply, then leave in one write: the calls of that
    group then finish together (their records written in one write, their replies sent
    together)."""

    async def case() -> None:
        conn, peer = await _open(_hello(), max_frame=1 << 16)
        first = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        first_id = await asyncio.to_thread(_request_id, peer)
        later = [asyncio.create_task(conn.request(_ping(), timeout=5)) for _ in range(3)]
        await asyncio.sleep(0.02)
        later.append(asyncio.create_task(conn.request(_ping(), timeout=5)))  # a later turn
        await asyncio.sleep(0.05)
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(1)  # nothing more reaches the worker while it answers the first
        peer.sendall(_pong(first_id))
        assert (await first).id == first_id
        await asyncio.sleep(0.05)
        group = _frames(peer.recv(1 << 16))
        assert len(group) == 4 and all(f.WhichOneof("body") == "ping" for f in group)
        peer.sendall(b"".join(_pong(f.id) for f in group))
        assert [r.id for r in await asyncio.gather(*later)] == [f.id for f in group]
        assert conn.alive and conn.in_flight == 0
        peer.close()

    run_on(case())


def test_a_worker_answering_frame_by_frame_gets_what_waited_with_each_reply(run_on: Runner) -> None:
    """A slow model must not idle between groups: each reply lets the waiting requests go."""

    async def case() -> None:
        conn, peer = await _open(_hello(), max_frame=1 << 16)
        group = [asyncio.create_task(conn.request(_ping(), timeout=5)) for _ in range(2)]
        await asyncio.sleep(0.05)
        peer.setblocking(True)
        sent = _frames(peer.recv(1 << 16))
        assert len(sent) == 2
        waiting = asyncio.create_task(conn.request(_ping(), timeout=5))
        await asyncio.sleep(0.05)
        peer.sendall(_pong(sent[0].id))  # the first frame done, the second still running
        assert (await group[0]).id == sent[0].id
        peer.settimeout(2)
        (third,) = _frames(peer.recv(1 << 16))  # arrives before the second frame's reply
        peer.sendall(_pong(sent[1].id) + _pong(third.id))
        assert (await group[1]).id == sent[1].id and (await waiting).id == third.id
        peer.close()

    run_on(case())
