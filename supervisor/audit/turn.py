"""Audit records of calls that finish in the same event-loop turn, written together.

Calls finish in groups under load: the worker answers the frames that reached it together
in one write (supervisor/workers/connection.py), and a merged run of dynamic batching
answers all its calls at once. Their tasks resume in the same turn of the event loop, one
after another. Each appending its own record would take the log's lock and make its own
``write(2)``, and each reply would go to gRPC as soon as its record was written, spread
over the turn. Through a :class:`TurnAppender` the records of the turn are chained and
written together at its end (:meth:`AuditWriter.append_many`), and the calls then hand
their replies to gRPC together, which writes them to the connection together. A call that
finishes alone waits for the end of its turn only.

The rule of the log stands: a call is answered only once its record is written. A record
the log refuses fails its own call; a failed log fails every call of the turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import structlog

from supervisor.audit.writer import AuditWriter
from supervisor.errors import AuditWriteError

log = structlog.get_logger(__name__)

__all__ = ["TurnAppender"]


class TurnAppender:
    """Collects the records appended in one event-loop turn; writes them at its end."""

    def __init__(self, writer: AuditWriter) -> None:
        self._writer = writer
        self._waiting: list[tuple[Mapping[str, Any], asyncio.Future[None]]] = []
        # Taken on first use: get_running_loop() costs a getpid() syscall a call.
        self._loop: asyncio.AbstractEventLoop | None = None

    def append(self, record: Mapping[str, Any]) -> asyncio.Future[None]:
        """A future done once ``record`` is written (AuditWriteError when it cannot be).

        The record is encoded when the turn ends, so it must not change meanwhile.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._write)
        written = loop.create_future()
        self._waiting.append((record, written))
        return written

    def _write(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            errors = self._writer.append_many([record for record, _ in waiting])
        except Exception as exc:  # noqa: BLE001 - never leave a call waiting on its record
            log.error("audit append failed unexpectedly", error=f"{type(exc).__name__}: {exc}")
            errors = [AuditWriteError(f"audit append failed: {type(exc).__name__}")] * len(waiting)
        for (_, written), error in zip(waiting, errors, strict=True):
            if written.cancelled():
                continue  # the call is gone; its record, if written, stays
            if error is None:
                written.set_result(None)
            else:
                written.set_exception(error)
