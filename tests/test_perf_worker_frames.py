"""The worker's chunked frame reader: pipelined frames, big frames, bounds and torn ends."""

from __future__ import annotations

import socket
import threading

import pytest

from sandbox.errors import FrameError
from sandbox.framing import HEADER, encode_frame
from sandbox.worker import RECV_CHUNK_BYTES, FrameReader


def _pair() -> tuple[socket.socket, socket.socket]:
    return socket.socketpair()


def test_pipelined_frames_arrive_in_order_and_are_seen_as_buffered() -> None:
    ours, theirs = _pair()
    theirs.sendall(b"".join(encode_frame(bytes([i]) * (i + 1)) for i in range(5)))
    reader = FrameReader(ours, 1024)
    assert reader.read() == b"\x00"
    assert reader.buffered()
    assert [reader.read() for _ in range(4)] == [bytes([i]) * (i + 1) for i in range(1, 5)]
    assert not reader.buffered()
    theirs.close()
    assert reader.read() is None


def test_frame_larger_than_a_chunk_is_read_whole() -> None:
    ours, theirs = _pair()
    payload = bytes(range(256)) * (3 * RECV_CHUNK_BYTES // 256 + 7)
    sender = threading.Thread(target=theirs.sendall, args=(encode_frame(payload) + encode_frame(b"next"),))
    sender.start()
    reader = FrameReader(ours, len(payload))
    assert reader.read() == payload
    assert reader.read() == b"next"
    sender.join()


def test_oversized_frame_is_refused_before_allocation() -> None:
    ours, theirs = _pair()
    theirs.sendall(HEADER.pack(10**9))
    with pytest.raises(FrameError):
        FrameReader(ours, 1024).read()


@pytest.mark.parametrize("torn", [b"\x00\x00", HEADER.pack(10) + b"abc"])
def test_connection_closed_mid_frame_is_an_error(torn: bytes) -> None:
    ours, theirs = _pair()
    theirs.sendall(torn)
    theirs.close()
    with pytest.raises(FrameError):
        FrameReader(ours, 1024).read()


def test_empty_frame() -> None:
    ours, theirs = _pair()
    theirs.sendall(encode_frame(b""))
    assert FrameReader(ours, 1024).read() == b""
