"""Turn a policy set into something that can serve, or refuse it.

A set is accepted only if it parses, defines ``ire.authz``, evaluates, has tests, passes
them all, and decides every probe document within the deadline (regorus cannot be
interrupted mid-evaluation, so a set that is slow on ordinary inputs is refused up front).
It is then compiled once for regorus's RVM; the compiled program is used only if it agrees
with the interpreter (which ran the tests) on every probe, otherwise the set is served by
the interpreter. CPU only, no I/O: the caller picks the thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import structlog

from supervisor.policy._ast import input_reads
from supervisor.policy._regorus import Interpreter, Vm, compile_program, error_text
from supervisor.policy.cache import project
from supervisor.policy.engine import Query
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import PolicySet
from supervisor.policy.probes import probe_documents
from supervisor.policy.testing import TestReport, run_tests

log = structlog.get_logger(__name__)

__all__ = ["CompiledPolicy", "compile_policy"]


@dataclass(frozen=True)
class CompiledPolicy:
    """A set that passed validation. ``program`` is the RVM program, or None to interpret."""

    policy_set: PolicySet
    queries: frozenset[Query]
    program: bytes | None
    vm_note: str  # why the RVM is not used ('' when it is)
    tests: int
    # Every input path the deciding files can read, or None when that cannot be listed
    # (then decisions are never cached).
    reads: tuple[tuple[str, ...], ...] | None = None

    @property
    def revision(self) -> str:
        return self.policy_set.revision


def _no_decision(fn: Callable[[], Any]) -> Any:
    """Evaluate, treating an error like an undefined result: both refuse the call."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - any failure is "no decision" for the comparison
        return None


def _cross_check(policy_set: PolicySet, queries: frozenset[Query], program: bytes, interpreter: Interpreter) -> str:
    """'' if the program agrees with the interpreter on every probe, else the first difference."""
    vm = Vm(program)
    for query in sorted(queries, key=lambda q: q.value):
        for document in probe_documents(query):
            want = _no_decision(partial(interpreter.eval_rule, query.rule, document))
            got = _no_decision(partial(vm.eval_rule, query.rule, document))
            if got != want:
                return f"{query.rule} differs on a probe: interpreter {want!r}, compiled {got!r}"
    return ""


def _check_tests(report: TestReport) -> None:
    if not report.outcomes:
        raise PolicySetError("the set has no tests (test_* rules); an untested set is refused")
    if report.failures:
        shown = "; ".join(f"{o.name}: {o.detail}" for o in report.failures[:5])
        more = f" (and {len(report.failures) - 5} more)" if len(report.failures) > 5 else ""
        raise PolicySetError(f"{len(report.failures)} of {len(report.outcomes)} tests fail: {shown}{more}")


def _check_deadline(engine: Interpreter | Vm, queries: frozenset[Query], deadline: float) -> None:
    for query in sorted(queries, key=lambda q: q.value):
        for document in probe_documents(query):
            started = time.perf_counter()
            _no_decision(partial(engine.eval_rule, query.rule, document))
            elapsed = time.perf_counter() - started
            if elapsed > deadline:
                raise PolicySetError(
                    f"{query.rule} took {elapsed:.3f} s on a probe input (action "
                    f"{document.get('action')!r}), over the {deadline} s deadline (policy.timeout_seconds)"
                )


def _checked_reads(
    reads: tuple[tuple[str, ...], ...] | None, queries: frozenset[Query], engine: Interpreter | Vm
) -> tuple[tuple[str, ...], ...] | None:
    """``reads``, if deciding on the projected input agrees with the whole input on every probe."""
    if reads is None:
        return None
    for query in sorted(queries, key=lambda q: q.value):
        for document in probe_documents(query):
            whole = _no_decision(partial(engine.eval_rule, query.rule, document))
            projected = _no_decision(partial(engine.eval_rule, query.rule, project(document, reads)))
            if whole != projected:
                log.warning("policy input projection disagrees on a probe; not projecting", rule=query.rule)
                return None
    return reads


def compile_policy(
    policy_set: PolicySet, *, use_vm: bool = True, deadline_seconds: float = 0.5
) -> tuple[CompiledPolicy, TestReport]:
    """Validate ``policy_set``; raise :class:`PolicySetError` saying what is wrong."""
    try:
        interpreter = Interpreter(policy_set.modules)
    except SyntaxError as exc:
        raise PolicySetError(str(exc)) from exc
    packages = interpreter.packages()
    if Query.AUTHZ.package not in packages:
        raise PolicySetError(f"the set defines no package {Query.AUTHZ.value}; found {sorted(packages)}")
    queries = frozenset(q for q in Query if q.package in packages)
    for query in queries:
        # Regorus checks some errors (unknown functions, unsafe variables) only when it
        # first evaluates: evaluate once now, so they refuse the set rather than a call.
        try:
            interpreter.eval_rule(query.rule, probe_documents(query)[0])
        except Exception as exc:
            text = error_text(exc)
            if "not a valid rule path" in text:
                raise PolicySetError(f"the set defines no rule {query.rule}") from exc
            raise PolicySetError(f"{query.rule} does not evaluate: {text}") from exc
    report = run_tests(policy_set)
    _check_tests(report)
    program: bytes | None = None
    note = "disabled by policy.compiled = false"
    if use_vm:
        try:
            candidate = compile_program(policy_set.modules, [q.rule for q in queries])
            note = _cross_check(policy_set, queries, candidate, interpreter)
        except Exception as exc:  # noqa: BLE001 - the interpreter still serves the set
            note = f"the RVM cannot compile it: {error_text(exc)}"
        else:
            program = None if note else candidate
    _check_deadline(Vm(program) if program is not None else interpreter, queries, deadline_seconds)
    if note and use_vm:
        log.warning("policy set served by the interpreter", revision=policy_set.short, reason=note)
    reads = _checked_reads(input_reads(interpreter.ast()), queries, Vm(program) if program is not None else interpreter)
    compiled = CompiledPolicy(policy_set, queries, program, note, len(report.outcomes), reads)
    return compiled, report
