"""Records written together: AuditWriter.append_many and the TurnAppender of `ire serve`.

The calls one merged run of dynamic batching answered write their records in one write at
the end of the event-loop turn. The log must come out exactly as one append a record
would have made it, and no call may be answered before its record is written.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.audit import AuditKey, AuditWriter, read_records
from supervisor.audit.segments import list_segments
from supervisor.audit.turn import TurnAppender
from supervisor.audit.verify import verify_log
from supervisor.errors import AuditWriteError
from tests.test_audit_tamper import SMALL, record

KEY = AuditKey.generate()  # Ed25519 signs deterministically: same log, same bytes


def _clock() -> float:
    return 1_700_000_000.25


def _log_bytes(directory: Path) -> list[bytes]:
    return [path.read_bytes() for _, path in list_segments(directory)]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(groups=st.lists(st.integers(min_value=1, max_value=25), min_size=1, max_size=8))
def test_records_written_together_make_the_log_one_by_one_appends_make(
    tmp_path_factory: Any, groups: list[int]
) -> None:
    # Groups cross count checkpoints (every 10 records) and rotations (6,000 bytes).
    one, together = tmp_path_factory.mktemp("one"), tmp_path_factory.mktemp("together")
    records = [record(i) for i in range(sum(groups))]
    writer = AuditWriter(one, KEY, SMALL, clock=_clock)
    for r in records:
        writer.append(r)
    writer.close(strict=True)
    writer = AuditWriter(together, KEY, SMALL, clock=_clock)
    start = 0
    for size in groups:
        assert writer.append_many(records[start : start + size]) == [None] * size
        start += size
    writer.close(strict=True)
    assert _log_bytes(together) == _log_bytes(one)
    assert verify_log(together, KEY.public).records == len(records)


def test_a_record_the_log_cannot_hold_fails_alone_in_its_group(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, KEY, SMALL)
    lone_surrogate = {**record(1), "model": "\ud800"}  # no UTF-8, so no canonical JSON
    reserved = {**record(2), "seq": 0}  # would forge the chain's own fields
    errors = writer.append_many([record(0), lone_surrogate, reserved, record(3)])
    writer.close(strict=True)
    assert errors[0] is None and errors[3] is None
    assert isinstance(errors[1], AuditWriteError) and "canonical" in str(errors[1])
    assert isinstance(errors[2], AuditWriteError) and "may not set" in str(errors[2])
    assert [r["request_id"] for r in read_records(tmp_path)] == ["req-0000", "req-0003"]
    assert verify_log(tmp_path, KEY.public).records == 2


@pytest.mark.root
def test_audit_disk_full_mid_group_refuses_exactly_the_records_not_written(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k,mode=0700", "tmpfs", str(directory)], check=True)
    writer = None
    try:
        writer = AuditWriter(directory, KEY, SMALL)
        outcome: dict[str, AuditWriteError | None] = {}
        for group in range(100):  # 16 KiB holds far fewer than 700 records
            records = [record(group * 7 + i) for i in range(7)]
            for r, error in zip(records, writer.append_many(records), strict=True):
                outcome[str(r["request_id"])] = error
            if any(outcome.values()):
                break
        refused = {rid for rid, error in outcome.items() if error is not None}
        assert refused, "the disk never filled"
        # Sticky: once the log failed, nothing more is written.
        assert all(isinstance(e, AuditWriteError) for e in writer.append_many([record(9999)]))
        recorded = {str(r["request_id"]) for r in read_records(directory)}
        assert recorded == set(outcome) - refused
    finally:
        if writer is not None:
            writer.close()
        subprocess.run(["umount", str(directory)], check=True)


class _CountingWriter(AuditWriter):
    """The real writer, counting the groups it is handed."""

    groups: list[list[str]]

    def append_many(self, records: Sequence[Mapping[str, Any]]) -> list[AuditWriteError | None]:
        self.groups.append([str(r["request_id"]) for r in records])
        return super().append_many(records)


def test_calls_finishing_in_one_turn_write_their_records_together_before_any_reply(tmp_path: Path) -> None:
    writer = _CountingWriter(tmp_path, KEY, SMALL)
    writer.groups = []
    turn = TurnAppender(writer)

    async def calls() -> list[bool]:
        futures = [turn.append(record(i)) for i in range(5)]
        answered_early = [f.done() for f in futures]  # a reply waits for its record
        await asyncio.gather(*futures)
        later = turn.append(record(5))
        await later
        return answered_early

    answered_early = asyncio.run(calls())
    writer.close(strict=True)
    assert answered_early == [False] * 5
    assert writer.groups == [[f"req-{i:04d}" for i in range(5)], ["req-0005"]]
    assert verify_log(tmp_path, KEY.public).records == 6


def test_a_failed_log_fails_every_call_of_the_turn(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, KEY, SMALL)
    writer.close(strict=True)  # a closed writer refuses, as a failed one does
    turn = TurnAppender(writer)

    async def calls() -> list[BaseException | None]:
        futures = [turn.append(record(i)) for i in range(3)]
        return await asyncio.gather(*futures, return_exceptions=True)

    results = asyncio.run(calls())
    assert all(isinstance(r, AuditWriteError) for r in results)
    assert read_records(tmp_path) == []


def test_a_call_cancelled_while_its_record_waits_leaves_the_others_answered(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path, KEY, SMALL)
    turn = TurnAppender(writer)

    async def calls() -> list[BaseException | None]:
        futures = [turn.append(record(i)) for i in range(3)]
        futures[1].cancel()  # its client went away
        return await asyncio.gather(futures[0], futures[2], return_exceptions=True)

    assert asyncio.run(calls()) == [None, None]
    writer.close(strict=True)
    # The cancelled call's record is written all the same: it was handled.
    assert [r["request_id"] for r in read_records(tmp_path)] == ["req-0000", "req-0001", "req-0002"]
