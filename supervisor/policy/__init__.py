"""Authorisation by Rego policy: every call and every admin action is decided here.

- :mod:`.document` builds the versioned input document (pure);
- :mod:`.decision` checks the policy's answer (pure);
- :mod:`.policyset`, :mod:`.compiler`, :mod:`.testing` read, validate and test a set;
- :mod:`.embedded` (regorus, default) and :mod:`.remote` (OPA over REST) implement
  :class:`.engine.PolicyEngine`; both fail closed;
- :mod:`.authorizer` asks the engine and records the decision in the audit record;
- :mod:`.reload` and :mod:`.runtime` keep the set in force current in a server.
"""

from supervisor.policy.authorizer import Authorizer
from supervisor.policy.decision import UNAVAILABLE, Decision
from supervisor.policy.document import INPUT_VERSION, NO_USAGE, RequestFacts, UsageSource, build_input
from supervisor.policy.engine import Evaluation, PolicyEngine, Query
from supervisor.policy.errors import PolicyEngineError, PolicySetError
from supervisor.policy.reload import ReloadResult

__all__ = [
    "INPUT_VERSION",
    "NO_USAGE",
    "UNAVAILABLE",
    "Authorizer",
    "Decision",
    "Evaluation",
    "PolicyEngine",
    "PolicyEngineError",
    "PolicySetError",
    "Query",
    "ReloadResult",
    "RequestFacts",
    "UsageSource",
    "build_input",
]
