"""The interface every policy engine implements, embedded or remote."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

__all__ = ["Evaluation", "PolicyEngine", "Query"]


class Query(enum.Enum):
    """The decisions IRE asks for. Each is the ``decision`` rule of one package."""

    AUTHZ = "ire.authz"
    ADMISSION = "ire.admission"

    @property
    def rule(self) -> str:
        """The rule path, as the embedded engine names it (``data.ire.authz.decision``)."""
        return _RULES[self]

    @property
    def package(self) -> str:
        return f"data.{self.value}"


class Evaluation(NamedTuple):
    """The raw value of a decision rule (None when undefined) and the revision that produced it.

    A named tuple rather than a frozen dataclass: made on every decision, and a frozen
    dataclass's __init__ costs about half a microsecond more.
    """

    value: Any
    revision: str


class PolicyEngine(Protocol):
    """Evaluates decisions. Implementations fail closed.

    ``evaluate`` returns the rule's value or raises
    :class:`~supervisor.policy.errors.PolicyEngineError` (crash, timeout, unreachable);
    it never returns a default decision of its own.
    """

    name: str

    @property
    def revision(self) -> str:
        """The revision of the policy set in force ('' if unknown)."""
        ...

    async def evaluate(self, query: Query, document: Mapping[str, Any]) -> Evaluation: ...

    def stable_revision(self, query: Query) -> str | None:
        """The revision in force, if its decisions on ``query`` may be reused.

        That is, when a decision depends only on the call's action, principal, tenant,
        model and request facts (no usage, time or resource), and the engine caches
        decisions at all. ``None`` otherwise: every call is then decided afresh.
        """
        ...

    async def close(self) -> None: ...


# Built once: the rule path is looked up on every decision.
_RULES = {query: f"data.{query.value}.decision" for query in Query}
