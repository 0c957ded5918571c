"""Tokens (issue, revoke) and trusted model signers, through the admin API."""

from __future__ import annotations

import time
from dataclasses import dataclass

from supervisor.admin._base import AdminBase
from supervisor.audit import AuditRecord
from supervisor.audit.admin import token_id
from supervisor.errors import InvalidInputError
from supervisor.registry import TrustedSigner
from supervisor.service import Caller
from supervisor.signing.bundle import trusted_signer

# Scopes a token may carry (the shipped policy knows these two).
SCOPES = ("predict", "admin")


@dataclass(frozen=True)
class IssuedToken:
    token: str
    token_id: str
    expires_at: int


class CredentialAdmin(AdminBase):
    # Tokens

    async def issue_token(
        self, caller: Caller, tenant: str, subject: str, scopes: list[str], ttl: int, record: AuditRecord
    ) -> IssuedToken:
        auth = self._settings.auth
        ttl = ttl or auth.default_ttl_seconds
        scope_set = sorted(set(scopes or ["predict"]))
        subject = subject or f"{tenant}-api"
        resource = {"kind": "token", "tenant": tenant, "subject": subject, "scopes": scope_set, "ttl_seconds": ttl}
        await self._authorize("admin.token.issue", caller, record, resource)
        unknown = [s for s in scope_set if s not in SCOPES]
        if unknown:
            raise InvalidInputError(f"got scopes {unknown}, expected some of {list(SCOPES)}")
        if not 0 < ttl <= auth.max_ttl_seconds:
            raise InvalidInputError(f"got ttl_seconds {ttl}, expected 1..{auth.max_ttl_seconds}")
        self._registry.get_tenant(tenant)
        now = time.time()
        token = self._home.issuer_key().issue(
            issuer=auth.issuer, audience=auth.audience, subject=subject, tenant=tenant, scopes=scope_set,
            ttl_seconds=ttl, now=now,
        )  # fmt: skip
        jti = token_id(token)
        # Recorded: the token's id, never the token.
        record.detail["jti"] = jti
        return IssuedToken(token, jti, int(now) + ttl)

    async def revoke_token(self, caller: Caller, jti: str, reason: str, record: AuditRecord) -> None:
        await self._authorize("admin.token.revoke", caller, record, {"kind": "token", "jti": jti, "reason": reason})
        self._registry.revoke_token(jti, reason)

    # Signers

    async def add_signer(self, caller: Caller, name: str, tenant: str, pem: str, record: AuditRecord) -> TrustedSigner:
        await self._authorize("admin.signer.add", caller, record, {"kind": "signer", "name": name, "tenant": tenant})
        signer = trusted_signer(name, tenant, pem.encode())
        self._registry.add_signer(signer)
        record.detail["key_hint"] = signer.key_hint
        return signer

    async def list_signers(self, caller: Caller, record: AuditRecord) -> list[TrustedSigner]:
        await self._authorize("admin.signer.list", caller, record, {"kind": "signer"})
        return self._registry.list_signers()

    async def remove_signer(self, caller: Caller, name: str, record: AuditRecord) -> None:
        await self._authorize("admin.signer.remove", caller, record, {"kind": "signer", "name": name})
        self._registry.remove_signer(name)
