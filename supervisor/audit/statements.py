"""What the audit key signs: checkpoint (tree head) and retention statements. Pure.

Each statement is a domain-separation prefix plus the RFC 8785 encoding of its fields, so
a signature over one kind can never be replayed as the other (or as anything else).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from supervisor.audit.canonical import canonical_json
from supervisor.audit.keys import AuditKey, AuditPublicKey

__all__ = [
    "CHECKPOINT_FIELDS",
    "RETENTION_FIELDS",
    "checkpoint_message",
    "retention_message",
    "sign_fields",
    "signature_valid",
]

_CHECKPOINT_CONTEXT = b"ire-audit-checkpoint-v1\n"
_RETENTION_CONTEXT = b"ire-audit-retention-v1\n"

# A checkpoint signs the tree size, its RFC 6962 root, the chain head (hash of the last
# entry it covers, i.e. the checkpoint's own `prev`), its time and the signing key's id.
CHECKPOINT_FIELDS = ("size", "root", "head", "time", "key_id")
# A retention record signs which segments went, and the anchor the log resumes from.
RETENTION_FIELDS = ("first_kept_seq", "anchor_prev", "anchor_frontier", "removed", "time", "key_id")


def _message(context: bytes, fields: tuple[str, ...], values: Mapping[str, Any]) -> bytes:
    return context + canonical_json({name: values.get(name) for name in fields})


def checkpoint_message(values: Mapping[str, Any]) -> bytes:
    return _message(_CHECKPOINT_CONTEXT, CHECKPOINT_FIELDS, values)


def retention_message(values: Mapping[str, Any]) -> bytes:
    return _message(_RETENTION_CONTEXT, RETENTION_FIELDS, values)


def sign_fields(key: AuditKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def signature_valid(public: AuditPublicKey, message: bytes, signature: object) -> bool:
    if not isinstance(signature, str):
        return False
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    return public.verify(raw, message)
