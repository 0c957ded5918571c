"""``ire policy``: test, evaluate and reload Rego policy sets.

- ``ire policy test [--coverage] [--threshold PCT]`` runs the set's ``test_*`` rules like
  ``opa test``; exit 1 when a test fails or rule coverage is below the threshold.
- ``ire policy eval --input FILE`` prints the decision the set makes on an input document.
- ``ire policy reload`` validates the home's set. With ``--server`` it asks that server to
  load it now (admin API, token with the ``admin`` scope); without, a running server picks
  it up on its next poll (``policy.reload_poll_seconds``).

Sets are read from ``--dir``, else from the home's ``policies/`` (the set in force).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import grpc

from protos import admin_pb2, admin_pb2_grpc
from supervisor.cli._common import open_home
from supervisor.errors import InvalidInputError
from supervisor.policy._regorus import Interpreter, error_text
from supervisor.policy.compiler import compile_policy
from supervisor.policy.decision import MalformedDecisionError, parse_decision
from supervisor.policy.engine import Query
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import PolicySet, load_policy_set
from supervisor.policy.testing import Coverage, TestReport, run_tests

EXIT_FAILED = 1
TOKEN_ENV = "IRE_TOKEN"  # noqa: S105 - the name of a variable, not a token
# An input document is a few hundred bytes; anything far bigger is a mistake.
MAX_INPUT_BYTES = 1024 * 1024
QUERIES = {"authz": Query.AUTHZ, "admission": Query.ADMISSION}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("policy", help="test, evaluate and reload Rego policies")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    test = actions.add_parser("test", help="run the set's test_* rules (like opa test)")
    test.add_argument("--dir", type=Path, help="policy directory (default: the home's policies/)")
    test.add_argument("--coverage", action="store_true", help="report line and rule coverage")
    test.add_argument("--threshold", type=float, default=0.0, help="fail below this rule coverage, in percent")
    test.add_argument("-v", "--verbose", action="store_true", help="list every test, not only failures")
    test.set_defaults(run=run_test)
    ev = actions.add_parser("eval", help="print the decision for an input document")
    ev.add_argument("--input", required=True, help="JSON input document ('-' for stdin)")
    ev.add_argument("--query", choices=sorted(QUERIES), default="authz")
    ev.add_argument("--dir", type=Path, help="policy directory (default: the home's policies/)")
    ev.set_defaults(run=run_eval)
    reload = actions.add_parser("reload", help="validate the home's set; with --server, load it there now")
    reload.add_argument("--server", help="HOST:PORT of a running `ire serve`")
    reload.add_argument("--token", help=f"admin token for --server (default: ${TOKEN_ENV})")
    reload.set_defaults(run=run_reload)


def _directory(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir is not None else open_home(args).policies_dir


def _print_coverage(coverage: Coverage) -> None:
    print("coverage of the deciding files (tests excluded):")
    for f in coverage.files:
        lines = 100.0 * f.lines_covered / f.lines_total if f.lines_total else 100.0
        rules = 100.0 * f.rules_covered / f.rules_total if f.rules_total else 100.0
        print(
            f"  {f.path:<40} lines {f.lines_covered:>4}/{f.lines_total:<4} {lines:5.1f}%"
            f"   rules {f.rules_covered:>3}/{f.rules_total:<3} {rules:5.1f}%"
        )
        for rule in f.uncovered_rules:
            print(f"    not covered: {rule}")
    print(f"  {'total':<40} lines {coverage.line_percent:5.1f}%            rules {coverage.rule_percent:5.1f}%")
    for path in coverage.overstated_by:
        print(
            f"note: {path} imports a data package; regorus evaluates all of a package imported this way, "
            "so coverage is overstated (refer to data.ire.authz.decision in full)"
        )


def _print_report(report: TestReport, verbose: bool) -> None:
    for outcome in report.outcomes:
        if verbose or not outcome.passed:
            status = "PASS" if outcome.passed else f"FAIL ({outcome.detail})"
            print(f"{outcome.name}: {status} ({outcome.seconds * 1000:.2f} ms)")
    passed = sum(o.passed for o in report.outcomes)
    print("-" * 80)
    print(f"{'PASS' if report.passed else 'FAIL'}: {passed}/{len(report.outcomes)}   revision {report.revision[:12]}")


def run_test(args: argparse.Namespace) -> int:
    policy_set = load_policy_set(_directory(args))
    report = run_tests(policy_set, coverage=args.coverage or args.threshold > 0)
    _print_report(report, args.verbose)
    code = 0 if report.passed else EXIT_FAILED
    if not report.outcomes:
        print("no tests found (test_* rules): an untested set is refused by the server")
    if report.coverage is not None:
        _print_coverage(report.coverage)
        if report.coverage.rule_percent < args.threshold:
            print(f"rule coverage {report.coverage.rule_percent:.1f}% is below the threshold {args.threshold:.1f}%")
            code = EXIT_FAILED
    return code


def _read_input(source: str) -> Any:
    try:
        text = sys.stdin.read(MAX_INPUT_BYTES + 1) if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInputError(f"cannot read --input {source}: {exc}") from exc
    if len(text) > MAX_INPUT_BYTES:
        raise InvalidInputError(f"--input is over {MAX_INPUT_BYTES} bytes")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(f"--input {source} is not JSON: {exc}") from exc


def _outcome(value: Any, policy_set: PolicySet) -> str:
    try:
        decision = parse_decision(value, policy_set.revision)
    except MalformedDecisionError as exc:
        return f"refuse: policy unavailable ({exc})"
    return "allow" if decision.allow else "deny"


def run_eval(args: argparse.Namespace) -> int:
    document = _read_input(args.input)
    if not isinstance(document, dict):
        raise InvalidInputError(f"--input holds a {type(document).__name__}, expected a JSON object")
    policy_set = load_policy_set(_directory(args))
    query = QUERIES[args.query]
    try:
        value = Interpreter(policy_set.modules).eval_rule(query.rule, document)
    except SyntaxError as exc:
        raise PolicySetError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - an evaluation error is what the user came to see
        value, error = None, error_text(exc)
    else:
        error = ""
    result = {
        "revision": policy_set.revision,
        "query": query.rule,
        "result": value,
        "server": _outcome(value, policy_set),
    }
    if error:
        result["error"] = error
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _reload_remote(server: str, token: str) -> int:
    channel = grpc.insecure_channel(server)
    try:
        stub = admin_pb2_grpc.AdminServiceStub(channel)  # type: ignore[no-untyped-call]
        response: admin_pb2.ReloadPolicyResponse = stub.ReloadPolicy(
            admin_pb2.ReloadPolicyRequest(), metadata=(("authorization", f"Bearer {token}"),), timeout=120
        )
    except grpc.RpcError as exc:
        print(f"ire: error: {server}: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        channel.close()
    state = "loaded" if response.changed else "unchanged"
    engine = "compiled" if response.compiled else "interpreted"
    print(
        f"{server}: revision {response.revision[:12]} in force ({state}; previous {response.previous_revision[:12]}; "
        f"{response.tests_passed} tests pass; {engine})"
    )
    return 0


def run_reload(args: argparse.Namespace) -> int:
    home = open_home(args)
    if args.server:
        token = args.token or os.environ.get(TOKEN_ENV, "")
        if not token:
            raise InvalidInputError(f"--server needs an admin token: pass --token or set {TOKEN_ENV}")
        return _reload_remote(args.server, token)
    settings = home.settings()
    compiled, report = compile_policy(
        load_policy_set(home.policies_dir),
        use_vm=settings.policy.compiled,
        deadline_seconds=settings.policy.timeout_seconds,
    )
    engine = "compiled" if compiled.program is not None else f"interpreted: {compiled.vm_note}"
    print(
        f"policy set {compiled.policy_set.short} in {home.policies_dir} is valid ({len(report.outcomes)} tests pass; "
        f"{engine}). A running server loads it within {settings.policy.reload_poll_seconds:g} s; "
        "use --server to load it now."
    )
    return 0
