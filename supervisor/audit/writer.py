"""Appends audit records as JSON Lines.

A record is written and flushed to the kernel before the call's reply is sent. Any
failure to write raises :class:`AuditWriteError`, and the caller refuses the call: no
audit, no prediction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from supervisor.errors import AuditWriteError

SEGMENT = "audit.jsonl"


class AuditWriter:
    def __init__(self, directory: Path) -> None:
        self.path = directory / SEGMENT
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._file: BinaryIO = os.fdopen(fd, "ab")
        except OSError as exc:
            raise AuditWriteError(f"cannot open audit log {self.path}: {exc}") from exc

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n"
        try:
            self._file.write(line.encode("utf-8"))
            self._file.flush()
        except (OSError, ValueError) as exc:
            raise AuditWriteError(f"cannot write audit log {self.path}: {exc}") from exc

    def close(self) -> None:
        try:
            self._file.flush()
            os.fsync(self._file.fileno())
        except (OSError, ValueError):
            pass
        self._file.close()


def read_records(directory: Path) -> list[dict[str, Any]]:
    """Every record in the log, oldest first."""
    path = directory / SEGMENT
    if not path.exists():
        return []
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
