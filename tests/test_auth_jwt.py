"""Threat catalogue for bearer-token verification and the home's token issuer."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.auth import (
    IssuerKey,
    Principal,
    TokenVerifier,
    VerifierSettings,
    bearer_token,
    jwks_document,
)
from supervisor.errors import (
    AuthenticationError,
    ConfigError,
    TokenExpiredError,
    TokenInvalidError,
    TokenMissingError,
)

NOW = 1_700_000_000
DROP = object()  # marks a claim to leave out of the payload


@pytest.fixture(scope="module")
def ed_key() -> IssuerKey:
    return IssuerKey.generate()


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_jwk(key: ec.EllipticCurvePrivateKey, kid: str = "ec-1") -> dict[str, Any]:
    return {**jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


def rsa_jwk(key: rsa.RSAPrivateKey, kid: str = "rsa-1") -> dict[str, Any]:
    return {**jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid}


@pytest.fixture(scope="module")
def verifier(ed_key: IssuerKey, ec_key: ec.EllipticCurvePrivateKey, rsa_key: rsa.RSAPrivateKey) -> TokenVerifier:
    keys = [ed_key.public_jwk(), ec_jwk(ec_key), rsa_jwk(rsa_key)]
    return TokenVerifier(jwks_document(keys), VerifierSettings())


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "ire",
        "aud": "ire",
        "sub": "alice",
        "tenant": "acme",
        "scope": "infer models:read",
        "iat": NOW,
        "exp": NOW + 600,
        "jti": "token-1",
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not DROP}


def sign_ed(key: IssuerKey, payload: dict[str, Any], **header: Any) -> str:
    """Sign arbitrary claims with the issuer's private key, bypassing issue()'s checks."""
    private = key._private_key  # test-only reach into the key to sign hostile claims
    return jwt.encode(payload, private, algorithm="EdDSA", headers={"kid": key.kid, **header})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    return f"{head}.{body}.{b64url(signature)}"


def hs256_forgery(secret: bytes, kid: str) -> str:
    """The key-confusion token pyjwt refuses to build: HMAC keyed with public material."""
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    body = b64url(json.dumps(claims()).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(mac)}"


# --- accepted tokens -------------------------------------------------------------------


def test_issuer_round_trip(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = ed_key.issue(
        issuer="ire",
        audience="ire",
        subject="alice",
        tenant="acme",
        scopes=["infer", "models:read", "infer"],
        ttl_seconds=600,
        now=NOW,
    )
    principal = verifier.verify(token, now=NOW + 1)
    assert principal == Principal(
        subject="alice",
        tenant="acme",
        scopes=frozenset({"infer", "models:read"}),
        token_id=principal.token_id,
        expires_at=NOW + 600,
    )
    assert len(principal.token_id) >= 22
    assert jwt.get_unverified_header(token)["kid"] == ed_key.kid


def test_issued_token_verifies_against_wall_clock(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = ed_key.issue(issuer="ire", audience="ire", subject="bob", tenant="t1", scopes=[], ttl_seconds=60)
    assert verifier.verify(token).scopes == frozenset()


def test_issued_token_ids_are_unique(ed_key: IssuerKey) -> None:
    def issue() -> str:
        token = ed_key.issue(issuer="ire", audience="ire", subject="a", tenant="t", scopes=[], ttl_seconds=60)
        return str(jwt.decode(token, options={"verify_signature": False})["jti"])

    assert issue() != issue()


def test_es256_token_accepted(ec_key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    assert verifier.verify(token, now=NOW).subject == "alice"


def test_rs256_token_accepted(rsa_key: rsa.RSAPrivateKey, verifier: TokenVerifier) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
    assert verifier.verify(token, now=NOW).tenant == "acme"


def test_audience_list_containing_ours_accepted(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = sign_ed(ed_key, claims(aud=["other", "ire"]))
    assert verifier.verify(token, now=NOW).subject == "alice"


def test_rotated_keys_both_verify() -> None:
    old, new = IssuerKey.generate(), IssuerKey.generate()
    both = TokenVerifier(jwks_document([old.public_jwk(), new.public_jwk()]), VerifierSettings())
    for key in (old, new):
        token = key.issue(
            issuer="ire",
            audience="ire",
            subject="s",
            tenant="t",
            scopes=["a"],
            ttl_seconds=60,
            now=NOW,
        )
        assert both.verify(token, now=NOW).scopes == frozenset({"a"})
    retired = TokenVerifier(jwks_document([new.public_jwk()]), VerifierSettings())
    old_token = old.issue(issuer="ire", audience="ire", subject="s", tenant="t", scopes=[], ttl_seconds=60, now=NOW)
    with pytest.raises(TokenInvalidError, match=f"got kid '{old.kid}'"):
        retired.verify(old_token, now=NOW)


def test_skew_within_leeway_accepted(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    expired_recently = sign_ed(ed_key, claims(iat=NOW - 600, exp=NOW - 29))
    issued_slightly_ahead = sign_ed(ed_key, claims(iat=NOW + 29))
    assert verifier.verify(expired_recently, now=NOW).expires_at == NOW - 29
    assert verifier.verify(issued_slightly_ahead, now=NOW).subject == "alice"


# --- rejected tokens -------------------------------------------------------------------


@pytest.mark.parametrize("token", [pytest.param(None, id="none"), pytest.param("", id="empty")])
def test_missing_token_rejected(verifier: TokenVerifier, token: str | None) -> None:
    with pytest.raises(TokenMissingError, match="got no bearer token"):
        verifier.verify(token, now=NOW)


def test_expired_token_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = sign_ed(ed_key, claims(iat=NOW - 600, exp=NOW - 31))
    with pytest.raises(TokenExpiredError, match=f"got exp {NOW - 31}, expected after {NOW}"):
        verifier.verify(token, now=NOW)


def test_wrong_audience_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalidError, match="got aud 'x', expected 'ire'"):
        verifier.verify(sign_ed(ed_key, claims(aud="x")), now=NOW)


def test_wrong_issuer_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalidError, match="got iss 'evil', expected 'ire'"):
        verifier.verify(sign_ed(ed_key, claims(iss="evil")), now=NOW)


@pytest.mark.parametrize(
    "alg", [pytest.param("none", id="lower"), pytest.param("None", id="capital"), pytest.param("NONE", id="upper")]
)
def test_alg_none_rejected(ed_key: IssuerKey, verifier: TokenVerifier, alg: str) -> None:
    token = hand_made({"alg": alg, "typ": "JWT", "kid": ed_key.kid}, claims())
    with pytest.raises(TokenInvalidError, match=f"got alg '{alg}', expected one of"):
        verifier.verify(token, now=NOW)


def test_hs256_signed_with_public_key_rejected(
    ed_key: IssuerKey, rsa_key: rsa.RSAPrivateKey, verifier: TokenVerifier
) -> None:
    rsa_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forgeries = [
        hs256_forgery(rsa_pem, "rsa-1"),
        hs256_forgery(json.dumps(rsa_jwk(rsa_key)).encode(), "rsa-1"),
        hs256_forgery(json.dumps(ed_key.public_jwk()).encode(), ed_key.kid),
        hs256_forgery(base64.urlsafe_b64decode(ed_key.public_jwk()["x"] + "="), ed_key.kid),
    ]
    for token in forgeries:
        with pytest.raises(TokenInvalidError, match="got alg 'HS256', expected one of"):
            verifier.verify(token, now=NOW)


@pytest.mark.parametrize(
    "algorithms",
    [
        pytest.param(("HS256",), id="hs256"),
        pytest.param(("EdDSA", "none"), id="none"),
        pytest.param((), id="empty"),
        pytest.param(("ES384",), id="unsupported"),
    ],
)
def test_settings_allowing_weak_algorithm_refused(algorithms: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError) as caught:
        VerifierSettings(algorithms=algorithms)
    assert f"got algorithms {list(algorithms)!r}, expected a non-empty subset of" in str(caught.value)


def test_unknown_kid_rejected(verifier: TokenVerifier) -> None:
    stranger = IssuerKey.generate()
    token = stranger.issue(issuer="ire", audience="ire", subject="s", tenant="t", scopes=[], ttl_seconds=60, now=NOW)
    with pytest.raises(TokenInvalidError, match=f"got kid '{stranger.kid}', expected one of"):
        verifier.verify(token, now=NOW)


@pytest.mark.parametrize(
    "kid", [pytest.param(DROP, id="absent"), pytest.param(7, id="integer"), pytest.param(None, id="null")]
)
def test_kid_absent_or_malformed_rejected(ed_key: IssuerKey, verifier: TokenVerifier, kid: Any) -> None:
    header = {"alg": "EdDSA"} if kid is DROP else {"alg": "EdDSA", "kid": kid}
    token = hand_made(header, claims(), b"\0" * 64)
    with pytest.raises(TokenInvalidError):
        verifier.verify(token, now=NOW)


def test_key_signed_by_other_key_under_trusted_kid_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    attacker = IssuerKey.generate()
    token = jwt.encode(claims(), attacker._private_key, algorithm="EdDSA", headers={"kid": ed_key.kid})
    with pytest.raises(TokenInvalidError, match="Signature verification failed"):
        verifier.verify(token, now=NOW)


def test_tampered_payload_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    head, _, signature = sign_ed(ed_key, claims()).split(".")
    forged_body = b64url(json.dumps(claims(tenant="victim")).encode())
    with pytest.raises(TokenInvalidError, match="Signature verification failed"):
        verifier.verify(f"{head}.{forged_body}.{signature}", now=NOW)


def test_tampered_signature_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    head, body, signature = sign_ed(ed_key, claims()).split(".")
    flipped = "A" + signature[1:] if signature[0] != "A" else "B" + signature[1:]
    with pytest.raises(TokenInvalidError, match="Signature verification failed"):
        verifier.verify(f"{head}.{body}.{flipped}", now=NOW)


def test_oversized_token_rejected(ed_key: IssuerKey) -> None:
    small = TokenVerifier(jwks_document([ed_key.public_jwk()]), VerifierSettings(max_token_bytes=64))
    valid = sign_ed(ed_key, claims())
    with pytest.raises(TokenInvalidError, match=f"got token of {len(valid)} chars, expected at most 64"):
        small.verify(valid, now=NOW)
    # Garbage of the default limit + 1 is refused on size, not on a parse error.
    with pytest.raises(TokenInvalidError, match="got token of 8193 chars, expected at most 8192"):
        TokenVerifier(jwks_document([ed_key.public_jwk()]), VerifierSettings()).verify("a" * 8193)


def test_non_ascii_token_rejected(verifier: TokenVerifier) -> None:
    with pytest.raises(TokenInvalidError, match="ASCII"):
        verifier.verify("eyJ\u0430.eyJ.sig", now=NOW)


def test_future_iat_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = sign_ed(ed_key, claims(iat=NOW + 31, exp=NOW + 600))
    with pytest.raises(TokenInvalidError, match=f"got iat {NOW + 31} in the future, expected at most {NOW}"):
        verifier.verify(token, now=NOW)


def test_overlong_lifetime_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = sign_ed(ed_key, claims(exp=NOW + 86400 * 31 + 1))
    with pytest.raises(TokenInvalidError, match="got exp - iat 2678401s, expected > 0 and <= 2678400s"):
        verifier.verify(token, now=NOW)


@pytest.mark.parametrize(
    "claim", [pytest.param(c, id=c) for c in ("iss", "aud", "exp", "iat", "sub", "jti", "tenant", "scope")]
)
def test_missing_required_claim_rejected(ed_key: IssuerKey, verifier: TokenVerifier, claim: str) -> None:
    with pytest.raises(TokenInvalidError, match=f"got claims missing \\['{claim}'\\]"):
        verifier.verify(sign_ed(ed_key, claims(**{claim: DROP})), now=NOW)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param({"exp": "soon"}, "got exp 'soon', expected a finite NumericDate", id="exp-string"),
        pytest.param({"exp": True}, "got exp True", id="exp-bool"),
        pytest.param({"exp": float("inf")}, "got exp inf", id="exp-infinite"),
        pytest.param({"iat": float("nan")}, "got iat nan", id="iat-nan"),
        pytest.param({"exp": NOW - 1, "iat": NOW - 1}, "got exp - iat 0s", id="exp-equals-iat"),
        pytest.param({"nbf": NOW + 300}, f"got nbf {NOW + 300}, expected at most {NOW}", id="nbf-future"),
        pytest.param({"aud": ["other"]}, "got aud ['other'], expected 'ire'", id="aud-list-without-ours"),
        pytest.param({"aud": ["ire", 1]}, "got aud ['ire', 1]", id="aud-list-with-non-string"),
        pytest.param({"aud": {"ire": 1}}, "got aud {'ire': 1}", id="aud-object"),
        pytest.param({"tenant": "Acme"}, "got tenant 'Acme'", id="tenant-uppercase"),
        pytest.param({"tenant": "acme\n"}, "got tenant 'acme\\n'", id="tenant-trailing-newline"),
        pytest.param({"tenant": "-acme"}, "got tenant '-acme'", id="tenant-leading-dash"),
        pytest.param({"tenant": "../etc"}, "got tenant '../etc'", id="tenant-path-traversal"),
        pytest.param({"tenant": "a" * 64}, "got tenant 'aaaa", id="tenant-too-long"),
        pytest.param({"tenant": ["acme"]}, "got tenant ['acme']", id="tenant-list"),
        pytest.param({"sub": ""}, "got sub '', expected a string of 1..256 chars", id="sub-empty"),
        pytest.param({"sub": "s" * 257}, "expected a string of 1..256 chars", id="sub-too-long"),
        pytest.param({"sub": 42}, "got sub 42", id="sub-integer"),
        pytest.param({"jti": ""}, "got jti ''", id="jti-empty"),
        pytest.param({"scope": ["infer"]}, "got scope ['infer'], expected space-separated", id="scope-list"),
        pytest.param({"scope": "infer  admin"}, "got scope 'infer  admin'", id="scope-double-space"),
        pytest.param({"scope": "infer\tadmin"}, "got scope 'infer\\tadmin'", id="scope-tab"),
        pytest.param({"scope": 'a"b'}, "got scope 'a\"b'", id="scope-quote"),
    ],
)
def test_malformed_claim_rejected(
    ed_key: IssuerKey, verifier: TokenVerifier, overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(TokenInvalidError) as caught:
        verifier.verify(sign_ed(ed_key, claims(**overrides)), now=NOW)
    assert fragment in str(caught.value)


def test_alg_mismatch_with_key_type_rejected(
    ed_key: IssuerKey, ec_key: ec.EllipticCurvePrivateKey, verifier: TokenVerifier
) -> None:
    # A valid ES256 signature presented under the Ed25519 key's kid.
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": ed_key.kid})
    with pytest.raises(TokenInvalidError, match=f"got alg 'ES256', expected 'EdDSA' for kid '{ed_key.kid}'"):
        verifier.verify(token, now=NOW)
    # An EdDSA signature presented under the RSA key's kid.
    token = sign_ed(ed_key, claims(), kid="rsa-1")
    with pytest.raises(TokenInvalidError, match="got alg 'EdDSA', expected 'RS256' for kid 'rsa-1'"):
        verifier.verify(token, now=NOW)


def test_crit_unknown_extension_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    token = sign_ed(ed_key, claims(), crit=["exp-check"], **{"exp-check": True})
    with pytest.raises(TokenInvalidError, match="critical extension: exp-check"):
        verifier.verify(token, now=NOW)


def test_crit_detached_payload_rejected(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    # RFC 7797 unencoded, detached payload: signed bytes that are not in the token at all.
    head = b64url(json.dumps({"alg": "EdDSA", "kid": ed_key.kid, "crit": ["b64"], "b64": False}).encode())
    signature = ed_key._private_key.sign(f"{head}.{json.dumps(claims())}".encode())
    with pytest.raises(TokenInvalidError, match="got crit \\['b64'\\], expected no crit header"):
        verifier.verify(f"{head}..{b64url(signature)}", now=NOW)


def test_embedded_jwk_header_ignored(ed_key: IssuerKey, verifier: TokenVerifier) -> None:
    attacker = IssuerKey.generate()
    token = jwt.encode(
        claims(), attacker._private_key, algorithm="EdDSA", headers={"kid": ed_key.kid, "jwk": attacker.public_jwk()}
    )
    with pytest.raises(TokenInvalidError, match="Signature verification failed"):
        verifier.verify(token, now=NOW)


# --- key-set configuration -------------------------------------------------------------


def _jwks_cases() -> Iterator[Any]:
    ed = IssuerKey.generate().public_jwk()
    yield pytest.param({"keys": []}, "got JWKS keys [], expected a non-empty list", id="empty")
    yield pytest.param({}, "got JWKS keys None", id="no-keys-member")
    yield pytest.param({"keys": [{**ed, "kid": ""}]}, "got JWK kid ''", id="empty-kid")
    yield pytest.param({"keys": [{k: v for k, v in ed.items() if k != "kid"}]}, "got JWK kid None", id="no-kid")
    yield pytest.param({"keys": [ed, ed]}, "twice", id="duplicate-kid")
    yield pytest.param(
        {"keys": [{**ed, "alg": "RS256"}]}, "got alg 'RS256', expected 'EdDSA'", id="jwk-alg-disagrees-with-type"
    )
    yield pytest.param({"keys": [{**ed, "use": "enc"}]}, "got use 'enc'", id="encryption-key")
    yield pytest.param({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]}, "got JWK kty 'oct'", id="symmetric-key")
    yield pytest.param({"keys": [{**ed, "x": "AAAA"}]}, "is not a valid EdDSA key", id="bad-point")
    yield pytest.param({"keys": ["ed"]}, "got JWK of type str", id="not-an-object")


@pytest.mark.parametrize(("document", "fragment"), list(_jwks_cases()))
def test_bad_jwks_refused(document: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TokenVerifier(document, VerifierSettings())
    assert fragment in str(caught.value)


def test_private_jwk_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    private = {**jwt.algorithms.ECAlgorithm.to_jwk(ec_key, as_dict=True), "kid": "leak"}
    with pytest.raises(ConfigError, match="PrivateKey, expected a public key"):
        TokenVerifier(jwks_document([private]), VerifierSettings())


def test_short_rsa_key_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigError, match="got 1024-bit RSA, expected >= 2048"):
        TokenVerifier(jwks_document([rsa_jwk(weak)]), VerifierSettings())


def test_key_outside_allowed_algorithms_refused(ec_key: ec.EllipticCurvePrivateKey) -> None:
    with pytest.raises(ConfigError, match="got alg 'ES256', expected 'ES256' within allowed \\['EdDSA'\\]"):
        TokenVerifier(jwks_document([ec_jwk(ec_key)]), VerifierSettings(algorithms=("EdDSA",)))


def test_jwks_file_round_trip(tmp_path: Path, ed_key: IssuerKey) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks_document([ed_key.public_jwk()])))
    verifier = TokenVerifier.from_jwks_file(path, VerifierSettings())
    assert verifier.verify(sign_ed(ed_key, claims()), now=NOW).subject == "alice"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(None, "cannot read JWKS file", id="missing"),
        pytest.param("{not json", "cannot read JWKS file", id="invalid-json"),
        pytest.param("[]", "got list, expected a JSON object", id="not-an-object"),
        pytest.param('{"keys": []}', "expected a non-empty list", id="empty-key-set"),
    ],
)
def test_bad_jwks_file_refused(tmp_path: Path, content: str | None, fragment: str) -> None:
    path = tmp_path / "jwks.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as caught:
        TokenVerifier.from_jwks_file(path, VerifierSettings())
    assert fragment in str(caught.value)


# --- Authorization header --------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="absent"),
        pytest.param("", None, id="empty"),
        pytest.param("Bearer", None, id="scheme-only"),
        pytest.param("Bearer abc.def.ghi", "abc.def.ghi", id="canonical"),
        pytest.param("bearer abc", "abc", id="lowercase-scheme"),
        pytest.param("BEARER  abc ", "abc", id="extra-spaces"),
    ],
)
def test_bearer_token_parsed(header: str | None, expected: str | None) -> None:
    assert bearer_token(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("Basic dXNlcjpwYXNz", id="basic"),
        pytest.param("Token abc", id="token"),
        pytest.param("abc.def.ghi", id="no-scheme"),
    ],
)
def test_non_bearer_scheme_rejected(header: str) -> None:
    with pytest.raises(TokenInvalidError, match="expected 'Bearer'") as caught:
        bearer_token(header)
    assert "dXNlcjpwYXNz" not in str(caught.value)  # the credential itself is never echoed


# --- issuer key storage ----------------------------------------------------------------


def test_saved_key_file_mode_is_0600(tmp_path: Path) -> None:
    path = tmp_path / "issuer.pem"
    IssuerKey.generate().save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")


def test_kid_stable_across_save_load(tmp_path: Path) -> None:
    key = IssuerKey.generate()
    key.save(tmp_path / "issuer.pem")
    loaded = IssuerKey.load(tmp_path / "issuer.pem")
    assert loaded.kid == key.kid
    assert loaded.public_jwk() == key.public_jwk()


def test_kid_is_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.1 private key; A.3 gives its thumbprint.
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    key = IssuerKey(Ed25519PrivateKey.from_private_bytes(seed))
    assert key.public_jwk()["x"] == "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert key.kid == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_save_refuses_to_overwrite_or_follow_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "issuer.pem"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="cannot create issuer key"):
        IssuerKey.generate().save(link)
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(None, "cannot load issuer key", id="missing"),
        pytest.param(b"not a pem", "cannot load issuer key", id="garbage"),
        pytest.param(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            ),
            "PrivateKey, expected Ed25519",
            id="wrong-key-type",
        ),
    ],
)
def test_bad_issuer_key_file_refused(tmp_path: Path, content: bytes | None, fragment: str) -> None:
    path = tmp_path / "issuer.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        IssuerKey.load(path)
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        pytest.param({"scopes": ["infer admin"]}, "got scopes ['infer admin']", id="scope-with-space"),
        pytest.param({"scopes": [""]}, "got scopes ['']", id="empty-scope"),
        pytest.param({"tenant": "Acme"}, "got tenant 'Acme'", id="bad-tenant"),
        pytest.param({"ttl_seconds": 0}, "got ttl_seconds 0, expected > 0", id="zero-ttl"),
    ],
)
def test_issuer_refuses_unverifiable_tokens(ed_key: IssuerKey, overrides: dict[str, Any], fragment: str) -> None:
    arguments: dict[str, Any] = {
        "issuer": "ire",
        "audience": "ire",
        "subject": "s",
        "tenant": "t",
        "scopes": ["a"],
        "ttl_seconds": 60,
        **overrides,
    }
    with pytest.raises(ConfigError) as caught:
        ed_key.issue(**arguments)
    assert fragment in str(caught.value)


def test_issuer_key_repr_hides_private_key(ed_key: IssuerKey) -> None:
    assert repr(ed_key) == f"IssuerKey(kid={ed_key.kid!r})"


# --- property tests: hostile input only ever raises AuthenticationError ----------------

_B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _expect_only_authentication_errors(verify: Callable[[], Principal]) -> None:
    with contextlib.suppress(AuthenticationError):
        verify()


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(max_size=300) | st.text(alphabet=_B64URL + ".", max_size=300))
def test_arbitrary_strings_raise_only_authentication_errors(verifier: TokenVerifier, token: str) -> None:
    with pytest.raises(AuthenticationError):
        verifier.verify(token, now=NOW)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_json, payload=_json, signature=st.binary(max_size=80))
def test_arbitrary_json_segments_raise_only_authentication_errors(
    verifier: TokenVerifier, header: Any, payload: Any, signature: bytes
) -> None:
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(payload).encode())
    with pytest.raises(AuthenticationError):
        verifier.verify(f"{head}.{body}.{b64url(signature)}", now=NOW)


_claim_value = (
    _json
    | st.integers(min_value=NOW - 100, max_value=NOW + 100)
    | st.sampled_from(["ire", "acme", "infer", ["ire"], "", "a b", NOW, float(NOW), NOW + 10**9])
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.fixed_dictionaries(
        {}, optional=dict.fromkeys(("iss", "aud", "exp", "iat", "nbf", "sub", "jti", "tenant", "scope"), _claim_value)
    ),
    extra_header=st.dictionaries(st.sampled_from(["typ", "cty", "crit", "b64", "x5u", "jku"]), _json),
)
def test_validly_signed_hostile_claims_raise_only_authentication_errors(
    ed_key: IssuerKey, verifier: TokenVerifier, values: dict[str, Any], extra_header: dict[str, Any]
) -> None:
    try:
        token = sign_ed(ed_key, {**claims(), **values}, **extra_header)
    except (TypeError, ValueError, jwt.PyJWTError):
        return  # pyjwt would not encode this header; nothing to verify
    _expect_only_authentication_errors(lambda: verifier.verify(token, now=NOW))
