"""Run a policy set's own tests (``test_*`` rules), like ``opa test``, with coverage.

The same runner gates every reload: a set whose tests fail never replaces the set in
force. No I/O; regorus does the work in the calling thread.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from supervisor.policy import _ast
from supervisor.policy._regorus import Interpreter, error_text
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import PolicySet

__all__ = ["Coverage", "FileCoverage", "TestOutcome", "TestReport", "run_tests"]

TEST_PREFIX = "test_"


@dataclass(frozen=True)
class TestOutcome:
    name: str  # data.ire.authz_test.test_x
    passed: bool
    detail: str  # why it failed: "undefined", "false", or the evaluation error
    seconds: float


@dataclass(frozen=True)
class FileCoverage:
    path: str
    lines_covered: int
    lines_total: int
    rules_covered: int
    rules_total: int
    uncovered_rules: tuple[str, ...]  # "name (line N)"


def _percent(part: int, whole: int) -> float:
    return 100.0 if whole == 0 else round(100.0 * part / whole, 1)


@dataclass(frozen=True)
class Coverage:
    """Coverage of the deciding files (tests excluded) by the tests.

    ``overstated_by`` lists test files that import a ``data.`` package: regorus 0.13
    evaluates every rule of a package reached through an import alias, so such tests
    cover rules they never exercise. Refer to ``data.ire.authz.decision`` in full instead.
    """

    files: tuple[FileCoverage, ...]
    overstated_by: tuple[str, ...] = ()

    @property
    def line_percent(self) -> float:
        return _percent(sum(f.lines_covered for f in self.files), sum(f.lines_total for f in self.files))

    @property
    def rule_percent(self) -> float:
        return _percent(sum(f.rules_covered for f in self.files), sum(f.rules_total for f in self.files))


@dataclass(frozen=True)
class TestReport:
    revision: str
    outcomes: tuple[TestOutcome, ...]
    coverage: Coverage | None

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def failures(self) -> tuple[TestOutcome, ...]:
        return tuple(o for o in self.outcomes if not o.passed)


def _run_one(interpreter: Interpreter, name: str) -> TestOutcome:
    started = time.perf_counter()
    try:
        value = interpreter.eval_rule(name)
    except Exception as exc:  # noqa: BLE001 - an evaluation error fails the test, with its message
        return TestOutcome(name, False, error_text(exc), time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    if value is True:
        return TestOutcome(name, True, "", elapsed)
    return TestOutcome(name, False, "undefined" if value is None else f"got {value!r}, expected true", elapsed)


def _coverage(interpreter: Interpreter, policy_set: PolicySet, modules: list[dict[str, Any]]) -> Coverage:
    report = {f["path"]: f for f in interpreter.coverage().get("files", [])}
    deciding = {f.path for f in policy_set.modules}
    files = []
    for module in modules:
        path = str(module["source"]["file"])
        if path not in deciding:
            continue
        entry = report.get(path, {})
        covered = set(entry.get("covered", []))
        total = covered | set(entry.get("not_covered", []))
        rules = _ast.module_rules(module)
        hit = [r for r in rules if any(r.first_line <= line <= r.last_line for line in covered)]
        missed = tuple(f"{r.name} (line {r.first_line})" for r in rules if r not in hit)
        files.append(FileCoverage(path, len(covered), len(total), len(hit), len(rules), missed))
    aliases = tuple(
        sorted(
            str(module["source"]["file"])
            for module in modules
            if str(module["source"]["file"]) not in deciding
            and any(_ast.import_root(i) == "data" for i in module["ast"].get("imports", []))
        )
    )
    return Coverage(tuple(sorted(files, key=lambda f: f.path)), aliases)


def run_tests(policy_set: PolicySet, *, coverage: bool = False) -> TestReport:
    """Evaluate every ``test_*`` rule of the set; raise PolicySetError if it does not parse."""
    try:
        interpreter = Interpreter(policy_set.files, coverage=coverage)
    except SyntaxError as exc:
        raise PolicySetError(str(exc)) from exc
    modules = interpreter.ast()
    names: list[str] = []
    for module in modules:
        package = _ast.package_path(module)
        for rule in _ast.module_rules(module):
            name = f"{package}.{rule.name}"
            if rule.name.startswith(TEST_PREFIX) and not rule.is_function and rule.kind == "Spec" and name not in names:
                names.append(name)
    outcomes = tuple(_run_one(interpreter, name) for name in names)
    return TestReport(
        revision=policy_set.revision,
        outcomes=outcomes,
        coverage=_coverage(interpreter, policy_set, modules) if coverage else None,
    )
