"""Token-bucket arithmetic, pure: the memory store uses it and the Redis script mirrors it."""

from __future__ import annotations

from typing import NamedTuple


class Bucket(NamedTuple):
    # A NamedTuple: two are made per admission, and a frozen dataclass costs more to build.
    tokens: float
    updated: float


def refill(bucket: Bucket | None, rate: float, burst: int, now: float) -> Bucket:
    """The bucket at ``now``: full when new, refilled at ``rate`` per second up to ``burst``."""
    if bucket is None:
        return Bucket(float(burst), now)
    elapsed = max(0.0, now - bucket.updated)  # a clock stepping back never adds tokens
    return Bucket(min(float(burst), bucket.tokens + elapsed * rate), max(now, bucket.updated))


def wait_for_token(bucket: Bucket, rate: float) -> float:
    """Seconds until the bucket holds one token (0 when it already does)."""
    return 0.0 if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / rate
