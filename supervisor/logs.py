"""structlog setup: JSON lines in production, readable output on a terminal.

Request id, action, tenant and model are bound for the call by the transport and the
service (:func:`bind_call`), so every line logged while a call runs carries them.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from contextvars import ContextVar
from typing import Any

import structlog

# The keys of the call being served, one dict per call. One ContextVar set once per call,
# rather than structlog's bind_contextvars, which keeps a ContextVar per key: binding and
# resetting four keys that way cost several µs on every call.
CALL_CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("ire_call_context", default=None)


def bind_call(**values: str) -> None:
    """Add ``values`` to the current call's log keys (nothing outside a call)."""
    keys = CALL_CONTEXT.get()
    if keys is not None:
        keys.update(values)


def merge_call_context(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current call's keys, unless the line sets them itself."""
    keys = CALL_CONTEXT.get()
    if keys:
        for key, value in keys.items():
            event_dict.setdefault(key, value)
    return event_dict


def configure(level: str = "info", json: bool | None = None) -> None:
    if json is None:
        json = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            merge_call_context,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
