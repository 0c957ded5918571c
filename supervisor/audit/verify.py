"""Verifying the whole log: chain, Merkle roots, signatures, segments and the side file.

:class:`LogVerifier` is the core, a state machine fed one line at a time with no I/O;
:func:`verify_log` feeds it the segments of a directory. The first damage found stops it
and is reported with its kind and place: the first bad sequence number, or the segment.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.audit.chain import GENESIS, Entry, LineError, parse_line
from supervisor.audit.keys import AuditPublicKey
from supervisor.audit.merkle import Frontier
from supervisor.audit.segments import LOCK_FILE, SIDE_FILE, iter_lines, list_segments, read_side_file, segment_name
from supervisor.audit.statements import checkpoint_message, retention_message, signature_valid
from supervisor.errors import IreError

__all__ = ["AuditTamperedError", "Damage", "DamageKind", "LogVerifier", "VerifyReport", "verify_log"]


class DamageKind(enum.StrEnum):
    MODIFIED = "modified"  # bytes of an entry changed (or an entry replaced)
    DELETED = "deleted"  # entries or a whole segment missing from the middle
    REORDERED = "reordered"  # entries present but out of order
    TRUNCATED = "truncated"  # the end of a segment or of the log cut off
    BAD_SIGNATURE = "bad-signature"  # a checkpoint or retention record not signed by the key


@dataclass(frozen=True)
class Damage:
    kind: DamageKind
    detail: str
    seq: int | None = None
    segment: str | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"seq {self.seq}")
        if self.segment is not None:
            where.append(f"segment {self.segment}")
        return f"{self.kind} at {', '.join(where) or 'log'}: {self.detail}"


class AuditTamperedError(IreError):
    """The audit log (or a bundle) fails verification; ``damage`` says where and how."""

    def __init__(self, damage: Damage) -> None:
        super().__init__(str(damage))
        self.damage = damage


@dataclass
class VerifyReport:
    entries: int = 0
    records: int = 0
    segments: int = 0
    checkpoints: int = 0
    first_seq: int = 0
    next_seq: int = 0
    last_checkpoint_size: int = 0
    retention_boundary: int | None = None
    in_progress_bytes: int = 0
    key_id: str = ""
    roots: dict[int, str] = field(default_factory=dict)

    @property
    def unsigned_tail(self) -> int:
        """Entries after the last checkpoint: chained, not yet signed."""
        return self.next_seq - self.last_checkpoint_size - (1 if self.checkpoints else 0)

    def summary(self) -> str:
        parts = [
            f"{self.entries} entries (seq {self.first_seq}..{self.next_seq - 1}) in {self.segments} segments",
            f"{self.checkpoints} checkpoints signed by key {self.key_id}",
        ]
        if self.retention_boundary is not None:
            parts.append(f"entries before seq {self.retention_boundary} removed by retention (signed)")
        if self.unsigned_tail > 0:
            parts.append(f"{self.unsigned_tail} entries after the last checkpoint are chained but not yet signed")
        return "; ".join(parts)


def _damage(kind: DamageKind, detail: str, seq: int | None = None, segment: str | None = None) -> AuditTamperedError:
    return AuditTamperedError(Damage(kind, detail, seq, segment))


def checkpoint_fields(entry: Mapping[str, Any], head: str) -> dict[str, Any]:
    return {
        "size": entry.get("size"),
        "root": entry.get("root"),
        "head": head,
        "time": entry.get("time"),
        "key_id": entry.get("key_id"),
    }


class LogVerifier:
    """Checks entries fed in log order. Pure: callers do the reading."""

    def __init__(self, public: AuditPublicKey, *, strict: bool = True) -> None:
        self._public = public
        self._strict = strict
        self.report = VerifyReport(key_id=public.key_id)
        self._seq = 0
        self._prev = GENESIS
        self._frontier = Frontier()
        self._last_good_checkpoint = -1
        self._sealed = False
        self._segment = ""

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def sealed(self) -> bool:
        return self._sealed

    def start_at(self, seq: int, prev: str, frontier: Frontier) -> None:
        """Resume after a retention boundary, from its signed anchor."""
        self._seq, self._prev, self._frontier = seq, prev, frontier
        self._last_good_checkpoint = seq - 1
        self.report.first_seq = seq
        self.report.retention_boundary = seq

    def start_segment(self, name: str) -> None:
        self._segment = name
        self._sealed = False
        self.report.segments += 1

    def feed(self, line: bytes) -> Entry:
        """Check one line; AuditTamperedError at the first damage."""
        seg = self._segment
        try:
            entry = parse_line(line, strict=self._strict)
        except LineError as exc:
            raise _damage(DamageKind.MODIFIED, str(exc), exc.seq if exc.seq is not None else self._seq, seg) from exc
        if self._sealed:
            raise _damage(DamageKind.MODIFIED, "entry after the segment's seal", entry.seq, seg)
        if entry.seq != self._seq:
            raise _damage(DamageKind.DELETED, f"got seq {entry.seq}, expected {self._seq}", self._seq, seg)
        if entry.prev != self._prev:
            raise _damage(
                DamageKind.MODIFIED,
                f"its hash is no longer the prev of seq {entry.seq} "
                f"(got {entry.prev[:16]}…, computed {self._prev[:16]}…)",
                entry.seq - 1,
                seg,
            )
        kind = entry.type
        if kind == "checkpoint":
            self._check_checkpoint(entry)
        elif kind == "retention":
            if not signature_valid(self._public, retention_message(entry.body), entry.body.get("sig")):
                raise _damage(DamageKind.BAD_SIGNATURE, "retention record not signed by the audit key", entry.seq, seg)
        elif kind in ("call", "admin"):
            self.report.records += 1
        self._frontier.append(entry.hash)
        self._seq = entry.seq + 1
        self._prev = entry.hash.hex()
        self.report.entries += 1
        self.report.next_seq = self._seq
        return entry

    def _check_checkpoint(self, entry: Entry) -> None:
        body, seg = entry.body, self._segment
        if body.get("key_id") != self._public.key_id:
            raise _damage(
                DamageKind.BAD_SIGNATURE,
                f"checkpoint signed by key {body.get('key_id')!r}, expected {self._public.key_id!r}",
                entry.seq,
                seg,
            )
        if body.get("size") != entry.seq:
            raise _damage(DamageKind.MODIFIED, f"checkpoint size {body.get('size')} at seq {entry.seq}", entry.seq, seg)
        root = self._frontier.root().hex()
        if body.get("root") != root:
            first = self._last_good_checkpoint + 1
            raise _damage(
                DamageKind.MODIFIED,
                f"entries {first}..{entry.seq - 1} do not hash to the signed root of checkpoint {entry.seq}",
                first,
                seg,
            )
        # After the root: entries rewritten under an intact checkpoint read as "modified";
        # a checkpoint whose root is right but whose signature fails is a forgery.
        if not signature_valid(self._public, checkpoint_message(checkpoint_fields(body, entry.prev)), body.get("sig")):
            raise _damage(DamageKind.BAD_SIGNATURE, "checkpoint signature does not verify", entry.seq, seg)
        self._last_good_checkpoint = entry.seq
        self.report.checkpoints += 1
        self.report.last_checkpoint_size = entry.seq
        self.report.roots[entry.seq] = root
        self._sealed = bool(body.get("seal"))


def _snapshot(directory: Path) -> tuple[list[tuple[int, Path, int]], list[dict[str, Any]], int]:
    """Segments with their sizes and the side file, read under the writers' lock (shared)."""
    lock_fd = -1
    with contextlib.suppress(OSError):
        lock_fd = os.open(directory / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if lock_fd >= 0:
            fcntl.flock(lock_fd, fcntl.LOCK_SH)
        segments = [(start, path, path.stat().st_size) for start, path in list_segments(directory)]
        side, bad = read_side_file(directory)
    finally:
        if lock_fd >= 0:
            os.close(lock_fd)
    return segments, side, bad


def _seq_present(segments: Iterable[tuple[int, Path, int]], seq: int) -> bool:
    pattern = re.compile(rb'"seq":%d[,}]' % seq)
    for _, path, size in segments:
        for _, line, _ in iter_lines(path, size):
            if pattern.search(line):
                return True
    return False


def _verified_side(public: AuditPublicKey, side: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for entry in side:
        kind = entry.get("type")
        if kind == "checkpoint":
            message = checkpoint_message(checkpoint_fields(entry, str(entry.get("head"))))
        elif kind == "retention":
            message = retention_message(entry)
        else:
            raise _damage(DamageKind.MODIFIED, f"unknown entry type {kind!r}", segment=SIDE_FILE)
        if entry.get("key_id") != public.key_id or not signature_valid(public, message, entry.get("sig")):
            size = entry.get("size", entry.get("first_kept_seq"))
            raise _damage(
                DamageKind.BAD_SIGNATURE,
                f"{kind} of size {size} not signed by audit key {public.key_id}",
                size if isinstance(size, int) else None,
                SIDE_FILE,
            )
    return side


def verify_log(directory: Path, public: AuditPublicKey, *, strict: bool = True) -> VerifyReport:
    """Verify everything in ``directory``; AuditTamperedError names the first damage."""
    segments, side, bad_side_lines = _snapshot(directory)
    if bad_side_lines:
        raise _damage(DamageKind.MODIFIED, f"{bad_side_lines} lines are not JSON", segment=SIDE_FILE)
    side = _verified_side(public, side)
    verifier = LogVerifier(public, strict=strict)
    anchors = {e["first_kept_seq"]: e for e in side if e.get("type") == "retention"}
    if segments and segments[0][0] > 0:
        start = segments[0][0]
        anchor = anchors.get(start)
        if anchor is None:
            earlier = [s for s in anchors if s < start]
            missing = max(earlier) if earlier else 0
            raise _damage(
                DamageKind.DELETED,
                f"segment removed: the log starts at seq {start} and no signed retention record "
                f"covers seq {missing}..{start - 1}",
                missing,
                segment_name(missing),
            )
        nodes = [bytes.fromhex(n) for n in anchor["anchor_frontier"]]
        verifier.start_at(start, anchor["anchor_prev"], Frontier(start, nodes))
    for index, (start, path, size) in enumerate(segments):
        expected = verifier.next_seq
        if start != expected:
            if start > expected and verifier.sealed:
                raise _damage(
                    DamageKind.DELETED,
                    f"segment removed: seq {expected}..{start - 1} missing; next segment is {path.name}",
                    expected,
                    segment_name(expected),
                )
            if start > expected:
                raise _damage(
                    DamageKind.TRUNCATED,
                    f"segment ends at seq {expected - 1} without its seal; next segment starts at {start}",
                    expected,
                    segments[index - 1][1].name if index else path.name,
                )
            raise _damage(DamageKind.REORDERED, f"segment starts at seq {start}, expected {expected}", start, path.name)
        verifier.start_segment(path.name)
        last = index == len(segments) - 1
        for _, line, complete in iter_lines(path, size):
            if not complete:
                if last:
                    verifier.report.in_progress_bytes = len(line)  # a write in progress, or a torn tail
                    break
                raise _damage(DamageKind.TRUNCATED, "partial last line", verifier.next_seq, path.name)
            try:
                verifier.feed(line)
            except AuditTamperedError as exc:
                damage = exc.damage
                if damage.kind == DamageKind.DELETED and damage.seq is not None:
                    later = [s for s in segments if s[0] >= start]
                    if _seq_present(later, damage.seq):
                        raise _damage(
                            DamageKind.REORDERED, f"seq {damage.seq} appears later in the log", damage.seq, path.name
                        ) from exc
                raise
    report = verifier.report
    report.next_seq = verifier.next_seq
    for entry in side:
        if entry.get("type") != "checkpoint":
            continue
        signed = entry.get("size")
        if not isinstance(signed, int):
            raise _damage(DamageKind.MODIFIED, f"checkpoint with size {signed!r}", segment=SIDE_FILE)
        size = signed
        if size >= verifier.next_seq:
            raise _damage(
                DamageKind.TRUNCATED,
                f"a signed checkpoint covers {size} entries but the log ends at seq {verifier.next_seq - 1}",
                verifier.next_seq,
                segments[-1][1].name if segments else None,
            )
        if size < report.first_seq:
            continue  # before the retention boundary: only its signature can be checked
        if report.roots.get(size) != entry.get("root"):
            raise _damage(
                DamageKind.MODIFIED,
                f"the log's tree at size {size} does not match the signed checkpoint in {SIDE_FILE}",
                size,
            )
    return report
