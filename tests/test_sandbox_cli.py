"""`ire sandbox run` and `ire sandbox check` as an admin uses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.home import Home
from supervisor.settings import SandboxSettings
from tests.conftest import ire

UID_BASE = SandboxSettings().uid_base


@pytest.mark.root
@pytest.mark.parametrize(
    ("script", "code"),
    [
        pytest.param("exit 0", 0, id="success"),
        pytest.param("exit 7", 7, id="exit_status"),
        pytest.param("kill -TERM $$", 128 + 15, id="killed_by_sigterm"),
        pytest.param("kill -KILL $$", 128 + 9, id="killed_by_sigkill"),
    ],
)
def test_sandbox_run_exit_code_mirrors_the_command(script: str, code: int) -> None:
    assert ire("sandbox", "run", "--", "/bin/sh", "-c", script, check=False).returncode == code


@pytest.mark.root
def test_sandbox_run_as_tenant_uses_the_tenants_uid(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "home")
    registry = home.registry()
    tenant = registry.create_tenant("acme", "free")
    registry.close()
    proc = ire("sandbox", "run", "--tenant", "acme", "--", "/usr/bin/id", "-u", home=home.root)
    assert proc.stdout.strip() == str(UID_BASE + tenant.number)


@pytest.mark.root
def test_sandbox_run_reports_an_oom_kill() -> None:
    proc = ire(
        "sandbox", "run", "--memory", "32M", "--", "/usr/bin/python3", "-c", "b = bytearray(256 << 20)", check=False
    )
    assert proc.returncode == 128 + 9
    assert "exceeded its memory limit" in proc.stderr


@pytest.mark.root
def test_sandbox_run_missing_command_is_an_error() -> None:
    proc = ire("sandbox", "run", "--", check=False)
    assert proc.returncode == 1 and "no command given" in proc.stderr


@pytest.mark.root
def test_sandbox_check_reports_every_layer() -> None:
    proc = ire("sandbox", "check", check=False)
    for word in ("cgroups: v", "namespaces:", "seccomp:", "landlock:", "without root:"):
        assert word in proc.stdout
    assert proc.returncode == (0 if "workers can be confined here" in proc.stdout else 1)
