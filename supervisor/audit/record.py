"""What one audit record holds. Digests of tensors are recorded, never the tensors."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
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
        return asdict(self)
