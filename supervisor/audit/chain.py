"""The hash chain: how one audit entry becomes one line of a segment, and back. Pure.

A line is the RFC 8785 encoding of the entry's body with one member appended at the end,
``"hash"``, the RFC 6962 leaf hash of those canonical body bytes::

    {"action":"predict",…,"prev":"<hash of entry seq-1>","seq":41,"type":"call","v":1,"hash":"<hex>"}

The body holds ``prev``, so each hash covers every entry before it; the same hash is the
entry's Merkle leaf, so signed checkpoints cover the chain. A reader hashes the stored
bytes themselves: any change to any byte of a body changes its hash.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.audit.canonical import CanonicalizationError, canonical_json
from supervisor.audit.merkle import leaf_hash

__all__ = [
    "FORMAT_VERSION",
    "GENESIS",
    "RESERVED",
    "Entry",
    "LineError",
    "encode_entry",
    "encode_entry_hex",
    "parse_line",
]

FORMAT_VERSION = 1
# The `prev` of the very first entry.
GENESIS = "0" * 64
# Members the chain owns; a record passed to the writer may not set them.
RESERVED = frozenset({"seq", "prev", "hash", "v"})

_HASH_PREFIX = b',"hash":"'
_SUFFIX_LEN = len(_HASH_PREFIX) + 64 + 2  # ,"hash":"<64 hex>"}
_HEX = re.compile(rb"[0-9a-f]{64}")


class LineError(ValueError):
    """A line is not a well-formed entry, or its hash does not match its bytes."""

    def __init__(self, message: str, *, hash_mismatch: bool = False, seq: int | None = None) -> None:
        super().__init__(message)
        self.hash_mismatch = hash_mismatch
        self.seq = seq


@dataclass(frozen=True, slots=True)
class Entry:
    """One verified-against-itself line: its hash matches its bytes (not yet its neighbours)."""

    seq: int
    prev: str
    hash: bytes
    body: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.body.get("type", ""))


def encode_entry(body: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The line (with its newline) and leaf hash for ``body``, which holds seq, prev, type and v."""
    line, digest, _ = encode_entry_hex(body)
    return line, digest


def encode_entry_hex(body: Mapping[str, Any]) -> tuple[bytes, bytes, str]:
    """:func:`encode_entry`, plus the hash in hex (the next entry's ``prev``)."""
    try:
        canonical = canonical_json(body)
    except (CanonicalizationError, TypeError, ValueError, RecursionError) as exc:
        raise LineError(f"audit record is not canonical JSON: {exc}") from exc
    digest = leaf_hash(canonical)
    hexdigest = digest.hex()
    return b"".join((canonical[:-1], _HASH_PREFIX, hexdigest.encode("ascii"), b'"}\n')), digest, hexdigest


def _seq_hint(body_bytes: bytes) -> int | None:
    match = re.search(rb'"seq":(\d{1,19})[,}]', body_bytes)
    return int(match.group(1)) if match else None


def parse_line(line: bytes, *, strict: bool = False) -> Entry:
    """Parse one line (without its newline); LineError when malformed or its hash is wrong.

    ``strict`` also checks the body is in RFC 8785 form: a non-canonical body (duplicate
    keys, reordered members) hashes consistently but could read differently elsewhere.
    """
    if len(line) <= _SUFFIX_LEN or line[-_SUFFIX_LEN : -_SUFFIX_LEN + len(_HASH_PREFIX)] != _HASH_PREFIX:
        raise LineError("not an audit entry (no trailing hash member)", seq=_seq_hint(line))
    stored = line[-66:-2]
    if not line.endswith(b'"}') or not _HEX.fullmatch(stored):
        raise LineError("not an audit entry (malformed hash member)", seq=_seq_hint(line))
    body_bytes = line[:-_SUFFIX_LEN] + b"}"
    digest = leaf_hash(body_bytes)
    if digest.hex().encode("ascii") != stored:
        raise LineError(
            f"hash mismatch: stored {stored.decode()}, computed {digest.hex()}",
            hash_mismatch=True,
            seq=_seq_hint(body_bytes),
        )
    try:
        body = json.loads(body_bytes)
    except (ValueError, UnicodeDecodeError) as exc:
        raise LineError(f"not JSON: {exc}", seq=_seq_hint(body_bytes)) from exc
    if not isinstance(body, dict):
        raise LineError("not a JSON object")
    seq, prev = body.get("seq"), body.get("prev")
    if type(seq) is not int or seq < 0 or not isinstance(prev, str) or len(prev) != 64:
        raise LineError(f"bad seq {seq!r} or prev {prev!r}", seq=seq if type(seq) is int else None)
    if strict:
        try:
            canonical = canonical_json(body)
        except (CanonicalizationError, TypeError, ValueError) as exc:
            raise LineError(f"body has no canonical form: {exc}", seq=seq) from exc
        if canonical != body_bytes:
            raise LineError("body is not in RFC 8785 canonical form", seq=seq)
    return Entry(seq, prev, digest, body)
