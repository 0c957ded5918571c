"""Errors of the policy package.

Decisions raise the shared :class:`~supervisor.errors.PolicyDeniedError` and
:class:`~supervisor.errors.PolicyUnavailableError`. What is defined here is about the policy
*set*: a set that does not load, compile or pass its own tests is refused, and the set in
force stays in force.
"""

from __future__ import annotations

from supervisor.errors import IreError


class PolicySetError(IreError):
    """The policy set is unusable: unreadable, too large, a syntax error, a failing test.

    The message names the file, rule or test at fault; it is written for the admin who
    authored the set and is shown to them (CLI, admin API).
    """


class PolicyEngineError(IreError):
    """One evaluation failed: the engine crashed, timed out, or is unreachable.

    Only raised inside the policy package: the authorizer turns it into a refusal whose
    public text is "policy unavailable", keeping this message for the audit log.
    """

    def __init__(self, message: str, cause: str) -> None:
        super().__init__(message)
        #: A short machine-readable cause for the audit record: "timeout", "crash", "unreachable", "http".
        self.cause = cause
