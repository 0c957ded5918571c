"""Verification of bearer JWTs against a JWKS, with no I/O on the hot path.

:class:`TokenVerifier` turns an untrusted token string into a :class:`Principal` or raises
an :class:`~supervisor.errors.AuthenticationError` subclass; it never raises anything else.
Signatures are checked by pyjwt; the algorithm is chosen from the key, never from the token.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from supervisor.errors import ConfigError, TokenExpiredError, TokenInvalidError, TokenMissingError

__all__ = [
    "SCOPE_PATTERN",
    "TENANT_PATTERN",
    "Principal",
    "TokenVerifier",
    "VerifierSettings",
    "bearer_token",
]

#: A tenant name: it becomes part of paths, metric labels and cgroup names downstream.
TENANT_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: RFC 6749 §3.3 scope-token: printable ASCII without space, '"' or '\\'.
SCOPE_PATTERN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
#: Bounds the subject and token id, which are logged and audited on every call.
_MAX_SUBJECT_CHARS = 256
_MAX_TOKEN_ID_CHARS = 256
#: Below 2048 bits an RSA key is factorable by a well-funded attacker (NIST SP 800-57).
_MIN_RSA_BITS = 2048
_SUPPORTED_ALGORITHMS = frozenset({"ES256", "EdDSA", "RS256"})
_REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "sub", "jti", "tenant", "scope")
# Claim checks are done below against `now`; pyjwt only checks the signature and the JSON.
_PYJWT_OPTIONS: jwt.types.Options = {
    "verify_signature": True,
    "verify_aud": False,
    "verify_iss": False,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "verify_sub": False,
    "verify_jti": False,
    "enforce_minimum_key_length": True,
}


@dataclass(frozen=True)
class Principal:
    """The verified identity behind a request, as produced by :meth:`TokenVerifier.verify`."""

    subject: str
    tenant: str
    scopes: frozenset[str]
    token_id: str
    expires_at: int


@dataclass(frozen=True)
class VerifierSettings:
    """Limits and expectations for token verification, validated on construction."""

    issuer: str = "ire"
    audience: str = "ire"
    #: A huge token is refused before any parsing, so decoding cost stays bounded.
    max_token_bytes: int = 8192
    #: Clock skew tolerated between issuer and verifier.
    leeway_seconds: int = 30
    #: A stolen long-lived token is a standing credential; exp - iat above this is refused.
    max_ttl_seconds: int = 86400 * 31
    algorithms: tuple[str, ...] = ("ES256", "EdDSA", "RS256")

    def __post_init__(self) -> None:
        unsupported = sorted(set(self.algorithms) - _SUPPORTED_ALGORITHMS)
        if not self.algorithms or unsupported:
            raise ConfigError(
                f"got algorithms {list(self.algorithms)!r}, expected a non-empty subset of "
                f"{sorted(_SUPPORTED_ALGORITHMS)!r}"
            )
        for name in ("max_token_bytes", "max_ttl_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"got {name} {getattr(self, name)!r}, expected > 0")
        if self.leeway_seconds < 0:
            raise ConfigError(f"got leeway_seconds {self.leeway_seconds!r}, expected >= 0")
        if not self.issuer or not self.audience:
            raise ConfigError(f"got issuer {self.issuer!r} and audience {self.audience!r}, expected non-empty")


@dataclass(frozen=True)
class _VerificationKey:
    algorithm: str
    key: EllipticCurvePublicKey | Ed25519PublicKey | RSAPublicKey


def _expected_algorithm(jwk: Mapping[str, Any]) -> str:
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "RSA":
        return "RS256"
    raise ConfigError(f"got JWK kty {kty!r} crv {crv!r}, expected EC P-256, OKP Ed25519 or RSA")


def _load_key(jwk: Any, settings: VerifierSettings) -> tuple[str, _VerificationKey]:
    if not isinstance(jwk, Mapping):
        raise ConfigError(f"got JWK of type {type(jwk).__name__}, expected an object")
    kid = jwk.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ConfigError(f"got JWK kid {kid!r}, expected a non-empty string")
    alg = _expected_algorithm(jwk)
    if jwk.get("alg", alg) != alg or alg not in settings.algorithms:
        raise ConfigError(
            f"JWK {kid!r}: got alg {jwk.get('alg', alg)!r}, expected {alg!r} "
            f"within allowed {list(settings.algorithms)!r}"
        )
    if jwk.get("use", "sig") != "sig":
        raise ConfigError(f"JWK {kid!r}: got use {jwk.get('use')!r}, expected 'sig'")
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(f"JWK {kid!r} is not a valid {alg} key: {exc}") from exc
    # A JWKS carrying private material ('d', RSA primes) leaks the signing key to readers.
    if not isinstance(key, EllipticCurvePublicKey | Ed25519PublicKey | RSAPublicKey):
        raise ConfigError(f"JWK {kid!r}: got {type(key).__name__}, expected a public key")
    if isinstance(key, RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        raise ConfigError(f"JWK {kid!r}: got {key.key_size}-bit RSA, expected >= {_MIN_RSA_BITS}")
    return kid, _VerificationKey(alg, key)


class TokenVerifier:
    """Verifies compact JWS tokens against a fixed set of public keys."""

    def __init__(self, jwks: Mapping[str, Any], settings: VerifierSettings) -> None:
        keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
        # Fail closed: a missing or empty key set is a configuration error, not a verifier.
        if not isinstance(keys, list) or not keys:
            raise ConfigError(f"got JWKS keys {keys!r}, expected a non-empty list")
        self._settings = settings
        self._keys: dict[str, _VerificationKey] = {}
        for jwk in keys:
            kid, key = _load_key(jwk, settings)
            if kid in self._keys:
                raise ConfigError(f"got JWK kid {kid!r} twice, expected each kid once")
            self._keys[kid] = key

    @classmethod
    def from_jwks_file(cls, path: Path, settings: VerifierSettings) -> TokenVerifier:
        """Build a verifier from a JWKS JSON file; any read or parse failure is a ConfigError."""
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read JWKS file {str(path)!r}: {exc}") from exc
        if not isinstance(document, dict):
            raise ConfigError(f"JWKS file {str(path)!r}: got {type(document).__name__}, expected a JSON object")
        return cls(document, settings)

    def verify(self, token: str | None, *, now: float | None = None) -> Principal:
        """Return the principal named by a valid token; raise an AuthenticationError otherwise."""
        if not token:
            raise TokenMissingError("got no bearer token, expected one")
        if not isinstance(token, str):
            raise TokenInvalidError(f"got token of type {type(token).__name__}, expected str")
        limit = self._settings.max_token_bytes
        # Size is checked before any decoding, bounding the work a hostile token can cause.
        # A compact JWS is ASCII only, so its length in chars equals its length in bytes.
        if len(token) > limit or not token.isascii():
            raise TokenInvalidError(f"got token of {len(token)} chars, expected at most {limit} ASCII bytes")
        key = self._key_for(token)
        try:
            claims = jwt.decode(token, key.key, algorithms=[key.algorithm], options=_PYJWT_OPTIONS)
        except jwt.PyJWTError as exc:
            raise TokenInvalidError(f"token rejected by signature check: {exc}") from exc
        return _principal_from_claims(claims, self._settings, now)

    def _key_for(self, token: str) -> _VerificationKey:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise TokenInvalidError(f"got unparseable token header: {exc}") from exc
        alg, kid = header.get("alg"), header.get("kid")
        # No critical extension is understood, so RFC 7515 §4.1.11 requires refusal.
        if "crit" in header:
            raise TokenInvalidError(f"got crit {header['crit']!r}, expected no crit header")
        # 'none' and HS* are refused outright: an HMAC keyed with our public key is forgeable
        # by anyone (the RS/HS key-confusion attack).
        if not isinstance(alg, str) or alg not in self._settings.algorithms:
            raise TokenInvalidError(f"got alg {alg!r}, expected one of {list(self._settings.algorithms)!r}")
        if not isinstance(kid, str) or kid not in self._keys:
            raise TokenInvalidError(f"got kid {kid!r}, expected one of {sorted(self._keys)!r}")
        key = self._keys[kid]
        if alg != key.algorithm:
            raise TokenInvalidError(f"got alg {alg!r}, expected {key.algorithm!r} for kid {kid!r}")
        return key


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    # bool is an int subclass; NaN and infinity would make every comparison below lie.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenInvalidError(f"got {name} {value!r}, expected a finite NumericDate")
    return value


def _string_claim(claims: Mapping[str, Any], name: str, max_chars: int) -> str:
    value = claims[name]
    if not isinstance(value, str) or not 0 < len(value) <= max_chars:
        raise TokenInvalidError(f"got {name} {value!r}, expected a string of 1..{max_chars} chars")
    return value


def _principal_from_claims(claims: Mapping[str, Any], settings: VerifierSettings, now: float | None) -> Principal:
    missing = [name for name in _REQUIRED_CLAIMS if name not in claims]
    if missing:
        raise TokenInvalidError(f"got claims missing {missing!r}, expected {list(_REQUIRED_CLAIMS)!r}")
    if claims["iss"] != settings.issuer:
        raise TokenInvalidError(f"got iss {claims['iss']!r}, expected {settings.issuer!r}")
    aud = claims["aud"]
    audiences = aud if isinstance(aud, list) else [aud]
    if settings.audience not in audiences or not all(isinstance(a, str) for a in audiences):
        raise TokenInvalidError(f"got aud {aud!r}, expected {settings.audience!r}")
    current = time.time() if now is None else now
    exp, iat = _numeric_date(claims, "exp"), _numeric_date(claims, "iat")
    if exp <= current - settings.leeway_seconds:
        raise TokenExpiredError(f"got exp {exp!r}, expected after {current:.0f} (leeway {settings.leeway_seconds}s)")
    if iat > current + settings.leeway_seconds:
        raise TokenInvalidError(
            f"got iat {iat!r} in the future, expected at most {current:.0f} (leeway {settings.leeway_seconds}s)"
        )
    if not 0 < exp - iat <= settings.max_ttl_seconds:
        raise TokenInvalidError(f"got exp - iat {exp - iat!r}s, expected > 0 and <= {settings.max_ttl_seconds}s")
    if "nbf" in claims and _numeric_date(claims, "nbf") > current + settings.leeway_seconds:
        raise TokenInvalidError(f"got nbf {claims['nbf']!r}, expected at most {current:.0f}")
    tenant = claims["tenant"]
    # fullmatch, not match with '$': '$' also matches before a trailing newline ('acme\n'),
    # which would let a crafted tenant smuggle a newline into paths and logs.
    if not isinstance(tenant, str) or not TENANT_PATTERN.fullmatch(tenant):
        raise TokenInvalidError(f"got tenant {tenant!r}, expected {TENANT_PATTERN.pattern!r}")
    scope = claims["scope"]
    scopes = scope.split(" ") if isinstance(scope, str) and scope else []
    if not isinstance(scope, str) or not all(SCOPE_PATTERN.fullmatch(s) for s in scopes):
        raise TokenInvalidError(f"got scope {scope!r}, expected space-separated scope tokens")
    return Principal(
        subject=_string_claim(claims, "sub", _MAX_SUBJECT_CHARS),
        tenant=tenant,
        scopes=frozenset(scopes),
        token_id=_string_claim(claims, "jti", _MAX_TOKEN_ID_CHARS),
        expires_at=math.floor(exp),
    )


def bearer_token(authorization: str | None) -> str | None:
    """Extract the token from an ``Authorization: Bearer <token>`` value; None when absent."""
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Only the scheme is echoed: the rest of the header may be a credential.
        raise TokenInvalidError(f"got authorization scheme {scheme[:32]!r}, expected 'Bearer'")
    return token.strip() or None
