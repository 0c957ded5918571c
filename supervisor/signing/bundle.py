"""Verify a model-signing bundle over bytes, with no file I/O.

The ``model-signing`` library verifies a model directory on disk; at load time IRE holds
the model's bytes in memory and must check those very bytes, so this module checks the
stored bundle's signature and manifest directly. It follows the same format:

- a Sigstore bundle v0.3 whose ``dsseEnvelope`` carries an in-toto statement;
- ``predicateType`` ``https://model_signing/signature/v1.0``;
- ``predicate.resources``: each file's sha256, sorted by name; the subject digest is the
  sha256 over the concatenated raw digests;
- an ECDSA signature over the DSSE pre-authentication encoding, with the hash matching the
  curve (P-256/SHA-256, P-384/SHA-384, P-521/SHA-512).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from supervisor.errors import SignatureError, SignatureMismatchError, SignerUntrustedError
from supervisor.registry.records import TrustedSigner

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
# A bundle is a few KiB per thousand files; this bounds what a hostile file can make us parse.
MAX_BUNDLE_BYTES = 4 * 1024 * 1024
_HASHES: dict[int, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    256: hashes.SHA256,
    384: hashes.SHA384,
    521: hashes.SHA512,
}


@dataclass(frozen=True)
class SignedManifest:
    """What a verified signature vouches for. Only :func:`verify_bundle` makes these."""

    subject: str
    files: tuple[tuple[str, str], ...]  # (relative path, sha256 hex), sorted by path
    key_hint: str

    def digest_of(self, name: str) -> str | None:
        return dict(self.files).get(name)


def key_hint(public_key_pem: bytes) -> str:
    """The key identifier model-signing writes into a bundle: sha256 of the PEM."""
    return hashlib.sha256(public_key_pem).hexdigest()


def load_public_key(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.key_size not in _HASHES:
        raise SignerUntrustedError("signer keys must be EC P-256, P-384 or P-521 public keys")
    return key


def canonical_pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def _pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def read_hint(bundle: bytes) -> str:
    """The key hint of an unverified bundle, to pick which trusted key to verify it with."""
    return str(_parse(bundle)["verificationMaterial"].get("publicKey", {}).get("hint", ""))


def _parse(bundle: bytes) -> dict[str, Any]:
    if len(bundle) > MAX_BUNDLE_BYTES:
        raise SignatureError(f"signature is {len(bundle)} bytes, limit is {MAX_BUNDLE_BYTES}")
    try:
        document = json.loads(bundle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SignatureError(f"signature is not a JSON Sigstore bundle: {exc}") from exc
    if not isinstance(document, dict) or document.get("mediaType") != BUNDLE_MEDIA_TYPE:
        got = document.get("mediaType") if isinstance(document, dict) else type(document).__name__
        raise SignatureError(f"signature has media type {got!r}, expected {BUNDLE_MEDIA_TYPE!r}")
    if not isinstance(document.get("verificationMaterial"), dict) or not isinstance(document.get("dsseEnvelope"), dict):
        raise SignatureError("signature bundle lacks verificationMaterial or dsseEnvelope")
    return document


def verify_bundle(bundle: bytes, public_key_pem: bytes) -> SignedManifest:
    """Check the bundle's signature with the given key and return what it signs."""
    document = _parse(bundle)
    key = load_public_key(public_key_pem)
    hint = read_hint(bundle)
    if hint and hint != key_hint(public_key_pem):
        raise SignerUntrustedError(f"signature names key {hint[:16]}…, expected {key_hint(public_key_pem)[:16]}…")
    envelope = document["dsseEnvelope"]
    try:
        payload = base64.b64decode(envelope["payload"], validate=True)
        (signature,) = envelope["signatures"]
        raw_sig = base64.b64decode(signature["sig"], validate=True)
        payload_type = envelope["payloadType"]
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise SignatureError(f"malformed DSSE envelope: {type(exc).__name__}") from exc
    if payload_type != PAYLOAD_TYPE:
        raise SignatureError(f"payload type {payload_type!r}, expected {PAYLOAD_TYPE!r}")
    try:
        key.verify(raw_sig, _pae(payload_type, payload), ec.ECDSA(_HASHES[key.curve.key_size]()))
    except InvalidSignature as exc:
        raise SignatureMismatchError("signature does not verify with the signer's key") from exc
    return _manifest(payload, hint or key_hint(public_key_pem))


def _manifest(payload: bytes, hint: str) -> SignedManifest:
    try:
        statement = json.loads(payload)
        subject = statement["subject"][0]
        resources = statement["predicate"]["resources"]
        files = tuple(sorted((str(r["name"]), str(r["digest"])) for r in resources if r["algorithm"] == "sha256"))
        if len(files) != len(resources):
            raise ValueError("a resource is not sha256")
        if statement["_type"] != STATEMENT_TYPE or statement["predicateType"] != PREDICATE_TYPE:
            raise ValueError(f"statement type {statement['_type']!r} / {statement['predicateType']!r}")
        subject_digest = subject["digest"]["sha256"]
        combined = hashlib.sha256(b"".join(bytes.fromhex(d) for _, d in files)).hexdigest()
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SignatureError(f"signed statement is not a model-signing v1.0 statement: {exc}") from exc
    if combined != subject_digest:
        raise SignatureMismatchError(f"subject digest {subject_digest[:16]}… does not cover the listed files")
    return SignedManifest(str(subject.get("name", "")), files, hint)


def trusted_signer(name: str, tenant: str, public_key_pem: bytes) -> TrustedSigner:
    """A :class:`TrustedSigner` for an EC public key, its PEM normalised."""
    pem = canonical_pem(load_public_key(public_key_pem))
    return TrustedSigner(name, tenant, pem.decode(), key_hint(pem), time.time())
