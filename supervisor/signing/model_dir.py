"""Sign and verify a model directory with the ``model-signing`` library.

Registration verifies twice, on purpose:
1. ``model-signing`` checks the directory on disk against the signed manifest, with the
   same rules as its CLI (added, removed and modified files all fail), so IRE accepts
   exactly what ``model_signing verify key`` accepts;
2. IRE then reads the ONNX file once and checks those bytes against the manifest. Those
   bytes, and no later read of the path, are what gets stored: a file swapped between
   the two checks is caught by the second.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import model_signing

from supervisor.errors import ModelUnsignedError, SignatureError, SignatureMismatchError, SignerUntrustedError
from supervisor.registry import TrustedSigner
from supervisor.signing.bundle import MAX_BUNDLE_BYTES, SignedManifest, read_hint, verify_bundle


@dataclass(frozen=True)
class VerifiedModel:
    """A model whose signature verified. Only :func:`verify_model_dir` makes these."""

    manifest: SignedManifest
    signer: TrustedSigner
    onnx_name: str
    onnx_bytes: bytes
    bundle: bytes


def _ignored(model: Path, signature: Path) -> list[Path]:
    try:
        return [signature.resolve().relative_to(model.resolve())]
    except ValueError:
        return []


def _hashing(model: Path, signature: Path) -> model_signing.hashing.Config:
    return model_signing.hashing.Config().set_ignored_paths(paths=_ignored(model, signature), ignore_git_paths=True)


def sign_model_dir(model: Path, private_key: Path, signature: Path) -> None:
    """Write an OpenSSF model-signing signature of ``model`` to ``signature``."""
    try:
        model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).set_hashing_config(
            _hashing(model, signature)
        ).sign(model, signature)
    except (ValueError, TypeError, OSError) as exc:
        raise SignatureError(f"cannot sign {model}: {exc}") from exc


def _pick_signer(bundle: bytes, candidates: Sequence[TrustedSigner], tenant: str) -> TrustedSigner:
    hint = read_hint(bundle)
    for signer in candidates:
        if signer.key_hint == hint:
            return signer
    where = f"tenant {tenant!r}" if tenant else "this home"
    raise SignerUntrustedError(f"the model was signed by key {hint[:16] or '?'}…, which is not trusted for {where}")


def verify_model_dir(
    model: Path, signature: Path | None, candidates: Sequence[TrustedSigner], onnx_file: Path, *, tenant: str = ""
) -> VerifiedModel:
    """Verify ``model`` against ``signature`` with one of the ``candidates``' keys."""
    if signature is None:
        raise ModelUnsignedError(f"{model} has no signature; pass --signature (models must be signed)")
    try:
        with signature.open("rb") as f:
            bundle = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as exc:
        raise SignatureError(f"cannot read signature {signature}: {exc}") from exc
    signer = _pick_signer(bundle, candidates, tenant)
    manifest = verify_bundle(bundle, signer.public_key_pem.encode())
    with tempfile.NamedTemporaryFile("w", suffix=".pem") as pem:
        pem.write(signer.public_key_pem)
        pem.flush()
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pem.name).set_hashing_config(
                _hashing(model, signature)
            ).verify(model, signature)
        except ValueError as exc:
            raise SignatureMismatchError(f"{model} does not match its signature: {exc}") from exc
    name = onnx_file.relative_to(model).as_posix()
    data = onnx_file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    signed = manifest.digest_of(name)
    if signed != digest:
        raise SignatureMismatchError(f"{name} has sha256 {digest[:16]}…, the signature says {str(signed)[:16]}…")
    return VerifiedModel(manifest, signer, name, data, bundle)
