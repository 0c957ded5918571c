"""Configuration is validated at start: unknown keys and wrong types are errors."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from supervisor.errors import ConfigError
from supervisor.settings import Settings, load_settings, parse_settings, render_settings


def test_rendered_defaults_parse_back() -> None:
    assert parse_settings(tomllib.loads(render_settings(Settings()))) == Settings()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"sever": {}}, "unknown section [sever]", id="typo_section"),
        pytest.param({"server": {"max_request_byte": 1}}, "unknown key server.max_request_byte", id="typo_key"),
        pytest.param({"server": {"max_request_bytes": "big"}}, "got str 'big', expected int", id="wrong_type"),
        pytest.param({"server": {"max_request_bytes": True}}, "got bool True, expected int", id="bool_for_int"),
        pytest.param({"workers": {"max_workers": 0}}, "expected a positive number", id="zero_bound"),
        pytest.param({"auth": {"issuer": ""}}, "empty string", id="empty_issuer"),
        pytest.param({"server": 3}, "must be a table", id="not_a_table"),
        pytest.param({"workers": {"dynamic_batching": "sometimes"}}, "expected one of", id="unknown_batching_mode"),
        pytest.param({"workers": {"batch_wait_ms": -1}}, "expected 0 or more", id="negative_batch_wait"),
        pytest.param({"workers": {"batch_wait_ms": 250}}, "expected 0 to 100", id="unbounded_batch_wait"),
        pytest.param({"workers": {"batch_target_rows": 0}}, "expected a positive number", id="zero_batch_target"),
    ],
)
def test_invalid_config_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(raw)


def test_override_keeps_other_defaults() -> None:
    settings = parse_settings({"server": {"grace_seconds": 2}})
    assert settings.server.grace_seconds == 2.0
    assert settings.server.max_request_bytes == Settings().server.max_request_bytes


def test_batching_written_as_a_boolean_before_auto_existed_keeps_its_meaning(tmp_path: Path) -> None:
    assert Settings().workers.dynamic_batching == "auto"
    assert parse_settings({"workers": {"dynamic_batching": False}}).workers.dynamic_batching == "off"
    assert parse_settings({"workers": {"dynamic_batching": True}}).workers.dynamic_batching == "on"
    path = tmp_path / "config.toml"
    path.write_text("[workers]\ndynamic_batching = false\n")
    assert load_settings(path, {"IRE_WORKERS__DYNAMIC_BATCHING": "true"}).workers.dynamic_batching == "on"
    assert load_settings(path, {}).workers.dynamic_batching == "off"


def test_the_batch_wait_can_be_turned_off_with_zero_where_other_bounds_cannot(tmp_path: Path) -> None:
    assert parse_settings({"workers": {"batch_wait_ms": 0}}).workers.batch_wait_ms == 0.0
    path = tmp_path / "config.toml"
    path.write_text("")
    assert load_settings(path, {"IRE_WORKERS__BATCH_WAIT_MS": "0"}).workers.batch_wait_ms == 0.0
    with pytest.raises(ConfigError, match="expected a positive number"):
        parse_settings({"workers": {"max_batch_rows": 0}})


def test_missing_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `ire init` first"):
        load_settings(tmp_path / "config.toml")


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nlisten = "127.0.0.1:1"\n')
    settings = load_settings(
        path,
        {
            "IRE_SERVER__LISTEN": "0.0.0.0:8001",
            "IRE_WORKERS__MAX_WORKERS": "3",
            "IRE_MODELS__UNSAFE_ALLOW_UNSIGNED": "false",
            "IRE_HOME": "/ignored",
        },
    )
    assert settings.server.listen == "0.0.0.0:8001"
    assert settings.workers.max_workers == 3


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param({"IRE_SEVER__LISTEN": "x"}, "unknown section", id="typo_section"),
        pytest.param({"IRE_SERVER__LISTN": "x"}, "unknown key server.listn", id="typo_key"),
        pytest.param({"IRE_WORKERS__MAX_WORKERS": "many"}, "expected int", id="not_a_number"),
        pytest.param({"IRE_QUOTA__UNSAFE_FAIL_OPEN": "yes please"}, "expected true or false", id="not_a_bool"),
    ],
)
def test_bad_environment_override_refused(tmp_path: Path, environ: dict[str, str], message: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text("")
    with pytest.raises(ConfigError, match=message):
        load_settings(path, environ)


def test_config_check_cli(tmp_path: Path) -> None:
    from tests.conftest import ire

    good = tmp_path / "good.toml"
    good.write_text("[server]\ngrace_seconds = 3\n")
    assert "valid" in ire("config", "check", str(good)).stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\ngrace = 3\n")
    proc = ire("config", "check", str(bad), check=False)
    assert proc.returncode == 1 and "unknown key server.grace" in proc.stderr
