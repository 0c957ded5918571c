"""A worker's shared-memory regions: large tensors copied once instead of through frames.

Without them a tensor's bytes are copied into a frame, through the socket and out of it
again, on both sides. Each live worker can have two regions (memfds):

- the **input region** (:class:`InputRegion`): the supervisor copies a large input into
  it once, and the frame says where it is (``Tensor.region_offset``, ``region_length``);
- the **output region** (:class:`OutputRegion`): a request whose outputs will be large
  gets a range of it (``InferRequest.output_region_offset``, ``output_region_length``),
  the worker writes its outputs there straight from ONNX Runtime's arrays, and the
  supervisor copies them out once when the reply arrives.

The trust boundary stays where it was:

- the supervisor makes each region, maps it, then seals it before the worker gets it:
  ``F_SEAL_SHRINK`` and ``F_SEAL_GROW``, so the worker cannot change its size and make a
  supervisor mapping fault; the input region also ``F_SEAL_FUTURE_WRITE``, so no new
  writable shared mapping of it can be made, and the worker can only read it;
- the supervisor maps the output region read-only and never reads the input region back.
  An output is copied out of the worker's range when its reply arrives, before any check,
  and only that copy is checked, digested and answered with: what the worker writes there
  later changes nothing. A range outside the one the request gave is a protocol violation;
- one pair of regions per worker, and a worker serves one tenant: what a region holds is
  that tenant's own tensors.

A range is given back when the call's reply (or a late one) arrives, or when the
connection ends; the worker reads the frames in order, so ranges come back in the order
they were taken. When a region is empty the next range starts at its beginning again,
so a worker that serves one call at a time keeps only its largest call's bytes resident.
A tensor that does not fit travels in the frame, as before.

No library does this: ``multiprocessing.shared_memory`` names its segments in /dev/shm,
where any process of the same uid could open them, and cannot seal them.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import mmap
import os

__all__ = ["InputRegion", "OutputRegion"]

# Not in Python's fcntl module before 3.12 (linux/fcntl.h): no writable shared mapping
# can be made once it is set; mappings made before it keep their access.
F_SEAL_FUTURE_WRITE = 0x0010
_FIXED_SIZE = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
_ALIGN = 64  # each range starts on a cache line (ONNX Runtime prefers aligned tensors)


def align(length: int) -> int:
    """``length`` rounded up to a whole number of cache lines, as ranges are laid out."""
    return (length + _ALIGN - 1) & ~(_ALIGN - 1)


class _Region:
    """A sealed memfd mapped here, and the ranges of it in use. Event-loop thread only."""

    def __init__(self, size: int, name: str, prot: int, seals: int) -> None:
        self.size = size
        fd = os.memfd_create(name, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size, mmap.MAP_SHARED, prot)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
        except BaseException:
            os.close(fd)
            raise
        self._fd: int | None = fd
        # [start, returned] of every range taken and not yet given back, oldest first.
        self._ranges: collections.deque[list[int]] = collections.deque()
        self._head = 0

    def take_fd(self) -> int:
        """The memfd, for the spawn request; the caller closes it once it is sent."""
        fd, self._fd = self._fd, None
        if fd is None:
            raise RuntimeError("the region's descriptor was already handed over")
        return fd

    @property
    def in_use(self) -> int:
        """Bytes between the oldest range not given back and the next free byte."""
        if not self._ranges:
            return 0
        start = self._ranges[0][0]
        return self._head - start if self._head >= start else self.size - start + self._head

    def _take(self, length: int) -> int | None:
        """A free range of ``length`` bytes, now in use; its offset, or None when none is free."""
        size = align(length)
        start = self._place(size)
        if start is None:
            return None
        self._ranges.append([start, 0])
        self._head = start + size
        return start

    def _place(self, size: int) -> int | None:
        if not self._ranges:
            return 0 if size <= self.size else None
        tail, head = self._ranges[0][0], self._head
        if head == tail:  # ranges wrapped round and meet: full
            return None
        if head > tail:  # free: [head, size) and [0, tail)
            if size <= self.size - head:
                return head
            return 0 if size <= tail else None
        return head if size <= tail - head else None  # free: [head, tail)

    def give_back(self, start: int) -> None:
        """The range at ``start`` is no longer used by the worker."""
        for entry in self._ranges:
            if entry[0] == start and not entry[1]:
                entry[1] = 1
                break
        while self._ranges and self._ranges[0][1]:
            self._ranges.popleft()
        if not self._ranges:
            self._head = 0

    def close(self) -> None:
        self._ranges.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        with contextlib.suppress(BufferError):
            self._map.close()


class InputRegion(_Region):
    """The region the supervisor writes large inputs into; the worker maps it read-only."""

    def __init__(self, size: int, name: str = "ire-inputs") -> None:
        super().__init__(size, name, mmap.PROT_READ | mmap.PROT_WRITE, _FIXED_SIZE | F_SEAL_FUTURE_WRITE)

    def put(self, data: bytes) -> int | None:
        """Copy ``data`` into a free range; its offset, or None when none is free."""
        start = self._take(len(data))
        if start is not None:
            self._map[start : start + len(data)] = data
        return start


class OutputRegion(_Region):
    """The region the worker writes large outputs into; mapped read-only here."""

    def __init__(self, size: int, name: str = "ire-outputs") -> None:
        super().__init__(size, name, mmap.PROT_READ, _FIXED_SIZE)

    def reserve(self, length: int) -> int | None:
        """A free range of ``length`` bytes for a request's outputs; its offset, or None."""
        return self._take(length)

    def read(self, start: int, length: int) -> bytes:
        """A copy of ``length`` bytes at ``start`` (the caller checked the range)."""
        return self._map[start : start + length]
