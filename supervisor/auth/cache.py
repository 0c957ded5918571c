"""A cache of verified tokens, so a client reusing its token is not re-verified per call.

Signature verification costs hundreds of microseconds; a cache hit costs one sha256. An
entry is keyed by the sha256 of the whole token (any change to any byte misses), holds
only tokens that verified, and is never used past the token's ``exp`` plus the skew the
verifier allows. The cache is bounded; the oldest entries are evicted first. Revocation,
when checked, is checked on every call by the caller, hit or miss.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from supervisor.auth.jwt import Principal, TokenVerifier
from supervisor.errors import TokenExpiredError


class CachingVerifier:
    def __init__(self, verifier: TokenVerifier, leeway_seconds: int, max_entries: int = 10_000) -> None:
        self._verifier = verifier
        self._leeway = leeway_seconds
        self._max = max_entries
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()

    def verify(self, token: str | None, *, now: float | None = None) -> Principal:
        if not token or not isinstance(token, str) or not token.isascii():
            return self._verifier.verify(token, now=now)
        now = time.time() if now is None else now
        key = hashlib.sha256(token.encode("ascii")).digest()
        principal = self._entries.get(key)
        if principal is not None:
            if now <= principal.expires_at + self._leeway:
                return principal
            del self._entries[key]
            raise TokenExpiredError(f"got exp {principal.expires_at}, now is {int(now)}")
        principal = self._verifier.verify(token, now=now)
        self._entries[key] = principal
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return principal

    def clear(self) -> None:
        self._entries.clear()
