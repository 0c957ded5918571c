"""Payload capture: off by default, enabled per tenant, redacted, and itself audited.

Records hold digests of inputs and outputs, never the tensors. A tenant whose regulator
asks for the payloads themselves can have them captured into its records: at most
``max_bytes`` per tensor, and never the tensors named in ``redact`` (for those only the
size is kept: even a digest of a low-entropy secret can be brute-forced). Every change of
a rule is an admin record, with the rule before and after.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.audit.admin import audited_action
from supervisor.errors import ConfigError

if TYPE_CHECKING:
    from supervisor.home import Home

__all__ = ["CaptureRule", "capture_path", "capture_payload", "load_capture", "save_capture"]


@dataclass(frozen=True)
class CaptureRule:
    enabled: bool = False
    redact: tuple[str, ...] = ()
    # None: the home's audit.capture_max_bytes.
    max_bytes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "redact": list(self.redact), "max_bytes": self.max_bytes}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str) -> CaptureRule:
        enabled, redact, max_bytes = raw.get("enabled", False), raw.get("redact", []), raw.get("max_bytes")
        if not isinstance(enabled, bool) or not isinstance(redact, list) or not all(isinstance(r, str) for r in redact):
            raise ConfigError(f"{where}: got {dict(raw)!r}, expected enabled (bool) and redact (list of names)")
        if max_bytes is not None and (type(max_bytes) is not int or max_bytes <= 0):
            raise ConfigError(f"{where}: got max_bytes {max_bytes!r}, expected a positive integer")
        return cls(enabled, tuple(redact), max_bytes)


def capture_path(home: Home) -> Path:
    return home.root / "audit-capture.json"


def load_capture(home: Home) -> dict[str, CaptureRule]:
    """Every tenant's rule; a tenant without one is not captured."""
    path = capture_path(home)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected an object of tenant rules")
    return {tenant: CaptureRule.from_dict(rule, f"{path}: {tenant}") for tenant, rule in raw.items()}


def save_capture(home: Home, tenant: str, rule: CaptureRule, *, previous: CaptureRule, principal: str) -> None:
    """Set ``tenant``'s rule, recording the change (before and after) in the audit log."""
    rules = load_capture(home)
    rules[tenant] = rule
    path = capture_path(home)
    with audited_action(
        home, "audit.capture.set", principal, tenant=tenant, before=previous.to_dict(), after=rule.to_dict()
    ):
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({name: r.to_dict() for name, r in sorted(rules.items())}, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


def capture_payload(rule: CaptureRule | None, tensors: Mapping[str, bytes], default_max_bytes: int) -> dict[str, Any]:
    """What a record keeps of ``tensors`` (name to raw bytes) under ``rule``; {} when off."""
    if rule is None or not rule.enabled:
        return {}
    limit = rule.max_bytes or default_max_bytes
    kept: dict[str, Any] = {}
    for name, data in sorted(tensors.items()):
        if name in rule.redact:
            kept[name] = {"redacted": True, "bytes": len(data)}
        else:
            kept[name] = {
                "b64": base64.b64encode(data[:limit]).decode("ascii"),
                "bytes": len(data),
                "truncated": len(data) > limit,
            }
    return kept
