"""What a result was measured on, recorded beside it so results can be compared later."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("grpcio", "protobuf", "numpy", "onnxruntime", "onnxruntime-gpu")


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _git_commit(repo: Path) -> str | None:
    """HEAD's commit, read-only; None outside a checkout or without git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def describe(repo: Path) -> dict[str, object]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "packages": {p: v for p in PACKAGES if (v := _version(p)) is not None},
        "git_commit": _git_commit(repo),
    }
