"""What one audit record holds. Digests of tensors are recorded, never the tensors."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from typing import Any


class Outcome(enum.StrEnum):
    ALLOWED = "allowed"  # authorised and served
    DENIED = "denied"  # refused: identity or permission
    FAILED = "failed"  # accepted but not served: worker, audit or internal failure
    MALFORMED = "malformed"  # the request itself was invalid


@dataclass
class AuditRecord:
    """Filled in as a call progresses; appended once when it ends."""

    time: float
    request_id: str
    action: str
    tenant: str = ""
    principal: str = ""
    model: str = ""
    model_version: str = ""
    model_sha256: str = ""
    outcome: str = ""
    status: str = ""
    latency_ms: float = 0.0
    input_sha256: str = ""
    output_sha256: str = ""
    peer: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, *, detached: bool = True) -> dict[str, Any]:
        """The record as a dict. Detached: its dicts and lists are copies (the leaves are
        immutable; dataclasses.asdict's deepcopy of each costs ~10 µs a call). Not detached:
        ``detail`` is shared, for a caller that encodes it at once (the audit append)."""
        own = self.__dict__
        # The instance's own dict holds exactly the fields unless something set another
        # attribute; checking that and copying it costs half of reading each field by name.
        out = own.copy() if own.keys() == _FIELD_SET else {name: getattr(self, name) for name in _FIELDS}
        if detached:
            out["detail"] = _tree_copy(self.detail)
        return out


def _tree_copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _tree_copy(v) for k, v in value.items()}
    if type(value) is list or type(value) is tuple:
        return [_tree_copy(v) for v in value]
    return value


_FIELDS = tuple(f.name for f in fields(AuditRecord))
_FIELD_SET = frozenset(_FIELDS)
