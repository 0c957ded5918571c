"""The supervisor's errors.

Every error the supervisor raises derives from :class:`IreError`. The classes are split
by what went wrong, because the edge maps them to different gRPC codes (see
``supervisor/transport/status.py``):

- the caller's input was bad or untrusted (:class:`InvalidInputError`,
  :class:`AuthenticationError`, :class:`PermissionDeniedError`, :class:`NotFoundError`);
- the infrastructure failed (:class:`UnavailableError` and its subclasses).

Messages name both the value received and the value expected. Messages of
``InvalidInputError`` and ``NotFoundError`` are shown to the caller; the others are not.
"""

from __future__ import annotations


class IreError(Exception):
    """Base of every error raised by the supervisor."""


class ConfigError(IreError):
    """A setting, a home directory or a command-line argument is invalid."""


class InvalidInputError(IreError):
    """The request is malformed: shape, dtype, size or encoding."""


class AuthenticationError(IreError):
    """The caller could not be identified. The message is logged, never returned."""


class TokenMissingError(AuthenticationError):
    """No bearer token was presented."""


class TokenExpiredError(AuthenticationError):
    """The token's ``exp`` is in the past (beyond the allowed skew)."""


class TokenInvalidError(AuthenticationError):
    """The token is malformed, oversized, badly signed or has wrong claims."""


class TokenRevokedError(AuthenticationError):
    """The token's ``jti`` is on the registry's revocation list."""


class TenantSuspendedError(AuthenticationError):
    """The token's tenant is suspended: none of its tokens is honoured."""


class PermissionDeniedError(IreError):
    """The caller is identified but may not do this."""


class NotFoundError(IreError):
    """The named object does not exist in the caller's namespace."""


class ModelNotFoundError(NotFoundError):
    """No such model for this tenant. Another tenant's model raises this too."""


class TenantNotFoundError(NotFoundError):
    """No such tenant."""


class AlreadyExistsError(IreError):
    """The object to create exists already."""


class UnavailableError(IreError):
    """A dependency of the call is unavailable; the call may be retried."""


class ShuttingDownError(UnavailableError):
    """The server is draining for shutdown: the call was refused before it started."""


class WorkerCrashedError(UnavailableError):
    """The tenant's worker died while the call was in flight."""


class WorkerStartError(UnavailableError):
    """A worker could not be started."""


class WorkerProtocolError(IreError):
    """The worker sent a frame that breaks the protocol. The worker is treated as hostile."""


class AuditWriteError(UnavailableError):
    """The audit log could not be written, so the call is refused."""


class ModelIntegrityError(IreError):
    """Stored model bytes no longer match the digest recorded at registration."""


class ModelFormatError(InvalidInputError):
    """Model bytes are not a well-formed ONNX model IRE can serve."""


class ModelLoadError(IreError):
    """A verified model failed to load in the worker."""


class WorkerOutOfMemoryError(IreError):
    """The worker was killed for exceeding its memory limit while serving the call."""


class PolicyDeniedError(PermissionDeniedError):
    """The policy decided no. Its reasons are written by admins and may be shown."""

    def __init__(self, message: str, reasons: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.reasons = reasons


class PolicyUnavailableError(PermissionDeniedError):
    """The policy engine failed, timed out or gave no decision: the call is refused."""


class QuotaExceededError(IreError):
    """A tenant limit refused the call. ``limit`` names it; ``retry_after`` is in seconds."""

    def __init__(self, message: str, limit: str, retry_after: float) -> None:
        super().__init__(message)
        self.limit = limit
        self.retry_after = retry_after


class QuotaStoreUnavailableError(UnavailableError):
    """The quota store (e.g. Redis) cannot be reached and the configured behaviour is to refuse."""


class SignatureError(InvalidInputError):
    """A model's signature is missing, malformed or does not verify."""


class ModelUnsignedError(SignatureError):
    """The model has no signature and the home does not allow unsigned models."""


class SignatureMismatchError(SignatureError):
    """The signature does not cover exactly these files and bytes."""


class SignerUntrustedError(SignatureError):
    """The signing key is unknown, or not trusted for this tenant."""
