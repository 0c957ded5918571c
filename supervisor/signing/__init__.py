"""Model signatures in the OpenSSF model-signing format (a Sigstore bundle with a DSSE
in-toto statement), checked against the home's trusted signers."""

from supervisor.signing.bundle import SignedManifest, key_hint, trusted_signer, verify_bundle
from supervisor.signing.keys import generate_signing_key
from supervisor.signing.model_dir import VerifiedModel, sign_model_dir, verify_model_dir

__all__ = [
    "SignedManifest",
    "VerifiedModel",
    "generate_signing_key",
    "key_hint",
    "sign_model_dir",
    "trusted_signer",
    "verify_bundle",
    "verify_model_dir",
]
