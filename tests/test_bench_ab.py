"""bench.ab compares servers by the ratio of their throughputs round by round; a wrong
pairing or a spec read wrongly would credit a change with another round's drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.ab import paired, parse_spec

REPO = Path(__file__).resolve().parent.parent


def test_ratios_pair_each_round_with_the_baselines_same_round() -> None:
    # The machine slowed down in round 2: both servers fell. "other" led in rounds 1 and 2
    # and trailed in round 3. Round by round its median ratio is 1.05; the ratio of the two
    # medians of raw req/s (800 / 900) would say it is 11% behind.
    summary = paired({"base": [1000.0, 500.0, 900.0], "other": [1050.0, 550.0, 800.0]})
    assert summary["other"]["median_ratio"] == pytest.approx(1.05)
    assert summary["other"]["rounds_led"] == 2
    assert summary["base"]["median_ratio"] == pytest.approx(1.0)
    assert summary["base"]["rounds_led"] == 0


def test_a_change_that_loses_in_most_rounds_is_reported_behind() -> None:
    summary = paired({"base": [1000.0, 1000.0, 1000.0, 1000.0], "other": [900.0, 1200.0, 950.0, 980.0]})
    assert summary["other"]["median_ratio"] == pytest.approx(0.965)
    assert summary["other"]["rounds_led"] == 1


def test_spec_reads_the_tree_and_its_settings() -> None:
    spec = parse_spec(f"off={REPO}@IRE_WORKERS__DYNAMIC_BATCHING=off;IRE_X=a=b")
    assert spec.label == "off" and spec.tree == REPO
    assert spec.env == {"IRE_WORKERS__DYNAMIC_BATCHING": "off", "IRE_X": "a=b"}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("noequals", "expected label=tree"),
        ("=tree", "expected label=tree"),
        ("label=", "expected label=tree"),
        (f"x={REPO}@NOVALUE", "is not NAME=value"),
        ("x=/nonexistent/tree", "is not an IRE source tree"),
    ],
)
def test_a_malformed_spec_is_refused_with_its_text(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as raised:
        parse_spec(text)
    assert repr(text) in str(raised.value)
