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

    def to_dict(self) -> dict[str, Any]:
        """A detached copy: dataclasses.asdict's deepcopy of every leaf costs ~10 µs a call,
        and the leaves here are immutable (str, numbers, None); dicts and lists are copied."""
        out = {name: getattr(self, name) for name in _FIELDS}
        out["detail"] = _tree_copy(self.detail)
        return out


def _tree_copy(value: Any) -> Any:
    if type(value) is dict:
        return {k: _tree_copy(v) for k, v in value.items()}
    if type(value) is list or type(value) is tuple:
        return [_tree_copy(v) for v in value]
    return value


_FIELDS = tuple(f.name for f in fields(AuditRecord))
