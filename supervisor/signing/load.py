"""Read a registered model's bytes for a worker, checked against its signature.

At every load the stored bytes are hashed and compared with the digest in the signed
manifest, and the stored signature is verified again with the signer's key as trusted
now: a model swapped in the store, or signed by a key that was since removed, never
reaches a worker. The bytes checked are the bytes handed over; the worker never opens a
path.
"""

from __future__ import annotations

import structlog

from supervisor.errors import IreError, ModelIntegrityError, NotFoundError
from supervisor.registry import ModelRecord, ModelStore, Registry
from supervisor.settings import Settings
from supervisor.signing.bundle import MAX_BUNDLE_BYTES, verify_bundle

log = structlog.get_logger(__name__)


def load_model_bytes(model: ModelRecord, store: ModelStore, registry: Registry, settings: Settings) -> bytes:
    """The verified bytes of ``model``, or :class:`ModelIntegrityError`."""
    try:
        data = store.read_verified(model.sha256, settings.limits.max_model_bytes)
        if not model.signer:
            if not settings.models.unsafe_allow_unsigned:
                raise ModelIntegrityError(f"model {model.name!r} is unsigned and this home requires signatures")
            log.warning(
                "UNSAFE: loading an unsigned model", tenant=model.tenant, model=model.name, version=model.version
            )
            return data
        bundle = store.read_verified(model.signature_sha256, MAX_BUNDLE_BYTES, suffix=".sig")
        signer = registry.get_signer(model.signer)
        if signer.tenant not in ("", model.tenant):
            raise ModelIntegrityError(f"signer {signer.name!r} is not trusted for tenant {model.tenant!r}")
        manifest = verify_bundle(bundle, signer.public_key_pem.encode())
        if model.sha256 not in {digest for _, digest in manifest.files}:
            raise ModelIntegrityError(f"model bytes {model.sha256[:16]}… are not in the signed manifest")
        return data
    except NotFoundError as exc:
        _security_event(model, exc)
        raise ModelIntegrityError(f"cannot load model {model.name!r}: {exc}") from exc
    except ModelIntegrityError as exc:
        _security_event(model, exc)
        raise
    except IreError as exc:
        _security_event(model, exc)
        raise ModelIntegrityError(f"signature of model {model.name!r} no longer verifies: {exc}") from exc


def _security_event(model: ModelRecord, exc: Exception) -> None:
    log.error(
        "security event: model integrity check failed",
        tenant=model.tenant,
        model=model.name,
        version=model.version,
        error=str(exc),
    )
