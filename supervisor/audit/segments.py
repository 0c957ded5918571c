"""Where the audit log lives on disk: segment names, the side file, reading lines. I/O only.

Layout of the audit directory:

- ``seg-<first seq, 20 digits>.jsonl``: the segments, JSON Lines, oldest first;
- ``checkpoints.jsonl``: every signed checkpoint and retention record again, one per line,
  so that cutting the tail off a segment (checkpoints included) still leaves a signed
  statement that the cut entries existed (CloudTrail keeps its digests apart likewise);
- ``.lock``: the ``flock`` every writer process takes around an append;
- ``torn/``: the bytes a torn-tail repair cut off, kept for forensics.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "LOCK_FILE",
    "SIDE_FILE",
    "TORN_DIR",
    "find_last",
    "iter_lines",
    "last_line",
    "list_segments",
    "read_side_file",
    "segment_name",
]

SIDE_FILE = "checkpoints.jsonl"
LOCK_FILE = ".lock"
TORN_DIR = "torn"
_SEGMENT = re.compile(r"seg-(\d{20})\.jsonl")
_CHUNK = 1 << 20


def segment_name(first_seq: int) -> str:
    return f"seg-{first_seq:020d}.jsonl"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of every segment, by first seq."""
    found = []
    for name in os.listdir(directory):
        match = _SEGMENT.fullmatch(name)
        if match:
            found.append((int(match.group(1)), directory / name))
    return sorted(found)


def iter_lines(path: Path, limit: int | None = None) -> Iterator[tuple[int, bytes, bool]]:
    """(offset, line without newline, complete) for each line of ``path`` up to ``limit`` bytes."""
    with path.open("rb") as f:
        offset = 0
        rest = b""
        remaining = limit
        while True:
            size = _CHUNK if remaining is None else min(_CHUNK, remaining)
            chunk = f.read(size) if size else b""
            if remaining is not None:
                remaining -= len(chunk)
            if not chunk:
                break
            data = rest + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            for line in lines:
                yield offset, line, True
                offset += len(line) + 1
        if rest:
            yield offset, rest, False


def last_line(path: Path) -> bytes | None:
    """The last complete line of ``path`` (without its newline), or None."""
    with path.open("rb") as f:
        pos = f.seek(0, os.SEEK_END)
        tail = b""
        while True:
            term = tail.rfind(b"\n")
            if term >= 0:
                start = tail.rfind(b"\n", 0, term)
                if start >= 0:
                    return tail[start + 1 : term]
                if pos == 0:
                    return tail[:term]
            elif pos == 0:
                return None
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail


def find_last(path: Path, needle: bytes, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of complete lines holding ``needle``, last first, before ``end``."""
    size = path.stat().st_size if end is None else end
    if size == 0:
        return
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        idx = mm.rfind(needle, 0, size)
        while idx >= 0:
            start = mm.rfind(b"\n", 0, idx) + 1
            stop = mm.find(b"\n", idx, size)
            if stop >= 0:
                yield start, mm[start:stop]
            idx = mm.rfind(needle, 0, start)


def read_side_file(directory: Path) -> tuple[list[dict[str, Any]], int]:
    """The side file's entries, and how many of its lines were not JSON objects."""
    path = directory / SIDE_FILE
    entries: list[dict[str, Any]] = []
    bad = 0
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return entries, bad
    # A last line without its newline is a write in progress: not read yet.
    for line in data.split(b"\n")[:-1]:
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(value, dict):
            entries.append(value)
        else:
            bad += 1
    return entries, bad
