"""Confinement profiles: tier defaults, quota overrides, and sizes on the command line."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sandbox.errors import SandboxError
from sandbox.profile import TIER_DEFAULTS, GiB, MiB, parse_size, profile_for
from supervisor.registry.records import TIERS


def test_every_tier_has_a_profile() -> None:
    assert set(TIER_DEFAULTS) == set(TIERS)
    assert TIER_DEFAULTS["free"].memory_bytes < TIER_DEFAULTS["standard"].memory_bytes


def test_overrides_replace_only_named_fields() -> None:
    profile = profile_for("free", {"memory_bytes": 64 * MiB, "cpu": 0.25})
    assert (profile.memory_bytes, profile.cpu) == (64 * MiB, 0.25)
    assert profile.pids == TIER_DEFAULTS["free"].pids


@pytest.mark.parametrize(
    ("tier", "overrides", "message"),
    [
        pytest.param("gold", None, "tier 'gold' has no confinement profile", id="unknown_tier"),
        pytest.param("free", {"memroy_bytes": 1}, "unknown profile fields", id="typo_in_override"),
        pytest.param("free", {"pids": 0}, "expected a positive number", id="zero_pids"),
        pytest.param("free", {"cpu": -1.0}, "expected a positive number", id="negative_cpu"),
    ],
)
def test_bad_profiles_refused(tier: str, overrides: dict[str, float] | None, message: str) -> None:
    with pytest.raises(SandboxError, match=message):
        profile_for(tier, overrides)


@pytest.mark.parametrize(
    ("text", "size"),
    [("256M", 256 * MiB), ("1G", GiB), ("512MiB", 512 * MiB), ("4096", 4096), ("64k", 64 * 1024)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@given(st.text(max_size=12))
def test_parse_size_never_crashes(text: str) -> None:
    with contextlib.suppress(SandboxError):
        assert parse_size(text) >= 0
