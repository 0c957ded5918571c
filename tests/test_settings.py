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
    ],
)
def test_invalid_config_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_settings(raw)


def test_override_keeps_other_defaults() -> None:
    settings = parse_settings({"server": {"grace_seconds": 2}})
    assert settings.server.grace_seconds == 2.0
    assert settings.server.max_request_bytes == Settings().server.max_request_bytes


def test_missing_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="run `ire init` first"):
        load_settings(tmp_path / "config.toml")
