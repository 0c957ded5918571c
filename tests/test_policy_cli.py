"""`ire policy test | eval | reload` as a real subprocess; the first is the CI gate on the shipped set."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import ire

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
ALLOW_ALL = 'package ire.authz\n\ndecision := {"allow": true, "reasons": []}\n'
PREDICT = {
    "version": 1,
    "action": "predict",
    "principal": {"sub": "acme-app", "scopes": ["predict"], "tenant": "acme"},
    "tenant": {"id": "acme", "tier": "free", "labels": {}},
    "model": {"name": "mlp", "version": "1", "owner": "acme", "sha256": "ab", "signer": "", "labels": {}},
    "request": {"bytes": 300, "batch": 64, "peer": "127.0.0.1"},
    "usage": {},
    "resource": {},
    "time": {"ns": 1764000000000000000},
}


def _set(tmp_path: Path, files: dict[str, str]) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    for name, text in files.items():
        (directory / name).write_text(text)
    return directory


def test_shipped_policies_pass_their_tests_with_90_percent_rule_coverage() -> None:
    proc = ire("policy", "test", "--dir", str(SHIPPED), "--coverage", "--threshold", "90")
    assert re.search(r"^PASS: (\d+)/\1 ", proc.stdout, re.MULTILINE), proc.stdout
    total = re.search(r"total\s+lines\s+([\d.]+)%\s+rules\s+([\d.]+)%", proc.stdout)
    assert total and float(total.group(2)) >= 90.0, proc.stdout


def test_failing_rego_test_fails_the_command(tmp_path: Path) -> None:
    failing = "package ire.authz_test\n\nimport data.ire.authz\n\ntest_denies if not authz.decision.allow\n"
    proc = ire(
        "policy", "test", "--dir", str(_set(tmp_path, {"a.rego": ALLOW_ALL, "a_test.rego": failing})), check=False
    )
    assert proc.returncode == 1
    assert "data.ire.authz_test.test_denies: FAIL (undefined)" in proc.stdout
    assert "FAIL: 0/1" in proc.stdout


def test_coverage_below_threshold_fails_the_command(tmp_path: Path) -> None:
    policy = ALLOW_ALL + "\nnever_used if input.x == 1\n"
    test = "package t\n\ntest_allows if data.ire.authz.decision.allow\n"
    proc = ire(
        "policy", "test", "--dir", str(_set(tmp_path, {"a.rego": policy, "a_test.rego": test})),
        "--threshold", "90", check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "not covered: never_used (line 5)" in proc.stdout
    assert "below the threshold" in proc.stdout


def test_coverage_warns_when_an_import_alias_overstates_it(tmp_path: Path) -> None:
    test = "package t\n\nimport data.ire.authz\n\ntest_allows if authz.decision.allow\n"
    proc = ire("policy", "test", "--dir", str(_set(tmp_path, {"a.rego": ALLOW_ALL, "a_test.rego": test})), "--coverage")
    assert "note: a_test.rego imports a data package" in proc.stdout


def test_eval_shows_the_decision_for_an_input(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(PREDICT))
    result = json.loads(ire("policy", "eval", "--dir", str(SHIPPED), "--input", str(path)).stdout)
    assert result["query"] == "data.ire.authz.decision"
    assert result["result"] == {"allow": False, "reasons": ['tier "free" allows a batch of at most 32, got 64']}
    assert result["server"] == "deny" and len(result["revision"]) == 64


def test_eval_of_an_undefined_decision_says_the_server_refuses(tmp_path: Path) -> None:
    path = tmp_path / "input.json"
    path.write_text("{}")
    policy = 'package ire.authz\n\ndecision := {"allow": true, "reasons": []} if input.ok\n'
    result = json.loads(
        ire("policy", "eval", "--dir", str(_set(tmp_path, {"a.rego": policy})), "--input", str(path)).stdout
    )
    assert result["result"] is None
    assert result["server"].startswith("refuse: policy unavailable")


def test_reload_without_server_validates_the_homes_set(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ire("init", home=home)
    proc = ire("policy", "reload", home=home)
    assert "is valid" in proc.stdout and "tests pass; compiled" in proc.stdout
    (home / "policies" / "ire" / "authz.rego").write_text("package ire.authz\n\ndecision := {\n")
    broken = ire("policy", "reload", home=home, check=False)
    assert broken.returncode == 1 and "ire/authz.rego" in broken.stderr


def test_reload_with_server_needs_a_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ire("init", home=home)
    proc = ire("policy", "reload", "--server", "127.0.0.1:1", home=home, check=False)
    assert proc.returncode == 1 and "needs an admin token" in proc.stderr


def test_server_with_an_unusable_set_refuses_to_start(tmp_path: Path) -> None:
    home = tmp_path / "home"
    ire("init", home=home)
    (home / "policies" / "ire" / "open.rego").write_text("package ire.authz\n\nallow if true\n")  # tests fail
    proc = ire("serve", "--listen", "127.0.0.1:0", home=home, check=False, timeout=60)
    assert proc.returncode == 1
    assert "unusable, refusing to start" in proc.stderr and "tests fail" in proc.stderr
