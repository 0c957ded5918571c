"""The directories an already-running worker may read: its Python and its libraries."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import protos
import sandbox

_LIBRARY = re.compile(r"\.so(\.[0-9.]+)?$")


def _mapped_files() -> set[str]:
    found = set()
    for line in Path("/proc/self/maps").read_text().splitlines():
        parts = line.split(maxsplit=5)
        # Shared libraries only: other mapped files (a telemetry database, say) are data.
        if len(parts) == 6 and parts[5].startswith("/") and _LIBRARY.search(parts[5]):
            found.add(parts[5])
    return found


def _minimal(paths: set[str]) -> tuple[str, ...]:
    """Drop every path that lies beneath another one in the set."""
    kept: list[str] = []
    for path in sorted(paths):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


def runtime_paths() -> tuple[str, ...]:
    """Python's prefixes, its import path (not the working directory), IRE's packages and
    the directories of every mapped shared library. ``/`` is never included."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    cwd = os.getcwd()
    paths |= {entry for entry in sys.path if entry and entry != cwd and os.path.isdir(entry)}
    paths |= {str(Path(pkg.__file__ or "").resolve().parent) for pkg in (sandbox, protos)}
    paths |= {os.path.dirname(f) for f in _mapped_files()}
    resolved = {os.path.realpath(p) for p in paths} | paths
    return _minimal({p for p in resolved if p not in ("", "/") and os.path.isabs(p)})
