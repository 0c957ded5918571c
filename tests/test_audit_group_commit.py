"""The writer's background thread: it fsyncs what waits, signs checkpoints on time, and
sleeps while the log is idle instead of waking every group-commit interval."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from supervisor.audit import AuditKey, AuditWriter
from supervisor.audit.reader import iter_entries
from supervisor.settings import AuditSettings
from tests.test_audit_tamper import record

INTERVAL_MS = 20


def _until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def _commit_thread() -> threading.Thread:
    threads = [t for t in threading.enumerate() if t.name == "audit-group-commit"]
    assert len(threads) == 1, f"got {len(threads)} group-commit threads, expected one"
    return threads[0]


def _wakeups(thread: threading.Thread) -> int:
    """How often the thread has gone to sleep and woken up, as the kernel counts it."""
    status = Path(f"/proc/self/task/{thread.native_id}/status").read_text()
    return int(status.split("voluntary_ctxt_switches:")[1].split()[0])


def _checkpoints(directory: Path) -> list[str]:
    return [str(e.body.get("reason")) for e in iter_entries(directory) if e.type == "checkpoint"]


def _idle_writer(directory: Path, settings: AuditSettings) -> AuditWriter:
    """A writer whose one record is fsynced and signed, with its thread settled in to wait."""
    writer = AuditWriter(directory, AuditKey.generate(), settings)
    writer.append(record(0))
    assert _until(lambda: writer.backlog == 0 and bool(_checkpoints(directory)))
    time.sleep(0.2)
    return writer


def test_idle_audit_log_does_not_wake_its_thread_every_interval(tmp_path: Path) -> None:
    # An idle server paid a wake-up every 20-50 ms for nothing to fsync.
    writer = _idle_writer(tmp_path, AuditSettings(fsync_interval_ms=INTERVAL_MS))
    try:
        thread = _commit_thread()
        before = _wakeups(thread)
        time.sleep(1.0)
        woke = _wakeups(thread) - before
        assert woke <= 2, f"the idle group-commit thread woke {woke} times in 1 s (interval {INTERVAL_MS} ms)"
    finally:
        writer.close(strict=True)


def test_record_after_an_idle_spell_is_fsynced_within_an_interval_not_at_the_next_deadline(tmp_path: Path) -> None:
    writer = _idle_writer(tmp_path, AuditSettings(fsync_interval_ms=INTERVAL_MS))
    try:
        writer.append(record(1))
        assert writer.backlog == 1
        # The thread sleeps for up to a minute while idle; the append must wake it.
        assert _until(lambda: writer.backlog == 0, timeout=2.0), "a record stayed unsynced after an idle spell"
    finally:
        writer.close(strict=True)


def test_records_at_a_low_steady_rate_share_fsyncs_instead_of_one_each(tmp_path: Path) -> None:
    # One call at a time (about 650 a second) woke the idle thread for each record, which
    # it fsynced at once and went idle again: 0.4 fsyncs a call instead of one an interval.
    interval_ms = 100
    writer = _idle_writer(tmp_path, AuditSettings(fsync_interval_ms=interval_ms))
    try:
        thread = _commit_thread()
        before = _wakeups(thread)
        for i in range(1, 201):  # a record every 5 ms for about a second
            writer.append(record(i))
            time.sleep(0.005)
        woke = _wakeups(thread) - before
        assert woke <= 200, f"the group-commit thread woke {woke} times for 200 records ({interval_ms} ms interval)"
        assert _until(lambda: writer.backlog == 0), "records stayed unsynced"
    finally:
        writer.close(strict=True)


def test_unsigned_records_get_their_interval_checkpoint_while_the_log_is_idle(tmp_path: Path) -> None:
    settings = AuditSettings(fsync_interval_ms=INTERVAL_MS, checkpoint_interval_seconds=0.5)
    writer = _idle_writer(tmp_path, settings)
    try:
        signed = len(_checkpoints(tmp_path))
        writer.append(record(1))
        # No append follows: the thread must wake for the checkpoint's own deadline.
        assert _until(lambda: len(_checkpoints(tmp_path)) > signed, timeout=3.0), "no checkpoint after 3 s"
        assert _checkpoints(tmp_path)[-1] == "interval"
        assert _until(lambda: writer.backlog == 0)
    finally:
        writer.close(strict=True)


def test_close_wakes_the_sleeping_thread_at_once(tmp_path: Path) -> None:
    writer = _idle_writer(tmp_path, AuditSettings(fsync_interval_ms=INTERVAL_MS))
    thread = _commit_thread()
    started = time.monotonic()
    writer.close(strict=True)
    assert not thread.is_alive()
    # A close that waited out the idle pause would take a minute.
    assert time.monotonic() - started < 5.0
