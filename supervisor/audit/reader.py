"""Reading the log back for people and tools: records in order, filtered. No verification.

``ire audit verify`` is what proves the log intact; these readers only check each line
against its own hash and skip what does not parse, counting it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.audit.chain import Entry, LineError, parse_line
from supervisor.audit.segments import iter_lines, list_segments

__all__ = ["RecordFilter", "iter_entries", "parse_time", "read_records"]

# Entry types that are records of something that happened (the others are the log's own).
RECORD_TYPES = frozenset({"call", "admin"})


@dataclass
class ReadStats:
    skipped: int = 0


def iter_entries(directory: Path, stats: ReadStats | None = None) -> Iterator[Entry]:
    """Every well-formed entry, oldest first; a partial last line (a write in progress) is skipped."""
    for _, path in list_segments(directory):
        for _, line, complete in iter_lines(path):
            if not complete or not line:
                continue
            try:
                yield parse_line(line)
            except LineError:
                if stats is not None:
                    stats.skipped += 1


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every call and admin record, oldest first (checkpoints and the like left out)."""
    return [e.body for e in iter_entries(directory) if e.type in RECORD_TYPES]


def parse_time(text: str) -> float:
    """Unix seconds from ISO 8601 (``2026-01-31``, ``2026-01-31T12:00:00Z``) or a number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        value = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"got time {text!r}, expected ISO 8601 (2026-01-31T12:00:00Z) or unix seconds") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


@dataclass(frozen=True)
class RecordFilter:
    """What ``ire audit query`` selects; an unset field matches everything."""

    tenant: str | None = None
    model: str | None = None
    principal: str | None = None
    outcome: str | None = None
    action: str | None = None
    since: float | None = None
    until: float | None = None
    types: frozenset[str] = field(default=RECORD_TYPES)

    def matches(self, body: dict[str, Any]) -> bool:
        if body.get("type") not in self.types:
            return False
        for name in ("tenant", "model", "principal", "outcome", "action"):
            wanted = getattr(self, name)
            if wanted is not None and body.get(name) != wanted:
                return False
        when = body.get("time")
        if not isinstance(when, int | float):
            return self.since is None and self.until is None
        return (self.since is None or when >= self.since) and (self.until is None or when <= self.until)
