"""RFC 8785 (JCS) canonical JSON: the bytes every audit hash is taken over.

The reference is the maintained ``rfc8785`` package (Trail of Bits, also used by
sigstore-python), so we do not write our own canonicalizer. It is pure Python and costs
about 30 µs per record, more than the whole hot-path budget (20 µs per call). For the
values audit records actually hold (strings, booleans, null, integers within ±(2^53-1),
non-integral floats in [1e-4, 1e16), arrays, and objects with ASCII keys) ``json.dumps``
with sorted keys, no whitespace and raw UTF-8 yields exactly the RFC 8785 bytes in about
7 µs; anything else (an integral float, 1e-7, a non-ASCII key…) goes to ``rfc8785``. A
property test (tests/test_audit_properties.py) checks both paths agree.
"""

from __future__ import annotations

import json
import json.encoder
from collections.abc import Callable
from typing import Any

import rfc8785

__all__ = ["CanonicalizationError", "canonical_json"]

CanonicalizationError = rfc8785.CanonicalizationError

# I-JSON / RFC 8785: numbers are IEEE doubles, so integers beyond 2^53 - 1 lose precision.
_MAX_SAFE_INT = 2**53 - 1


def _fast_path_exact(value: Any) -> bool:
    """True when ``json.dumps`` produces the RFC 8785 encoding of ``value`` byte for byte."""
    if type(value) is dict:
        return _object_exact(value)
    if isinstance(value, str) or value is None:
        return True
    kind = type(value)
    if kind is float:
        # Python and ECMAScript both print the shortest round-trip digits; they differ only
        # in exponent form (outside [1e-4, 1e16) here) and in "1.0" versus "1".
        magnitude = abs(value)
        return 1e-4 <= magnitude < 1e16 and not value.is_integer()
    if isinstance(value, int):
        return -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT
    if kind is list:
        return all(_fast_path_exact(v) for v in value)
    return False


# Keys already seen to be plain ASCII strings (records reuse a few dozen); bounded.
_ASCII_KEYS: set[str] = set()
_ASCII_KEYS_MAX = 4096


def _object_exact(obj: dict[Any, Any]) -> bool:
    # The hot path: a flat record of strings and numbers, checked without a call per member.
    for key, v in obj.items():
        # ASCII keys sort the same by code point (Python) and by UTF-16 unit (RFC 8785).
        if key not in _ASCII_KEYS:
            if type(key) is not str or not key.isascii():
                return False
            if len(_ASCII_KEYS) < _ASCII_KEYS_MAX:
                _ASCII_KEYS.add(key)
        kind = type(v)
        if kind is str or v is None or kind is bool:
            continue
        if kind is int:
            if -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                continue
            return False
        if kind is float:
            if 1e-4 <= abs(v) < 1e16 and not v.is_integer():
                continue
            return False
        if not _fast_path_exact(v):
            return False
    return True


def _make_encoder() -> Callable[[Any], str]:
    """A reusable JSON encoder: sorted keys, no whitespace, raw UTF-8, no NaN.

    ``json.dumps`` builds a new encoder per call, a third of its cost on small records;
    CPython's C encoder factory can be built once. Where it is missing, ``dumps`` it is.
    """
    encoder = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    factory = getattr(json.encoder, "c_make_encoder", None)
    if factory is None:
        return encoder.encode
    chunks = factory(
        None,  # no cycle markers: records are trees, and the fast-path check recurses first
        encoder.default,
        json.encoder.encode_basestring,
        None,
        encoder.key_separator,
        encoder.item_separator,
        True,
        False,
        False,
    )
    return lambda value: "".join(chunks(value, 0))


_encode = _make_encoder()


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value``; CanonicalizationError when it has none."""
    if _fast_path_exact(value):
        try:
            return _encode(value).encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate is not Unicode text
            raise CanonicalizationError(f"input contains non-UTF-8 codepoints: {exc}") from exc
    return rfc8785.dumps(value)
