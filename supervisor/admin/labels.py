"""Tenant labels as the admin API accepts them: few, plain keys and values."""

from __future__ import annotations

import re
from collections.abc import Mapping

from supervisor.errors import InvalidInputError

__all__ = ["MAX_LABELS", "check_labels"]

# Labels reach every policy decision on the tenant's calls: keep them few and plain.
MAX_LABELS = 32
_LABEL_KEY = re.compile(r"[a-z0-9][a-z0-9._/-]{0,62}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._:/@ -]{0,128}")


def check_labels(labels: Mapping[str, str]) -> dict[str, str]:
    if len(labels) > MAX_LABELS:
        raise InvalidInputError(f"got {len(labels)} labels, expected at most {MAX_LABELS}")
    for key, value in labels.items():
        if not _LABEL_KEY.fullmatch(key):
            raise InvalidInputError(f"label key {key!r} is invalid; expected {_LABEL_KEY.pattern}")
        if not _LABEL_VALUE.fullmatch(value):
            raise InvalidInputError(f"label {key!r} has value {value!r}; expected {_LABEL_VALUE.pattern}")
    return dict(labels)
