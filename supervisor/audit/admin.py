"""Admin actions in the audit log: one function for any command that changes the node.

Tenants, tokens and models are recorded by the CLI; quotas, signers and policy reloads call
:func:`record_admin_action` (or append :func:`admin_record` to the server's open writer).
A token's id (``jti``) may be recorded, never the token itself.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from supervisor.audit.keys import AuditKey
from supervisor.audit.record import AuditRecord, Outcome
from supervisor.audit.segments import list_segments
from supervisor.audit.writer import AuditWriter
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.home import Home

__all__ = [
    "admin_record",
    "audited_action",
    "load_audit_key",
    "local_principal",
    "record_admin_action",
    "token_id",
]

# Top-level record fields an admin action may set; anything else goes under "detail".
_TOP_LEVEL = ("tenant", "model", "model_version", "model_sha256")


def load_audit_key(home: Home) -> AuditKey:
    """The home's audit signing key; created for a home made before it existed, if its log is empty."""
    path = home.audit_key_path
    if not path.exists():
        if home.audit_dir.is_dir() and list_segments(home.audit_dir):
            raise ConfigError(f"audit key {str(path)!r} is missing but the audit log exists; restore the key")
        home.audit_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        AuditKey.generate().save(path)
    return AuditKey.load(path)


def token_id(token: str) -> str:
    """The ``jti`` of a token this process just minted: recorded instead of the token."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError) as exc:
        raise ConfigError(f"cannot read the id of a minted token: {exc}") from exc
    return str(claims.get("jti", "")) if isinstance(claims, dict) else ""


def local_principal() -> str:
    """Who runs this command: the operating-system account (not an environment variable)."""
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return f"local:{name}"


def admin_record(
    action: str, principal: str, *, outcome: str = Outcome.ALLOWED, status: str = "OK", **fields: Any
) -> dict[str, Any]:
    """The audit record of one admin action, ready for :meth:`AuditWriter.append`."""
    top = {name: str(fields.pop(name)) for name in _TOP_LEVEL if name in fields}
    record = AuditRecord(
        time=time.time(),
        request_id=uuid.uuid4().hex,
        action=action,
        principal=principal,
        outcome=str(outcome),
        status=status,
        detail=fields,
    )
    return {**record.to_dict(), **top, "type": "admin"}


def record_admin_action(home: Home, action: str, principal: str, **fields: Any) -> None:
    """Append one admin record to ``home``'s log, checkpoint it and fsync; AuditWriteError if not."""
    writer = AuditWriter.for_home(home)
    try:
        writer.append(admin_record(action, principal, **fields))
    finally:
        writer.close(strict=True)


@contextlib.contextmanager
def audited_action(home: Home, action: str, principal: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Record the action run in the ``with`` body, whether it succeeds or fails.

    The log is opened first, so an action is refused when it could not be recorded. The
    body may add fields to the yielded dict (say, a token's id once it is minted).
    """
    writer = AuditWriter.for_home(home)
    extra: dict[str, Any] = {}
    try:
        yield extra
    except BaseException as exc:
        with contextlib.suppress(Exception):
            writer.append(
                admin_record(
                    action, principal, outcome=Outcome.FAILED, status=type(exc).__name__, **{**fields, **extra}
                )
            )
        writer.close()
        raise
    try:
        writer.append(admin_record(action, principal, **{**fields, **extra}))
    finally:
        writer.close(strict=True)
