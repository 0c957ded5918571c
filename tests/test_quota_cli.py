"""`ire quota set` and `ire quota show`, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ire


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    ire("init", home=root)
    ire("tenant", "create", "acme", "--tier", "free", home=root)
    return root


def test_quota_set_overrides_tier_and_show_reports_it(home: Path) -> None:
    ire("quota", "set", "acme", "--rate", "5/s", "--daily", "100", "--memory", "256M", "--gpu", "1g.18gb", home=home)
    ire("quota", "set", "acme", "--burst", "7", home=home)  # overrides accumulate
    shown = json.loads(ire("quota", "show", "acme", home=home).stdout)
    assert shown["overrides"] == {
        "burst": 7,
        "daily": 100,
        "gpu": "1g.18gb",
        "memory_bytes": 256 * 1024**2,
        "rate": 5.0,
    }
    assert shown["limits"]["concurrency"] == 4  # the free tier's default
    assert shown["usage"]["daily_used"] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--daily", "-3"], "expected a positive int", id="negative"),
        pytest.param(["--memory", "lots"], "size 'lots' is invalid", id="bad_size"),
        pytest.param(["--cpu", "abc"], "could not convert", id="bad_float"),
        pytest.param(["--gpu", "everything"], "MIG profile", id="bad_gpu"),
    ],
)
def test_bad_quota_value_refused_and_nothing_stored(home: Path, args: list[str], message: str) -> None:
    proc = ire("quota", "set", "acme", *args, home=home, check=False)
    assert proc.returncode == 1 and message in proc.stderr
    assert json.loads(ire("quota", "show", "acme", home=home).stdout)["overrides"] == {}


def test_quota_for_unknown_tenant_refused(home: Path) -> None:
    proc = ire("quota", "set", "ghost", "--daily", "1", home=home, check=False)
    assert proc.returncode == 1 and "tenant 'ghost' does not exist" in proc.stderr
