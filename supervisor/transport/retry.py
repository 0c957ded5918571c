"""Rich error details for quota refusals: which limit, and when to retry.

A RESOURCE_EXHAUSTED answer for a quota carries a ``google.rpc.Status`` in
``grpc-status-details-bin`` holding an ``ErrorInfo`` (reason QUOTA_EXCEEDED, the limit's
name) and, when waiting helps, a ``RetryInfo``; plus a ``retry-after`` trailer in whole
seconds for clients that read only plain metadata.
"""

from __future__ import annotations

import math
from datetime import timedelta

from google.rpc import code_pb2, error_details_pb2, status_pb2

from supervisor.errors import QuotaExceededError

DOMAIN = "ire"


def quota_trailers(exc: QuotaExceededError, message: str) -> tuple[tuple[str, str | bytes], ...]:
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
    status.details.add().Pack(
        error_details_pb2.ErrorInfo(reason="QUOTA_EXCEEDED", domain=DOMAIN, metadata={"limit": exc.limit})
    )
    trailers: list[tuple[str, str | bytes]] = [("ire-quota-limit", exc.limit)]
    if exc.retry_after > 0:
        info = error_details_pb2.RetryInfo()
        info.retry_delay.FromTimedelta(timedelta(seconds=exc.retry_after))
        status.details.add().Pack(info)
        trailers.append(("retry-after", str(max(1, math.ceil(exc.retry_after)))))
    trailers.append(("grpc-status-details-bin", status.SerializeToString()))
    return tuple(trailers)
