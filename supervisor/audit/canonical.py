"""RFC 8785 (JCS) canonical JSON: the bytes every audit hash is taken over.

The reference is the maintained ``rfc8785`` package (Trail of Bits, also used by
sigstore-python), so we do not write our own canonicalizer. It is pure Python and costs
about 30 µs per record, more than the whole hot-path budget. For the values audit records
actually hold (strings, booleans, null, integers within ±(2^53-1), floats that are
integral within that range or non-integral in [1e-4, 1e16), arrays, and objects with ASCII
keys), ``orjson`` with sorted keys yields exactly the RFC 8785 bytes in about 1 µs once
integral floats are written as integers (RFC 8785 prints 9.0 as ``9``; orjson as ``9.0``).
Anything else (1e-7, a non-ASCII key, a lone surrogate…) goes to ``rfc8785``. A property
test (tests/test_audit_properties.py) checks both paths agree.
"""

from __future__ import annotations

from typing import Any

import orjson
import rfc8785

__all__ = ["CanonicalizationError", "canonical_json"]

CanonicalizationError = rfc8785.CanonicalizationError

# I-JSON / RFC 8785: numbers are IEEE doubles, so integers beyond 2^53 - 1 lose precision.
_MAX_SAFE_INT = 2**53 - 1
_SORTED = orjson.OPT_SORT_KEYS

# Keys already seen to be plain ASCII strings (records reuse a few dozen); bounded.
_ASCII_KEYS: set[str] = set()
_ASCII_KEYS_MAX = 4096


def _fast_form(value: Any) -> Any:
    """``value`` (or a copy with integral floats as ints) when orjson writes its RFC 8785
    bytes; ``_SLOW`` when it may not."""
    kind = type(value)
    if kind is dict:
        return _object_form(value)
    if kind is str or value is None or kind is bool:
        return value
    if kind is int:
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else _SLOW
    if kind is float:
        return _float_form(value)
    if kind is list or kind is tuple:
        out: list[Any] | None = None
        for i, item in enumerate(value):
            form = _fast_form(item)
            if form is _SLOW:
                return _SLOW
            if form is not item:
                if out is None:
                    out = list(value)
                out[i] = form
        return value if out is None else out
    if isinstance(value, str):  # a StrEnum such as Outcome: orjson writes its value
        return value
    if isinstance(value, int):
        return value if -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT else _SLOW
    return _SLOW


def _float_form(value: float) -> Any:
    # orjson and ECMAScript both print the shortest round-trip digits; they differ in
    # exponent form (outside [1e-4, 1e16) here) and in "9.0" versus "9".
    if value.is_integer():
        return int(value) if abs(value) <= _MAX_SAFE_INT else _SLOW  # -0.0 becomes 0, as RFC 8785 writes it
    return value if 1e-4 <= abs(value) < 1e16 else _SLOW


def _object_form(obj: dict[Any, Any]) -> Any:
    # The hot path: a flat record of strings and numbers, checked without a call per member.
    out: dict[Any, Any] | None = None
    for key, v in obj.items():
        # ASCII keys sort the same by code point (orjson) and by UTF-16 unit (RFC 8785).
        if key not in _ASCII_KEYS:
            if type(key) is not str or not key.isascii():
                return _SLOW
            if len(_ASCII_KEYS) < _ASCII_KEYS_MAX:
                _ASCII_KEYS.add(key)
        kind = type(v)
        if kind is str or v is None or kind is bool:
            continue
        if kind is int:
            if -_MAX_SAFE_INT <= v <= _MAX_SAFE_INT:
                continue
            return _SLOW
        form = _float_form(v) if kind is float else _fast_form(v)
        if form is _SLOW:
            return _SLOW
        if form is not v:
            if out is None:
                out = dict(obj)
            out[key] = form
    return obj if out is None else out


_SLOW: Any = object()


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 encoding of ``value``; CanonicalizationError when it has none."""
    form = _fast_form(value)
    if form is not _SLOW:
        try:
            return orjson.dumps(form, option=_SORTED)
        except orjson.JSONEncodeError:
            pass  # e.g. a lone surrogate: rfc8785 raises its own error for it below
    return rfc8785.dumps(value)
