"""The decision document a policy returns, checked strictly. Pure, no I/O.

A policy answers ``{"allow": bool, "reasons": [string, ...]}``. Anything else (no value,
a non-boolean ``allow``, reasons that are not strings) is not a decision: the call is
refused as "policy unavailable", never allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

__all__ = ["MAX_REASONS", "MAX_REASON_CHARS", "UNAVAILABLE", "Decision", "MalformedDecisionError", "parse_decision"]

#: The public reason of every refusal caused by the engine rather than by the policy.
UNAVAILABLE = "policy unavailable"
#: Reasons are audited and may be shown to callers: bound how much a policy can write.
MAX_REASONS = 16
MAX_REASON_CHARS = 512


class Decision(NamedTuple):
    """What the policy decided, and the revision of the policy set that decided it."""

    # A NamedTuple: one is made on every call, and a frozen dataclass costs more to build.
    allow: bool
    reasons: tuple[str, ...]
    revision: str


class MalformedDecisionError(ValueError):
    """The policy's value is not a decision document (or there was no value)."""

    def __init__(self, message: str, cause: str = "malformed") -> None:
        super().__init__(message)
        #: "undefined" (no value) or "malformed", for the audit record.
        self.cause = cause


def _reasons(value: Any) -> tuple[str, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise MalformedDecisionError(f"got reasons of type {type(value).__name__}, expected a list of strings")
    if not all(isinstance(r, str) for r in value):
        raise MalformedDecisionError("got a reason that is not a string, expected a list of strings")
    trimmed = [r if len(r) <= MAX_REASON_CHARS else r[: MAX_REASON_CHARS - 1] + "…" for r in value[:MAX_REASONS]]
    if len(value) > MAX_REASONS:
        trimmed.append(f"(and {len(value) - MAX_REASONS} more reasons)")
    return tuple(trimmed)


def parse_decision(value: Any, revision: str) -> Decision:
    """Check ``value`` (the evaluated ``decision`` rule; None when undefined) and wrap it."""
    if value is None:
        raise MalformedDecisionError("the decision is undefined for this input", "undefined")
    if not isinstance(value, dict):
        raise MalformedDecisionError(f"got a decision of type {type(value).__name__}, expected an object")
    allow = value.get("allow")
    # Only the boolean true allows: 1, "true" or a non-empty object do not.
    if not isinstance(allow, bool):
        raise MalformedDecisionError(f"got allow {allow!r}, expected true or false")
    return Decision(allow=allow, reasons=_reasons(value.get("reasons", [])), revision=revision)
