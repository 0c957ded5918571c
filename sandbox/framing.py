"""Length-prefixed frames: a 4-byte big-endian length, then one protobuf message.

The blocking helpers here serve the worker side; the supervisor reads the same format
with asyncio streams. The reader bounds the length before allocating, so a peer cannot
make the other side reserve an arbitrary amount of memory.
"""

from __future__ import annotations

import socket
import struct

from sandbox.errors import FrameError

HEADER = struct.Struct(">I")


def encode_frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length."""
    return HEADER.pack(len(payload)) + payload


def parse_header(header: bytes, max_bytes: int) -> int:
    """Return the payload length announced by ``header``, refusing lengths over ``max_bytes``."""
    length: int = HEADER.unpack(header)[0]
    if length > max_bytes:
        raise FrameError(f"frame of {length} bytes announced, limit is {max_bytes}")
    return length


def _recv_exact(sock: socket.socket, size: int) -> bytes | None:
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            if got == 0:
                return None
            raise FrameError(f"connection closed after {got} of {size} bytes")
        got += n
    return bytes(buf)


def read_frame(sock: socket.socket, max_bytes: int) -> bytes | None:
    """Read one frame's payload; ``None`` on a clean end of stream."""
    header = _recv_exact(sock, HEADER.size)
    if header is None:
        return None
    length = parse_header(header, max_bytes)
    if length == 0:
        return b""
    payload = _recv_exact(sock, length)
    if payload is None:
        raise FrameError(f"connection closed before a {length}-byte payload")
    return payload


def write_frame(sock: socket.socket, payload: bytes) -> None:
    """Send one frame."""
    sock.sendall(encode_frame(payload))
