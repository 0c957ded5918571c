"""The one table that maps supervisor errors to gRPC status codes and audit outcomes.

Only errors whose message is written for the caller (bad input, not found, permission)
pass their message through. Everything else gets a fixed text with the request id, and
the detail stays in the log.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from supervisor.audit import Outcome
from supervisor.errors import (
    AlreadyExistsError,
    AuthenticationError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    TokenExpiredError,
    TokenMissingError,
    UnavailableError,
    WorkerOutOfMemoryError,
)
from supervisor.gpu.errors import GpuUnusableError
from supervisor.policy.errors import PolicySetError


@dataclass(frozen=True)
class Mapping:
    code: grpc.StatusCode
    outcome: Outcome
    # None: pass the error's own message through. Otherwise this fixed text.
    public: str | None


_TABLE: list[tuple[type[BaseException], Mapping]] = [
    (InvalidInputError, Mapping(grpc.StatusCode.INVALID_ARGUMENT, Outcome.MALFORMED, None)),
    (TokenMissingError, Mapping(grpc.StatusCode.UNAUTHENTICATED, Outcome.DENIED, "missing bearer token")),
    (TokenExpiredError, Mapping(grpc.StatusCode.UNAUTHENTICATED, Outcome.DENIED, "token expired")),
    (AuthenticationError, Mapping(grpc.StatusCode.UNAUTHENTICATED, Outcome.DENIED, "invalid token")),
    (PermissionDeniedError, Mapping(grpc.StatusCode.PERMISSION_DENIED, Outcome.DENIED, None)),
    (NotFoundError, Mapping(grpc.StatusCode.NOT_FOUND, Outcome.DENIED, None)),
    (AlreadyExistsError, Mapping(grpc.StatusCode.ALREADY_EXISTS, Outcome.MALFORMED, None)),
    # A policy reload refused: the admin who asked sees why (file, rule, failing test).
    (PolicySetError, Mapping(grpc.StatusCode.FAILED_PRECONDITION, Outcome.FAILED, None)),
    (QuotaExceededError, Mapping(grpc.StatusCode.RESOURCE_EXHAUSTED, Outcome.DENIED, None)),
    (
        WorkerOutOfMemoryError,
        Mapping(grpc.StatusCode.RESOURCE_EXHAUSTED, Outcome.FAILED, "worker exceeded its memory limit"),
    ),
    (
        GpuUnusableError,
        Mapping(
            grpc.StatusCode.FAILED_PRECONDITION,
            Outcome.FAILED,
            "the model needs a GPU and this node cannot give it one",
        ),
    ),
    (UnavailableError, Mapping(grpc.StatusCode.UNAVAILABLE, Outcome.FAILED, "service unavailable, retry later")),
]
_INTERNAL = Mapping(grpc.StatusCode.INTERNAL, Outcome.FAILED, "internal error")


def mapping_for(exc: BaseException) -> Mapping:
    for cls, mapping in _TABLE:
        if isinstance(exc, cls):
            return mapping
    return _INTERNAL


def public_message(exc: BaseException, mapping: Mapping, request_id: str) -> str:
    text = str(exc) if mapping.public is None else mapping.public
    return f"{text} (request id {request_id})"
