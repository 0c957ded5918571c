"""The MLServer 1.7.1 peer's own virtual environment, created on first use.

MLServer cannot share a process (or its pinned dependencies) with IRE, so the peer runs
from ``bench/.venv-mlserver`` (git-ignored). ``uvloop<0.22`` is pinned: MLServer's default
``parallel_workers`` breaks with uvloop 0.22 and later (see shared/design.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

VENV = Path(__file__).resolve().parent / ".venv-mlserver"
REQUIREMENTS = ("mlserver==1.7.1", "uvloop<0.22", "onnxruntime", "numpy")
# An interpreter of an equivalent environment made elsewhere, to skip the install.
OVERRIDE_ENV = "IRE_BENCH_MLSERVER_PYTHON"


def python() -> Path:
    """The peer's interpreter, creating the environment when it is missing."""
    override = os.environ.get(OVERRIDE_ENV)
    if override:
        return Path(override)
    interpreter = VENV / "bin" / "python"
    marker = VENV / ".ire-ready"
    if not marker.exists():
        print(f"creating the MLServer peer's environment in {VENV} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        subprocess.run([str(interpreter), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True)
        marker.write_text(" ".join(REQUIREMENTS) + "\n")
    return interpreter
