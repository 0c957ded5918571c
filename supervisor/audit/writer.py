"""Appends audit entries to the hash-chained, checkpointed, segmented log.

The hot path, :meth:`AuditWriter.append_many` (the records of the calls that finished in
one event-loop turn, supervisor/audit/turn.py; :meth:`AuditWriter.append` for one record),
returns once the entries' lines are written to the kernel (``write(2)``), before the calls'
replies are sent; a background thread fsyncs at most
``audit.fsync_interval_ms`` later (group commit). Any failure to write or fsync makes the
writer refuse every later append with :class:`AuditWriteError`, so the caller refuses its
calls: no audit, no prediction.

Several processes append to the same log (``ire serve`` and the CLI's admin commands).
Each append holds an ``flock`` on ``.lock``; a writer that finds the segment longer than it
left it (one ``fstat``) first reads and checks what the others wrote, so there is one chain.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from supervisor.audit.canonical import canonical_json
from supervisor.audit.chain import FORMAT_VERSION, GENESIS, RESERVED, Entry, LineError, encode_entry_hex, parse_line
from supervisor.audit.keys import AuditKey
from supervisor.audit.merkle import Frontier
from supervisor.audit.reader import read_records  # re-exported: tests and the demo read through here
from supervisor.audit.segments import (
    LOCK_FILE,
    SIDE_FILE,
    TORN_DIR,
    find_last,
    last_line,
    list_segments,
    read_side_file,
    segment_name,
)
from supervisor.audit.statements import checkpoint_message, retention_message, sign_fields
from supervisor.errors import AuditWriteError
from supervisor.settings import AuditSettings

if TYPE_CHECKING:
    from supervisor.home import Home

__all__ = ["AuditWriter", "read_records"]

log = structlog.get_logger(__name__)

# The longest the background thread sleeps while the log is idle, when no deadline is nearer.
IDLE_PAUSE_SECONDS = 60.0
_CHECKPOINT_NEEDLE = b'"type":"checkpoint"'


def _frontier_from(entry: Entry) -> Frontier:
    """The tree after a checkpoint entry: its stored frontier plus its own leaf."""
    nodes = entry.body.get("frontier")
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise LineError(f"checkpoint at seq {entry.seq} has no frontier", seq=entry.seq)
    try:
        frontier = Frontier(entry.seq, [bytes.fromhex(n) for n in nodes])
    except ValueError as exc:
        raise LineError(f"checkpoint at seq {entry.seq}: {exc}", seq=entry.seq) from exc
    frontier.append(entry.hash)
    return frontier


class AuditWriter:
    """One process's handle on the audit log. Thread-safe; ``append_many`` is the hot path."""

    def __init__(
        self,
        directory: Path,
        key: AuditKey,
        settings: AuditSettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._key = key
        self._settings = settings or AuditSettings()
        self._clock = clock
        self._lock = threading.Lock()
        self._failed: str | None = None
        self._closed = False
        self._fd = -1
        self._segment = ""
        self._offset = 0
        self._generation = 0
        self._seq = 0
        self._prev = GENESIS
        self._frontier = Frontier()
        self._last_checkpoint_seq = -1
        self._last_checkpoint_time = 0.0
        self._segment_time = 0.0
        self._sealed = False
        self._dirty = False
        self._retention_due = False
        self._pending: list[tuple[int, int, bytes]] = []  # (generation, end offset, side-file line)
        # Records written but not yet fsynced (the group commit's backlog), for metrics.
        self._unsynced = 0
        self._stop = threading.Event()
        # The background thread sleeps until an append or its next deadline while the log
        # is idle (``_idle``); the first append after that wakes it through ``_wake``.
        self._wake = threading.Event()
        self._idle = False
        self._thread: threading.Thread | None = None
        try:
            self._lock_fd = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise AuditWriteError(f"cannot open audit log {directory}: {exc}") from exc
        try:
            self._flock()
            try:
                self._open_tail()
            finally:
                self._funlock()
        except AuditWriteError:
            self._release_fds()
            raise
        except (OSError, LineError) as exc:
            self._release_fds()
            raise AuditWriteError(f"cannot open audit log {directory}: {exc}") from exc

    @classmethod
    def for_home(cls, home: Home, settings: AuditSettings | None = None) -> AuditWriter:
        """The writer for ``home``'s log, signing with its audit key."""
        from supervisor.audit.admin import load_audit_key

        return cls(home.audit_dir, load_audit_key(home), settings or home.settings().audit)

    # -- the hot path -------------------------------------------------------------------

    def append(self, record: Mapping[str, Any]) -> None:
        """Chain ``record`` and write it; AuditWriteError when it cannot be recorded."""
        error = self.append_many((record,))[0]
        if error is not None:
            raise error

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> list[AuditWriteError | None]:
        """Chain ``records`` in order and write them together: one lock, and one ``write(2)``
        for each run of them between the checkpoints and rotations that one append a record
        would have made (the log comes out the same).

        Returns one entry per record: None once its line is written, or the error that
        kept it out of the log: its own (a reserved key, a value with no canonical JSON)
        or the log's failure, which every record not yet written gets.
        """
        errors: list[AuditWriteError | None] = [
            AuditWriteError(f"audit record may not set {sorted(RESERVED.intersection(r))}")
            if RESERVED.intersection(r)
            else None
            for r in records
        ]
        todo = [i for i, error in enumerate(errors) if error is None]
        written = 0  # of todo, in the log
        with self._lock:
            if self._failed is not None:
                return [error or AuditWriteError(self._failed) for error in errors]
            if self._thread is None:
                self._start_thread()
            self._flock()
            try:
                if os.fstat(self._fd).st_size != self._offset:
                    self._catch_up()
                settings, taken = self._settings, 0
                while taken < len(todo):
                    # A run ends where a checkpoint or a rotation is due, as one by one.
                    room = settings.checkpoint_every_records + 1 - (self._seq - self._last_checkpoint_seq)
                    entries: list[tuple[bytes, bytes, str]] = []
                    seq, prev, end = self._seq, self._prev, self._offset
                    while taken < len(todo) and (
                        not entries or (len(entries) < room and end < settings.segment_max_bytes)
                    ):
                        i = todo[taken]
                        taken += 1
                        try:
                            entry = _encode(records[i], seq, prev)
                        except LineError as exc:
                            errors[i] = AuditWriteError(str(exc))  # this record only: the log is fine
                            continue
                        entries.append(entry)
                        seq, prev, end = seq + 1, entry[2], end + len(entry[0])
                    self._write_entries(entries)
                    written = taken
                    self._unsynced += len(entries)
                    if self._seq - self._last_checkpoint_seq > settings.checkpoint_every_records:
                        self._checkpoint("count")
                    if self._offset >= settings.segment_max_bytes:
                        # Rare (once per segment): a seal, one fsync, a new file. Retention,
                        # which reads old segments, is left to the background thread.
                        self._rotate()
                        self._retention_due = True
            except (OSError, LineError, AuditWriteError) as exc:
                if self._failed is None:
                    self._fail(f"audit log failed: {type(exc).__name__}: {exc}")
                failure = AuditWriteError(self._failed or str(exc))
                for i in todo[written:]:
                    errors[i] = errors[i] or failure
            finally:
                self._funlock()
        return errors

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Records written to the log but not yet made durable by fsync."""
        return self._unsynced

    @property
    def failed(self) -> str | None:
        """Why the writer refuses appends, or None while it works."""
        return self._failed

    def checkpoint(self, reason: str = "request") -> int:
        """Write a checkpoint now (when entries follow the last one); the signed tree size."""
        with self._lock:
            self._raise_if_failed()
            self._flock()
            try:
                self._catch_up()
                if self._seq - self._last_checkpoint_seq > 1 or self._last_checkpoint_seq < 0:
                    self._checkpoint(reason)
                return self._last_checkpoint_seq
            except (OSError, LineError) as exc:
                self._fail(f"audit checkpoint failed: {type(exc).__name__}: {exc}")
                raise AuditWriteError(self._failed or "") from exc
            finally:
                self._funlock()

    def sync(self) -> None:
        """fsync now, and publish the durable checkpoints to the side file."""
        self._sync(force=True)
        self._raise_if_failed()

    def close(self, *, strict: bool = False) -> None:
        """Checkpoint what is unsigned, fsync and release; ``strict`` raises on failure."""
        if self._closed:
            return
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
        try:
            with self._lock:
                if self._failed is None:
                    self._flock()
                    try:
                        self._catch_up()
                        if self._seq - self._last_checkpoint_seq > 1:
                            self._checkpoint("close")
                        if self._rotation_due(self._clock()):
                            self._rotate()
                    finally:
                        self._funlock()
            self._sync(force=True)
        except (AuditWriteError, OSError, LineError) as exc:
            with self._lock:
                self._fail(f"audit log close failed: {exc}")
        finally:
            with self._lock:
                self._closed = True
                self._release_fds()
                if self._failed is None:
                    self._failed = "audit writer is closed"
        if strict and self._failed != "audit writer is closed":
            raise AuditWriteError(self._failed)

    def prune(self, now: float | None = None) -> list[str]:
        """Remove the segments past retention (with a signed record); their names."""
        return self._apply_retention(self._clock() if now is None else now)

    # -- internals: locking and failure -----------------------------------------------------

    def _flock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)

    def _funlock(self) -> None:
        fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _fail(self, message: str) -> None:
        if self._failed is None or self._failed == "audit writer is closed":
            self._failed = message
            log.error("audit log failed; refusing every later append", error=message)

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise AuditWriteError(self._failed)

    def _release_fds(self) -> None:
        for fd in (self._fd, self._lock_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = -1

    # -- internals: opening and following the tail ------------------------------------------

    def _side_size(self) -> int:
        """The largest tree size the side file says was signed (-1 when none)."""
        entries, _ = read_side_file(self.directory)
        sizes = [e.get("size") for e in entries if e.get("type") == "checkpoint"]
        return max((s for s in sizes if isinstance(s, int)), default=-1)

    def _retention_anchor(self, first_seq: int) -> tuple[Frontier, str] | None:
        """The tree and chain head a retention record says the log resumes from at ``first_seq``."""
        entries, _ = read_side_file(self.directory)
        for e in entries:
            if e.get("type") == "retention" and e.get("first_kept_seq") == first_seq:
                nodes, prev = e.get("anchor_frontier"), e.get("anchor_prev")
                if isinstance(nodes, list) and isinstance(prev, str):
                    return Frontier(first_seq, [bytes.fromhex(str(n)) for n in nodes]), prev
        return None

    def _open_tail(self) -> None:
        segments = list_segments(self.directory)
        if not segments:
            if self._side_size() >= 0:
                raise AuditWriteError(
                    f"audit log damaged: no segments in {self.directory} but checkpoints exist; run `ire audit verify`"
                )
            self._switch_segment(0)
            self._segment_time = self._clock()
            return
        start, path = segments[-1]
        resume = 0
        entry = None
        for offset, line in find_last(path, _CHECKPOINT_NEEDLE):
            try:
                candidate = parse_line(line)
            except LineError:
                continue  # damaged: the catch-up below decides torn tail or tampering
            if candidate.type == "checkpoint":
                entry, resume = candidate, offset + len(line) + 1
                break
        first = next(iter(_first_line(path)), None)
        if entry is not None:
            self._adopt(entry, _frontier_from(entry))
            self._sealed = bool(entry.body.get("seal"))
        elif len(segments) > 1:
            seal_line = last_line(segments[-2][1])
            seal = parse_line(seal_line) if seal_line is not None else None
            if seal is None or seal.type != "checkpoint" or seal.seq != start - 1:
                raise AuditWriteError(
                    f"audit log damaged: {segments[-2][1].name} does not end with the seal of seq {start - 1}; "
                    "run `ire audit verify`"
                )
            self._adopt(seal, _frontier_from(seal))
        elif start > 0:
            anchor = self._retention_anchor(start)
            if anchor is None:
                raise AuditWriteError(
                    f"audit log damaged: first segment starts at seq {start} with no retention record; "
                    "run `ire audit verify`"
                )
            (self._frontier, self._prev), self._seq = anchor, start
        self._open_segment(start, resume)
        self._segment_time = _entry_time(first) if first else self._clock()
        self._catch_up(side_size=self._side_size())
        signed = self._side_size()
        if signed >= self._seq:
            raise AuditWriteError(
                f"audit log truncated: a checkpoint signs {signed} entries but the log ends at seq "
                f"{self._seq - 1}; run `ire audit verify`"
            )

    def _adopt(self, entry: Entry, frontier: Frontier) -> None:
        """Take the state right after ``entry`` (a checkpoint)."""
        self._frontier = frontier
        self._seq = entry.seq + 1
        self._prev = entry.hash.hex()
        self._last_checkpoint_seq = entry.seq
        self._last_checkpoint_time = _as_time(entry.body.get("time"))

    def _open_segment(self, start: int, offset: int) -> None:
        fd = os.open(self.directory / segment_name(start), os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._segment, self._offset = fd, segment_name(start), offset
        self._generation += 1

    def _switch_segment(self, start: int) -> None:
        self._open_segment(start, 0)
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _catch_up(self, side_size: int | None = None) -> None:
        """Fold in what other writers appended since we last looked (under the flock)."""
        while True:
            size = os.fstat(self._fd).st_size
            if size < self._offset:
                self._fail(f"audit segment {self._segment} shrank from {self._offset} to {size} bytes under the writer")
                raise AuditWriteError(self._failed or "")
            data = os.pread(self._fd, size - self._offset, self._offset) if size > self._offset else b""
            pos = 0
            while pos < len(data):
                end = data.find(b"\n", pos)
                if end < 0:
                    self._repair(self._offset + pos, data[pos:], side_size)
                    return
                try:
                    entry = parse_line(data[pos:end])
                    if entry.seq != self._seq or entry.prev != self._prev:
                        raise LineError(f"got seq {entry.seq} prev {entry.prev[:16]}…, expected seq {self._seq}")
                except LineError as exc:
                    if _any_valid(data[end + 1 :]):
                        self._fail(
                            f"audit log damaged in {self._segment} at byte {self._offset + pos}: {exc}; "
                            "run `ire audit verify`"
                        )
                        raise AuditWriteError(self._failed or "") from exc
                    self._repair(self._offset + pos, data[pos:], side_size)
                    return
                self._fold(entry)
                pos = end + 1
            self._offset += len(data)
            if not self._sealed:
                return
            self._sealed = False
            self._switch_segment(self._seq)
            self._segment_time = self._clock()

    def _fold(self, entry: Entry) -> None:
        self._frontier.append(entry.hash)
        self._seq = entry.seq + 1
        self._prev = entry.hash.hex()
        self._sealed = False
        if entry.type == "checkpoint":
            self._last_checkpoint_seq = entry.seq
            self._last_checkpoint_time = _as_time(entry.body.get("time"))
            self._sealed = bool(entry.body.get("seal"))

    def _repair(self, offset: int, removed: bytes, side_size: int | None) -> None:
        """Cut a torn tail (a partial or garbled last write) and record the cut."""
        signed = self._side_size() if side_size is None else side_size
        if signed >= self._seq:
            self._fail(
                f"audit log damaged: bytes at {self._segment}:{offset} are covered by a checkpoint of size "
                f"{signed}; not repairing; run `ire audit verify`"
            )
            raise AuditWriteError(self._failed or "")
        torn = self.directory / TORN_DIR
        torn.mkdir(mode=0o700, exist_ok=True)
        saved = torn / f"{self._segment}.{offset}.bin"
        fd = os.open(saved, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, removed)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.ftruncate(self._fd, offset)
        self._offset = offset
        log.warning("audit log torn tail repaired", segment=self._segment, offset=offset, removed_bytes=len(removed))
        self._write_entry(
            {
                "type": "repair",
                "time": self._clock(),
                "action": "audit.repair",
                "segment": self._segment,
                "offset": offset,
                "removed_bytes": len(removed),
                "removed_sha256": hashlib.sha256(removed).hexdigest(),
                "saved_as": f"{TORN_DIR}/{saved.name}",
            }
        )
        os.fsync(self._fd)

    # -- internals: writing -------------------------------------------------------------------

    def _write_entry(self, record: Mapping[str, Any]) -> None:
        try:
            entry = _encode(record, self._seq, self._prev)
        except LineError as exc:
            raise AuditWriteError(str(exc)) from exc  # this record only: the log is fine
        self._write_entries([entry])

    def _write_entries(self, entries: list[tuple[bytes, bytes, str]]) -> None:
        """Write encoded entries in one ``write(2)``, then fold them into the chain and tree."""
        if not entries:
            return
        data = b"".join([line for line, _, _ in entries])
        try:
            written = os.write(self._fd, data)
        except OSError as exc:
            self._fail(f"cannot write audit log {self.directory / self._segment}: {exc}")
            raise AuditWriteError(self._failed or "") from exc
        if written != len(data):
            # A short write leaves half a line: cut it now if the disk lets us, else the
            # next writer to open the log repairs it as a torn tail.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._offset)
            self._fail(f"short write to audit log {self.directory / self._segment}: {written} of {len(data)} bytes")
            raise AuditWriteError(self._failed or "")
        self._offset += written
        for _, digest, _ in entries:
            self._frontier.append(digest)
        self._seq += len(entries)
        self._prev = entries[-1][2]
        self._dirty = True
        if self._idle:
            self._idle = False
            self._wake.set()

    def _checkpoint(self, reason: str, *, seal: bool = False) -> None:
        now = self._clock()
        fields = {
            "size": self._seq,
            "root": self._frontier.root().hex(),
            "head": self._prev,
            "time": now,
            "key_id": self._key.key_id,
        }
        signature = sign_fields(self._key, checkpoint_message(fields))
        seq = self._seq
        self._write_entry(
            {
                "type": "checkpoint",
                "time": now,
                "size": fields["size"],
                "root": fields["root"],
                "key_id": fields["key_id"],
                "sig": signature,
                "reason": reason,
                "seal": seal,
                "frontier": [node.hex() for node in self._frontier.nodes],
            }
        )
        # _write_entry folded the checkpoint's own leaf; the frontier stored is the one before.
        self._last_checkpoint_seq = seq
        self._last_checkpoint_time = now
        side = {"type": "checkpoint", **fields, "sig": signature, "segment": self._segment}
        self._pending.append((self._generation, self._offset, canonical_json(side) + b"\n"))

    def _rotation_due(self, now: float) -> bool:
        if self._offset == 0:
            return False
        s = self._settings
        return self._offset >= s.segment_max_bytes or now - self._segment_time >= s.segment_max_age_seconds

    def _rotate(self) -> None:
        """Seal the segment with a checkpoint, make it durable, and start the next one."""
        self._checkpoint("seal", seal=True)
        os.fsync(self._fd)
        ready = [line for _, _, line in self._pending]
        self._pending.clear()
        self._append_side(ready)
        self._switch_segment(self._seq)
        self._segment_time = self._clock()
        self._sealed = False

    def _append_side(self, lines: list[bytes]) -> None:
        if not lines:
            return
        fd = os.open(self.directory / SIDE_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"".join(lines))
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- internals: the background thread -------------------------------------------------------

    def _start_thread(self) -> None:
        # Started on first use, not in __init__: `ire serve` forks its launcher after
        # creating the writer, and nothing may fork a process that has extra threads.
        self._thread = threading.Thread(target=self._run, name="audit-group-commit", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        interval = self._settings.fsync_interval_ms / 1000
        while True:
            with self._lock:
                pause = self._pause(interval)
                idle = self._idle
            woken = self._wake.wait(pause)
            self._wake.clear()
            if self._stop.is_set():
                return
            # Woken from idle by an append: the interval starts now, so that the records of
            # the next interval share its fsync. Syncing at once cost an fsync for nearly
            # every call at a low steady rate (one call at a time: 0.4 fsyncs a call).
            if woken and idle and self._stop.wait(interval):
                return
            try:
                self._sync()
                self._housekeeping()
            except Exception as exc:  # noqa: BLE001 - the thread must not die silently
                with self._lock:
                    self._fail(f"audit background thread failed: {type(exc).__name__}: {exc}")

    def _pause(self, interval: float) -> float:
        """How long the thread may sleep: one group-commit interval while records wait for
        an fsync, else until the next time-based checkpoint or rotation (an append sooner
        wakes it). An idle server then costs no wake-up every interval."""
        self._idle = False
        if self._dirty or self._retention_due or self._failed is not None:
            return interval
        s, now, deadlines = self._settings, self._clock(), [IDLE_PAUSE_SECONDS]
        if self._seq - self._last_checkpoint_seq > 1:
            deadlines.append(self._last_checkpoint_time + s.checkpoint_interval_seconds - now)
        if self._offset:
            deadlines.append(self._segment_time + s.segment_max_age_seconds - now)
        self._idle = True
        return max(interval, min(deadlines))

    def _sync(self, *, force: bool = False) -> None:
        """Group commit: one fsync for everything written since the last one."""
        with self._lock:
            if self._fd < 0 or (not self._dirty and not force) or self._failed not in (None,):
                return
            fd = os.dup(self._fd)
            generation, upto = self._generation, self._offset
            self._dirty = False
            synced, self._unsynced = self._unsynced, 0
        try:
            os.fsync(fd)
        except OSError as exc:
            with self._lock:
                self._unsynced += synced
                self._fail(f"cannot fsync audit log {self.directory / self._segment}: {exc}")
            return
        finally:
            os.close(fd)
        with self._lock:
            ready = [p for p in self._pending if p[0] < generation or (p[0] == generation and p[1] <= upto)]
            self._pending = [p for p in self._pending if p not in ready]
        if ready:
            # Outside the locks: one O_APPEND write per batch keeps lines whole, and the
            # side file's own fsync must not hold up appends.
            try:
                self._append_side([line for _, _, line in ready])
            except OSError as exc:
                with self._lock:
                    self._fail(f"cannot write {SIDE_FILE}: {exc}")

    def _housekeeping(self) -> None:
        """Time-based checkpoint and rotation, then retention after a rotation."""
        now = self._clock()
        rotated = False
        with self._lock:
            if self._failed is not None:
                return
            retention_due, self._retention_due = self._retention_due, False
            unsigned = self._seq - self._last_checkpoint_seq > 1
            checkpoint_due = unsigned and now - self._last_checkpoint_time >= self._settings.checkpoint_interval_seconds
            if checkpoint_due or self._rotation_due(now):
                self._flock()
                try:
                    self._catch_up()
                    if self._rotation_due(now):
                        self._rotate()
                        rotated = True
                    elif self._seq - self._last_checkpoint_seq > 1:
                        self._checkpoint("interval")
                except (OSError, LineError) as exc:
                    self._fail(f"audit housekeeping failed: {exc}")
                    return
                finally:
                    self._funlock()
        if rotated or retention_due:
            self._retain(now)

    def _retain(self, now: float) -> None:
        try:
            self._apply_retention(now)
        except (OSError, LineError, AuditWriteError) as exc:
            # Old segments that cannot be removed do not stop auditing; they stay.
            log.error("audit retention failed; segments kept", error=str(exc))

    # -- internals: retention ---------------------------------------------------------------------

    def _apply_retention(self, now: float) -> list[str]:
        """Remove whole sealed segments older than the retention period, oldest first.

        The current segment and the one before it are always kept (the writer resumes from
        the latter's seal). A signed retention record, chained into the log and copied to
        the side file, names what went and anchors the chain and tree where the log resumes.
        """
        horizon = now - self._settings.retention_days * 86400
        removable: list[tuple[Path, Entry, str]] = []
        for _, path in list_segments(self.directory)[:-2]:
            line = last_line(path)
            seal = parse_line(line) if line is not None else None
            if seal is None or not seal.body.get("seal") or _as_time(seal.body.get("time")) >= horizon:
                break
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            removable.append((path, seal, digest))
        if not removable:
            return []
        last_seal = removable[-1][1]
        anchor = _frontier_from(last_seal)
        fields: dict[str, Any] = {
            "first_kept_seq": last_seal.seq + 1,
            "anchor_prev": last_seal.hash.hex(),
            "anchor_frontier": [node.hex() for node in anchor.nodes],
            "removed": [
                {
                    "segment": path.name,
                    "first_seq": int(path.name[4:24]),
                    "last_seq": seal.seq,
                    "last_time": seal.body.get("time"),
                    "sha256": digest,
                }
                for path, seal, digest in removable
            ],
            "time": now,
            "key_id": self._key.key_id,
        }
        signature = sign_fields(self._key, retention_message(fields))
        with self._lock:
            self._raise_if_failed()
            self._flock()
            try:
                self._catch_up()
                self._write_entry({"type": "retention", "action": "audit.retention", **fields, "sig": signature})
                os.fsync(self._fd)
                self._append_side([canonical_json({"type": "retention", **fields, "sig": signature}) + b"\n"])
                for path, _, _ in removable:
                    path.unlink()
                dir_fd = os.open(self.directory, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.fsync(dir_fd)
                finally:
                    os.close(dir_fd)
            finally:
                self._funlock()
        names = [path.name for path, _, _ in removable]
        log.info("audit segments removed by retention", segments=names, first_kept_seq=last_seal.seq + 1)
        return names


def _encode(record: Mapping[str, Any], seq: int, prev: str) -> tuple[bytes, bytes, str]:
    """The line, hash and hex hash of ``record`` as entry ``seq`` after ``prev`` (a call,
    unless it names its own type)."""
    return encode_entry_hex({"type": "call", **record, "seq": seq, "prev": prev, "v": FORMAT_VERSION})


def _as_time(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _entry_time(line: bytes) -> float:
    try:
        return _as_time(parse_line(line).body.get("time"))
    except LineError:
        return 0.0


def _first_line(path: Path) -> list[bytes]:
    with path.open("rb") as f:
        line = f.readline()
    return [line[:-1]] if line.endswith(b"\n") else []


def _any_valid(data: bytes) -> bool:
    """Does a well-formed entry follow? Then the damage is not a torn tail."""
    for line in data.split(b"\n"):
        try:
            parse_line(line)
        except LineError:
            continue
        return True
    return False
