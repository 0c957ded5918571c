"""The verified-token cache: hits skip the signature check, but never outlive the token."""

from __future__ import annotations

import time

import pytest

from supervisor.auth import IssuerKey, TokenVerifier, VerifierSettings, jwks_document
from supervisor.auth.cache import CachingVerifier
from supervisor.errors import TokenExpiredError, TokenInvalidError


@pytest.fixture
def key() -> IssuerKey:
    return IssuerKey.generate()


def _cache(key: IssuerKey, max_entries: int = 10) -> CachingVerifier:
    verifier = TokenVerifier(jwks_document([key.public_jwk()]), VerifierSettings(leeway_seconds=30))
    return CachingVerifier(verifier, leeway_seconds=30, max_entries=max_entries)


def _token(key: IssuerKey, ttl: int = 600, now: float | None = None) -> str:
    return key.issue(
        issuer="ire", audience="ire", subject="s", tenant="acme", scopes=["predict"], ttl_seconds=ttl, now=now
    )


def test_cached_token_expires_with_the_token(key: IssuerKey) -> None:
    cache = _cache(key)
    now = time.time()
    token = _token(key, ttl=60, now=now)
    assert cache.verify(token, now=now).tenant == "acme"
    assert cache.verify(token, now=now + 89).tenant == "acme"  # within exp + leeway
    with pytest.raises(TokenExpiredError):
        cache.verify(token, now=now + 91)


def test_tampered_token_misses_the_cache(key: IssuerKey) -> None:
    cache = _cache(key)
    token = _token(key)
    cache.verify(token)
    with pytest.raises(TokenInvalidError):
        cache.verify(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1])


def test_failures_are_not_cached(key: IssuerKey) -> None:
    cache = _cache(key)
    with pytest.raises(TokenInvalidError):
        cache.verify("a.b.c")
    assert len(cache._entries) == 0


def test_cache_is_bounded(key: IssuerKey) -> None:
    cache = _cache(key, max_entries=3)
    for _ in range(10):
        cache.verify(_token(key))
    assert len(cache._entries) == 3
