"""Where every benchmark keeps its figures: ``bench/results/<kind>-<UTC stamp>.json``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def utc_stamp() -> str:
    """The time now, as results files name it: 20261129T123619Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


def results_path(kind: str, stamp: str, suffix: str = ".json") -> Path:
    """The path of a results file of ``kind`` (the directory is created)."""
    RESULTS_DIR.mkdir(exist_ok=True)
    return RESULTS_DIR / f"{kind}-{stamp}{suffix}"


def save_results(kind: str, document: Mapping[str, Any], stamp: str | None = None) -> Path:
    """Write ``document`` as indented JSON to its results file; the file's path."""
    path = results_path(kind, stamp or utc_stamp())
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path
