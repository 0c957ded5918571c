"""The content-addressed model store inside the home.

Files are named by the sha256 of their bytes and written once, read-only. Loading reads
the bytes and checks them against the digest recorded at registration, so a file swapped
on disk after registration never reaches a worker.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from supervisor.errors import ModelIntegrityError, ModelNotFoundError

_HEX = frozenset("0123456789abcdef")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ModelStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    def _path(self, digest: str, suffix: str) -> Path:
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise ModelIntegrityError(f"got digest {digest!r}, expected 64 lowercase hex characters")
        return self._root / f"{digest}{suffix}"

    def put(self, data: bytes, suffix: str = ".onnx") -> str:
        """Store ``data`` and return its sha256; storing the same bytes twice is a no-op."""
        digest = sha256_hex(data)
        path = self._path(digest, suffix)
        if path.exists():
            return digest
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def read_verified(self, digest: str, max_bytes: int, suffix: str = ".onnx") -> bytes:
        """Return the stored bytes for ``digest``, refusing anything that does not hash to it."""
        path = self._path(digest, suffix)
        try:
            with path.open("rb") as f:
                data = f.read(max_bytes + 1)
        except FileNotFoundError as exc:
            raise ModelNotFoundError(f"model bytes {digest} are missing from the store") from exc
        if len(data) > max_bytes:
            raise ModelIntegrityError(f"stored model {digest} exceeds {max_bytes} bytes")
        actual = sha256_hex(data)
        if actual != digest:
            raise ModelIntegrityError(f"stored model has sha256 {actual}, expected {digest}")
        return data
