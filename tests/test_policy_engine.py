"""The policy core without a server: input contract, decision checks, set loading, fail-closed engines.

Fakes plug in through the same PolicyEngine protocol the embedded and remote engines implement.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from supervisor.audit import AuditRecord
from supervisor.auth import Principal
from supervisor.errors import PolicyDeniedError, PolicyUnavailableError
from supervisor.policy import Authorizer, Evaluation, PolicyEngineError, PolicySetError, Query, RequestFacts
from supervisor.policy._regorus import Interpreter, Vm
from supervisor.policy.cache import DecisionCache, encode, project, projector
from supervisor.policy.compiler import _no_decision, compile_policy
from supervisor.policy.decision import MalformedDecisionError, parse_decision
from supervisor.policy.document import INPUT_VERSION, build_input, peer_address
from supervisor.policy.embedded import EmbeddedEngine
from supervisor.policy.policyset import PolicySet, load_policy_set
from supervisor.policy.probes import _model, probe_documents
from supervisor.policy.validate import validate_in_child
from supervisor.registry import Tenant

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
ALLOW_ALL = 'package ire.authz\n\ndecision := {"allow": true, "reasons": []}\n'
A_TEST = "package ire.authz_test\n\nimport data.ire.authz\n\ntest_decides if authz.decision\n"

PRINCIPAL = Principal(subject="acme-app", tenant="acme", scopes=frozenset({"predict"}), token_id="t", expires_at=0)
TENANT = Tenant(name="acme", tier="standard", created_at=0.0, number=1, labels=(("team", "ml"),))


def _record() -> AuditRecord:
    return AuditRecord(time=time.time(), request_id="r", action="predict")


def _write(directory: Path, files: Mapping[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


# The input contract


def test_input_document_has_the_versioned_contract() -> None:
    doc = build_input(
        "predict",
        PRINCIPAL,
        TENANT,
        now_ns=7,
        request=RequestFacts(bytes=300, batch=2, peer="10.0.0.1"),
        usage={"requests_today": 3},
    )
    assert doc == {
        "version": INPUT_VERSION,
        "action": "predict",
        "principal": {"sub": "acme-app", "scopes": ["predict"], "tenant": "acme"},
        "tenant": {"id": "acme", "tier": "standard", "labels": {"team": "ml"}},
        "model": {},
        "request": {"bytes": 300, "batch": 2, "peer": "10.0.0.1"},
        "usage": {"requests_today": 3},
        "resource": {},
        "time": {"ns": 7},
    }
    assert INPUT_VERSION == 1


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        pytest.param("ipv4:127.0.0.1:5000", "127.0.0.1", id="ipv4"),
        pytest.param("ipv6:[::1]:5000", "::1", id="ipv6"),
        pytest.param("unix:/tmp/sock", "", id="unix"),
        pytest.param("ipv4:not-an-ip:1", "", id="garbage"),
        pytest.param("", "", id="empty"),
    ],
)
def test_peer_is_reduced_to_its_address(peer: str, address: str) -> None:
    assert peer_address(peer) == address


# Decisions are checked strictly: only a real boolean true allows


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(None, id="undefined"),
        pytest.param(True, id="bare_true"),
        pytest.param({"reasons": []}, id="no_allow"),
        pytest.param({"allow": "true", "reasons": []}, id="string_true"),
        pytest.param({"allow": 1, "reasons": []}, id="number_one"),
        pytest.param({"allow": True, "reasons": "ok"}, id="reasons_not_a_list"),
        pytest.param({"allow": True, "reasons": [1]}, id="reason_not_a_string"),
    ],
)
def test_malformed_decision_is_not_an_allow(value: Any) -> None:
    with pytest.raises(MalformedDecisionError):
        parse_decision(value, "rev")


def test_reasons_are_bounded() -> None:
    decision = parse_decision({"allow": False, "reasons": ["x" * 2000] * 40}, "rev")
    assert len(decision.reasons) == 17 and len(decision.reasons[0]) == 512


# Policy sets


def test_revision_is_the_content_hash(tmp_path: Path) -> None:
    a = load_policy_set(_write(tmp_path / "a", {"authz.rego": ALLOW_ALL}))
    b = load_policy_set(_write(tmp_path / "b", {"authz.rego": ALLOW_ALL}))
    renamed = load_policy_set(_write(tmp_path / "c", {"other.rego": ALLOW_ALL}))
    edited = load_policy_set(_write(tmp_path / "d", {"authz.rego": ALLOW_ALL + "\n"}))
    assert a.revision == b.revision
    assert len({a.revision, renamed.revision, edited.revision}) == 3


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param({}, "holds no policy", id="empty_set"),
        pytest.param({"authz_test.rego": A_TEST}, "holds no policy", id="only_tests"),
        pytest.param({"authz.rego": ALLOW_ALL, "data.json": "{}"}, "data files are not read", id="hand_edited_data"),
    ],
)
def test_unusable_set_refused_on_load(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(PolicySetError, match=message):
        load_policy_set(_write(tmp_path / "p", files))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            {"authz.rego": "package ire.authz\n\ndecision := {", "t_test.rego": A_TEST}, "authz.rego", id="syntax"
        ),
        pytest.param(
            {"x.rego": "package other\n\nx := 1\n", "t_test.rego": A_TEST}, "no package ire.authz", id="no_authz"
        ),
        pytest.param({"authz.rego": ALLOW_ALL}, "has no tests", id="untested"),
        pytest.param(
            {"authz.rego": "package ire.authz\n\nallow := true\n", "t_test.rego": A_TEST},
            "defines no rule data.ire.authz.decision",
            id="no_decision_rule",
        ),
        pytest.param(
            {"authz.rego": ALLOW_ALL, "t_test.rego": A_TEST + "\ntest_fails if not authz.decision.allow\n"},
            "1 of 2 tests fail: data.ire.authz_test.test_fails",
            id="failing_test",
        ),
        pytest.param(
            {"authz.rego": "package ire.authz\n\ndecision := no_such_function(1)\n", "t_test.rego": A_TEST},
            "does not evaluate",
            id="unknown_function",
        ),
    ],
)
def test_broken_set_refused_on_compile(tmp_path: Path, files: dict[str, str], message: str) -> None:
    with pytest.raises(PolicySetError, match=message):
        compile_policy(load_policy_set(_write(tmp_path / "p", files)))


def test_shipped_set_compiles_for_the_rvm() -> None:
    compiled, report = compile_policy(load_policy_set(SHIPPED))
    assert report.passed and compiled.tests == len(report.outcomes) > 10
    assert compiled.program is not None, compiled.vm_note
    assert compiled.queries == frozenset(Query)
    # The cache key holds what the set reads: one client's calls must not split on the
    # clock or their source port's address.
    assert compiled.reads is not None
    assert not {("time",), ("request",), ("request", "peer"), ("time", "ns")} & set(compiled.reads)


def _malformed_variants(document: dict[str, Any]) -> list[dict[str, Any]]:
    """``document`` with each field, then each nested field, removed or given another type."""
    out = []
    for key, value in document.items():
        out.append({k: v for k, v in document.items() if k != key})
        out.append({**document, key: "x" if not isinstance(value, str) else 7})
        if isinstance(value, dict):
            for inner in value:
                out.append({**document, key: {k: v for k, v in value.items() if k != inner}})
                out.append({**document, key: {**value, inner: None}})
    return out


def test_shipped_allow_and_refusals_never_disagree() -> None:
    # The shipped authz writes its checks twice: as the conditions of an allow (the fast
    # path) and as refusals (the reasons, worked out on a denial). A call the conditions
    # allow but a refusal names, or one they deny with no refusal to say why, is a policy
    # bug; so is any input where the compiled program and the interpreter decide apart.
    compiled, _ = compile_policy(load_policy_set(SHIPPED))
    assert compiled.program is not None, compiled.vm_note
    interpreter, vm = Interpreter(compiled.policy_set.modules), Vm(compiled.program)
    documents = probe_documents(Query.AUTHZ)
    allowed = [d for d in documents if interpreter.eval_rule("data.ire.authz.allow", d)]
    for document in allowed[:6]:
        documents = documents + _malformed_variants(document)
    denied = failed = 0
    for document in documents:
        allow = interpreter.eval_rule("data.ire.authz.allow", document)
        decision = _no_decision(partial(interpreter.eval_rule, Query.AUTHZ.rule, document))
        compiled_decision = _no_decision(partial(vm.eval_rule, Query.AUTHZ.rule, document))
        if decision is None:  # a reason cannot be formatted (a batch that is text): refused
            assert allow is False and (compiled_decision is None or compiled_decision["allow"] is False), document
            failed += 1
            continue
        assert compiled_decision == decision, document
        refusals = interpreter.eval_rule("data.ire.authz.refusals", document)
        assert allow is not (refusals != []), f"{json.dumps(document)} {allow} {refusals}"
        assert decision["allow"] is allow and (decision["reasons"] == []) is allow, (document, decision)
        denied += not allow
    assert len(allowed) >= 20 and denied > 200 and failed < 10


# regorus 0.13's RVM puts the text "<undefined>" into this array where the interpreter
# makes the rule undefined (reasons for an input with no "version" and no "action").
DIVERGENT = """package ire.authz

default allow := false

allow if {
	input.action == "x"
	count(violations) == 0
}

decision := {"allow": allow, "reasons": reasons}

reasons := sort(violations) if count(violations) > 0

reasons := [] if allow

reasons := [sprintf("unknown action %q", [input.action])] if {
	not allow
	count(violations) == 0
}

violations contains msg if {
	not input.version == 1
	msg := sprintf("input version %v is not supported", [input.version])
}
"""


def test_rvm_disagreeing_with_the_interpreter_is_not_used(tmp_path: Path) -> None:
    files = {"authz.rego": DIVERGENT, "t_test.rego": "package t\n\ntest_ok if true\n"}
    compiled, _ = compile_policy(load_policy_set(_write(tmp_path / "p", files)))
    assert compiled.program is None
    assert "differs on a probe" in compiled.vm_note and "<undefined>" in compiled.vm_note


# The embedded engine: crashes, runaway and late decisions refuse; caching is keyed right

SLOW = """package ire.authz

decision := {"allow": true, "reasons": []} if {
	input.principal.sub == "slow"
	every i in numbers.range(1, 1000) {
		every j in numbers.range(1, 1000) {
			i + j > 0
		}
	}
}

decision := {"allow": to_number(input.principal.sub) > 0, "reasons": []} if input.principal.sub == "crash"

decision := {"allow": true, "reasons": []} if input.principal.sub == "fine"
"""
SLOW_TEST = "package t\n\ntest_ok if true\n"


def _embedded(
    tmp_path: Path, files: dict[str, str], *, use_vm: bool, timeout: float = 2.0, cache: bool = False
) -> EmbeddedEngine:
    compiled, _ = compile_policy(
        load_policy_set(_write(tmp_path / "p", files)), use_vm=use_vm, deadline_seconds=timeout
    )
    return EmbeddedEngine(compiled, timeout_seconds=timeout, cache=DecisionCache(100) if cache else None)


def _as(sub: str) -> dict[str, Any]:
    principal = Principal(subject=sub, tenant="acme", scopes=frozenset(), token_id="t", expires_at=0)
    return build_input("predict", principal, TENANT, now_ns=1)


def test_engine_crash_is_an_engine_error_and_the_engine_recovers(tmp_path: Path) -> None:
    engine = _embedded(tmp_path, {"authz.rego": SLOW, "t_test.rego": SLOW_TEST}, use_vm=False)
    with pytest.raises(PolicyEngineError, match="could not parse string as number") as info:
        engine.decide(Query.AUTHZ, _as("crash"))
    assert info.value.cause == "crash"
    assert engine.decide(Query.AUTHZ, _as("fine")).value == {"allow": True, "reasons": []}


def test_late_decision_is_refused_as_timeout(tmp_path: Path) -> None:
    engine = _embedded(tmp_path, {"authz.rego": SLOW, "t_test.rego": SLOW_TEST}, use_vm=False, timeout=0.01)
    with pytest.raises(PolicyEngineError, match=r"over the 0\.01 s deadline") as info:
        engine.decide(Query.AUTHZ, _as("slow"))
    assert info.value.cause == "timeout"


def test_runaway_compiled_evaluation_stops_at_the_instruction_limit(tmp_path: Path) -> None:
    engine = _embedded(tmp_path, {"authz.rego": SLOW, "t_test.rego": SLOW_TEST}, use_vm=True)
    assert engine.compiled.program is not None
    with pytest.raises(PolicyEngineError, match="instruction limit") as info:
        engine.decide(Query.AUTHZ, _as("slow"))
    assert info.value.cause == "timeout"


def test_set_slow_on_ordinary_input_refused_at_compile(tmp_path: Path) -> None:
    slow_for_all = SLOW.replace('input.principal.sub == "slow"', 'input.principal.sub == "probe"')
    with pytest.raises(PolicySetError, match=r"over the 0\.01 s deadline"):
        compile_policy(
            load_policy_set(_write(tmp_path / "p", {"authz.rego": slow_for_all, "t_test.rego": SLOW_TEST})),
            use_vm=False,
            deadline_seconds=0.01,
        )


def test_projection_keeps_only_what_the_policy_reads() -> None:
    paths = (("request", "batch"), ("tenant", "tier"), ("usage", "missing"))
    doc = build_input("predict", PRINCIPAL, TENANT, now_ns=1, request=RequestFacts(batch=1))
    later = build_input("predict", PRINCIPAL, TENANT, now_ns=2, request=RequestFacts(batch=1, peer="10.0.0.9"))
    bigger = build_input("predict", PRINCIPAL, TENANT, now_ns=1, request=RequestFacts(batch=2))
    assert project(doc, paths) == {"request": {"batch": 1}, "tenant": {"tier": "standard"}, "usage": {}}
    assert encode(project(doc, paths)) == encode(project(later, paths))  # time and peer are not read
    assert encode(project(doc, paths)) != encode(project(bigger, paths))
    assert projector(paths)(doc) == project(doc, paths)


def test_input_orjson_refuses_is_still_encoded_not_dropped() -> None:
    # orjson refuses integers past 64 bits: a byte count that large must still reach the
    # policy (which then denies on it), not vanish or crash the encoder.
    huge = 2**70
    assert json.loads(encode({"request": {"bytes": huge}})) == {"request": {"bytes": huge}}
    assert encode({"a": [1, "x"], "b": None}) == '{"a":[1,"x"],"b":null}'


def test_cache_key_always_holds_the_tenant_and_revision() -> None:
    key = DecisionCache.key("rev", "ire.authz", "acme", "{}")
    assert key != DecisionCache.key("rev", "ire.authz", "globex", "{}")
    assert key != DecisionCache.key("rev2", "ire.authz", "acme", "{}")
    cache = DecisionCache(2)
    cache.put(key, None)  # no decision is never cached
    assert cache.get(key) is None and cache.misses == 1


@pytest.mark.parametrize(
    "policy",
    [
        pytest.param("x := input\n", id="bare_input"),
        pytest.param("import input.principal as p\n\nx := p.sub\n", id="imported_input"),
        pytest.param("x := time.now_ns()\n", id="clock"),
        pytest.param("x := object.get(input, [y], 1) if y := input.k\n", id="dynamic_object_get"),
        pytest.param("x := true if decision with input as {}\n", id="with_input"),
    ],
)
def test_unlistable_reads_disable_caching(tmp_path: Path, policy: str) -> None:
    files = {"authz.rego": ALLOW_ALL, "extra.rego": "package ire.authz\n\n" + policy, "t_test.rego": SLOW_TEST}
    compiled, _ = compile_policy(load_policy_set(_write(tmp_path / "p", files)))
    assert compiled.reads is None


def test_cached_decision_follows_the_revision(tmp_path: Path) -> None:
    engine = _embedded(tmp_path / "a", {"authz.rego": SLOW, "t_test.rego": SLOW_TEST}, use_vm=True, cache=True)
    assert engine.compiled.reads == (("principal", "sub"),)
    assert engine.decide(Query.AUTHZ, _as("fine")).value["allow"] is True
    assert engine.decide(Query.AUTHZ, _as("fine")).value["allow"] is True
    assert engine.cache is not None and engine.cache.hits == 1
    deny = SLOW.replace(
        'decision := {"allow": true, "reasons": []} if input.principal.sub == "fine"',
        'decision := {"allow": false, "reasons": ["no"]} if input.principal.sub == "fine"',
    )
    compiled, _ = compile_policy(
        load_policy_set(_write(tmp_path / "b", {"authz.rego": deny, "t_test.rego": SLOW_TEST}))
    )
    engine.activate(compiled)
    assert engine.decide(Query.AUTHZ, _as("fine")).value == {"allow": False, "reasons": ["no"]}


async def test_embedded_engine_decides_with_the_shipped_set() -> None:
    compiled, _ = compile_policy(load_policy_set(SHIPPED))
    engine = EmbeddedEngine(compiled, timeout_seconds=2.0)
    authorizer = Authorizer(engine)
    record = _record()
    decision = await authorizer.authorize("predict", PRINCIPAL, TENANT, record, model=_model("acme"))
    assert decision.allow and decision.revision == compiled.revision
    assert record.detail["policy"]["revision"] == compiled.revision
    admin_only = Principal(subject="x", tenant="acme", scopes=frozenset({"admin"}), token_id="t", expires_at=0)
    with pytest.raises(PolicyDeniedError, match="needs scope 'predict'"):
        await authorizer.authorize("predict", admin_only, TENANT, _record(), model=_model("acme"))


# The authorizer fails closed, whatever the engine does


class FakeEngine:
    """A PolicyEngine whose answer the test chooses."""

    name = "fake"

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour

    @property
    def revision(self) -> str:
        return "fake-rev"

    async def evaluate(self, query: Query, document: Mapping[str, Any]) -> Evaluation:
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        if self.behaviour == "hang":
            await asyncio.sleep(10)
        return Evaluation(self.behaviour, "fake-rev")

    def stable_revision(self, query: Query) -> str | None:
        return None

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("behaviour", "cause"),
    [
        pytest.param(PolicyEngineError("no decision within 0.5 s", "timeout"), "timeout", id="timeout"),
        pytest.param(PolicyEngineError("RuntimeError: boom", "crash"), "crash", id="crash"),
        pytest.param(PolicyEngineError("refused", "unreachable"), "unreachable", id="unreachable"),
        pytest.param(ValueError("unexpected"), "crash", id="unexpected_exception"),
        pytest.param(None, "undefined", id="undefined"),
        pytest.param({"allow": "yes"}, "malformed", id="malformed"),
    ],
)
async def test_engine_failure_refuses_and_is_recorded(behaviour: Any, cause: str) -> None:
    record = _record()
    with pytest.raises(PolicyUnavailableError) as info:
        await Authorizer(FakeEngine(behaviour)).authorize("predict", PRINCIPAL, TENANT, record)
    assert str(info.value) == "policy unavailable"
    assert record.detail["policy"]["decision"] == "unavailable"
    assert record.detail["policy"]["cause"] == cause
    assert record.detail["policy"]["revision"] == "fake-rev"


async def test_denial_reasons_hidden_when_configured() -> None:
    engine = FakeEngine({"allow": False, "reasons": ["tenant is over budget"]})
    with pytest.raises(PolicyDeniedError) as shown:
        await Authorizer(engine, show_reasons=True).authorize("predict", PRINCIPAL, TENANT, _record())
    assert "tenant is over budget" in str(shown.value)
    record = _record()
    with pytest.raises(PolicyDeniedError) as hidden:
        await Authorizer(engine, show_reasons=False).authorize("predict", PRINCIPAL, TENANT, record)
    assert str(hidden.value) == "denied by policy"
    assert hidden.value.reasons == ("tenant is over budget",)
    assert record.detail["policy"]["reasons"] == ["tenant is over budget"]


# Reusing an allowing decision for the same call shape (Authorizer.authorize)


class CountingEngine(EmbeddedEngine):
    """The embedded engine, counting the decisions it is actually asked for."""

    evaluations = 0

    async def evaluate(self, query: Query, document: Mapping[str, Any]) -> Evaluation:
        self.evaluations += 1
        return await super().evaluate(query, document)


def _counting(tmp_path: Path, policy: str, *, cache: bool = True) -> CountingEngine:
    compiled, _ = compile_policy(load_policy_set(_write(tmp_path, {"authz.rego": policy, "t_test.rego": SLOW_TEST})))
    return CountingEngine(compiled, timeout_seconds=2.0, cache=DecisionCache(100) if cache else None)


TIER_POLICY = """package ire.authz

decision := {"allow": true, "reasons": []} if input.tenant.tier == "standard"
decision := {"allow": false, "reasons": ["tier"]} if input.tenant.tier != "standard"
"""


async def test_allow_reused_only_for_the_same_principal_tenant_model_and_request(tmp_path: Path) -> None:
    engine = _counting(tmp_path, TIER_POLICY)
    authorizer = Authorizer(engine)
    model, facts = _model("acme"), RequestFacts(bytes=10, batch=1, peer="10.0.0.1")
    first, second = _record(), _record()
    await authorizer.authorize("predict", PRINCIPAL, TENANT, first, model=model, request=facts)
    await authorizer.authorize("predict", PRINCIPAL, TENANT, second, model=model, request=facts)
    assert engine.evaluations == 1
    assert second.detail["policy"] == first.detail["policy"]  # audited in full all the same
    assert second.detail["policy"]["decision"] == "allow"
    # Anything else decides afresh: other facts, action, model, principal or tenant object.
    await authorizer.authorize("predict", PRINCIPAL, TENANT, _record(), model=model, request=facts._replace(batch=2))
    await authorizer.authorize("model_ready", PRINCIPAL, TENANT, _record(), model=model, request=facts)
    await authorizer.authorize("predict", PRINCIPAL, TENANT, _record(), model=_model("acme"), request=facts)
    assert engine.evaluations == 4
    # The registry re-read the tenant, now on another tier: a new object, a new decision.
    moved = Tenant(name="acme", tier="free", created_at=0.0, number=1, labels=(("team", "ml"),))
    with pytest.raises(PolicyDeniedError, match="tier"):
        await authorizer.authorize("predict", PRINCIPAL, moved, _record(), model=model, request=facts)
    assert engine.evaluations == 5


async def test_denial_is_decided_every_time_never_reused(tmp_path: Path) -> None:
    engine = _counting(tmp_path, TIER_POLICY)
    authorizer = Authorizer(engine)
    free = Tenant(name="acme", tier="free", created_at=0.0, number=1)
    for _ in range(3):
        record = _record()
        with pytest.raises(PolicyDeniedError):
            await authorizer.authorize("predict", PRINCIPAL, free, record, model=_model("acme"))
        assert record.detail["policy"]["decision"] == "deny"
    assert engine.evaluations == 3


async def test_new_revision_is_never_answered_by_a_decision_of_the_old_one(tmp_path: Path) -> None:
    engine = _counting(tmp_path / "a", ALLOW_ALL)
    authorizer = Authorizer(engine)
    model = _model("acme")
    await authorizer.authorize("predict", PRINCIPAL, TENANT, _record(), model=model)
    deny_all = 'package ire.authz\n\ndecision := {"allow": false, "reasons": ["closed"]}\n'
    compiled, _ = compile_policy(
        load_policy_set(_write(tmp_path / "b", {"authz.rego": deny_all, "t_test.rego": SLOW_TEST}))
    )
    engine.activate(compiled)
    record = _record()
    with pytest.raises(PolicyDeniedError, match="closed"):
        await authorizer.authorize("predict", PRINCIPAL, TENANT, record, model=model)
    assert record.detail["policy"]["revision"] == compiled.revision


class _OneInFlight:
    def usage(self, tenant: str) -> Mapping[str, Any]:
        return {"in_flight": 1}


@pytest.mark.parametrize(
    ("policy", "cache"),
    [
        pytest.param(
            'package ire.authz\n\ndecision := {"allow": input.usage.in_flight < 100, "reasons": []}\n',
            True,
            id="reads_usage",
        ),
        pytest.param(
            'package ire.authz\n\ndecision := {"allow": input.time.ns > 0, "reasons": []}\n', True, id="reads_time"
        ),
        pytest.param(
            'package ire.authz\n\ndecision := {"allow": count(input.resource) == 0, "reasons": []}\n',
            True,
            id="reads_resource",
        ),
        pytest.param(ALLOW_ALL, False, id="decision_cache_off"),
    ],
)
async def test_decisions_that_can_change_between_calls_are_never_reused(
    tmp_path: Path, policy: str, cache: bool
) -> None:
    # Usage (quota counters) and time change from one call to the next for the same
    # caller; an operator who turned the decision cache off wants every call decided.
    engine = _counting(tmp_path, policy, cache=cache)
    assert engine.stable_revision(Query.AUTHZ) is None
    authorizer = Authorizer(engine, usage=_OneInFlight())
    for _ in range(2):
        await authorizer.authorize("predict", PRINCIPAL, TENANT, _record(), model=_model("acme"))
    assert engine.evaluations == 2


def test_policy_set_files_sorted_and_tests_excluded_from_modules() -> None:
    policy_set = PolicySet.from_files({"b_test.rego": A_TEST, "a.rego": ALLOW_ALL})
    assert [f.path for f in policy_set.files] == ["a.rego", "b_test.rego"]
    assert [f.path for f in policy_set.modules] == ["a.rego"]


# Reload validation runs in a child process that is killed at its deadline


async def test_child_validation_returns_the_tested_set() -> None:
    compiled = await validate_in_child(SHIPPED, skip_revision="", use_vm=True, deadline_seconds=0.5, timeout_seconds=60)
    assert compiled is not None
    assert compiled.revision == load_policy_set(SHIPPED).revision and compiled.program is not None
    assert (
        await validate_in_child(
            SHIPPED, skip_revision=compiled.revision, use_vm=True, deadline_seconds=0.5, timeout_seconds=60
        )
        is None
    )


async def test_child_validation_of_a_never_ending_test_is_killed(tmp_path: Path) -> None:
    endless = "package t\n\ntest_slow if {\n\tevery i in numbers.range(1, 5000) {\n\t\tevery j in numbers.range(1, 5000) {\n\t\t\ti + j > 0\n\t\t}\n\t}\n}\n"
    directory = _write(tmp_path / "p", {"authz.rego": ALLOW_ALL, "t_test.rego": endless})
    started = time.monotonic()
    with pytest.raises(PolicySetError, match=r"took over 2\.0 s"):
        await validate_in_child(directory, skip_revision="", use_vm=False, deadline_seconds=0.5, timeout_seconds=2.0)
    assert time.monotonic() - started < 5


async def test_child_validator_crash_refuses_the_set_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # regorus cannot be made to crash on demand, so the child is a stand-in that reports an
    # engine panic on stderr and aborts, as a native crash in the real validator would.
    crasher = tmp_path / "crasher"
    crasher.write_text("#!/bin/sh\necho 'thread main panicked at regorus: index out of bounds' >&2\nkill -ABRT $$\n")
    crasher.chmod(0o755)
    monkeypatch.setattr("sys.executable", str(crasher))
    with pytest.raises(PolicySetError, match=r"exited -6 without an answer: thread main panicked at regorus"):
        await validate_in_child(SHIPPED, skip_revision="", use_vm=True, deadline_seconds=0.5, timeout_seconds=10)


async def test_admission_refuses_a_custom_operator_domain() -> None:
    from supervisor.modelgraph import GraphFacts
    from supervisor.policy.probes import _SPEC

    compiled, _ = compile_policy(load_policy_set(SHIPPED))
    authorizer = Authorizer(EmbeddedEngine(compiled, timeout_seconds=2.0))

    def graph(domains: frozenset[str]) -> GraphFacts:
        return GraphFacts(9, (("", 17),), domains, (), _SPEC, _SPEC, 3, 4096)

    assert (await authorizer.admit("model.load", TENANT, _model("acme"), graph(frozenset({""})), _record())).allow
    with pytest.raises(PolicyDeniedError, match=r'operator domain "evil\.ops" is not allowed'):
        await authorizer.admit("model.register", TENANT, _model("acme"), graph(frozenset({"", "evil.ops"})), _record())


async def test_reaper_never_takes_the_validators_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    # The server reaps orphaned sandbox processes; were it to reap the validator too, the
    # reload would never learn that the child ended and would hang until its timeout.
    # Sweeping every 0.5 ms makes the race all but certain wherever it exists.
    from supervisor.workers import reaper

    monkeypatch.setattr(reaper, "SWEEP_SECONDS", 0.0005)
    # Only the sweep is under test: the test process must not become a subreaper, or every
    # orphan of a later test would be left a zombie here.
    monkeypatch.setattr(reaper, "set_child_subreaper", lambda: None)
    sweeper = reaper.Reaper(set())
    sweeper.start(asyncio.get_running_loop())
    try:
        revision = load_policy_set(SHIPPED).revision
        for _ in range(5):
            unchanged = await validate_in_child(
                SHIPPED, skip_revision=revision, use_vm=True, deadline_seconds=0.5, timeout_seconds=20
            )
            assert unchanged is None
    finally:
        sweeper.stop()
    assert sweeper.reaped == 0


UVLOOP_VALIDATIONS = """
import asyncio, os, sys
from pathlib import Path
import uvloop
from supervisor.policy.policyset import load_policy_set
from supervisor.policy.validate import validate_in_child

async def main(shipped):
    revision = load_policy_set(shipped).revision
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(5):
        unchanged = await validate_in_child(shipped, skip_revision=revision, use_vm=True, deadline_seconds=0.5, timeout_seconds=30)
        assert unchanged is None
    print("fds", before, len(os.listdir("/proc/self/fd")))

uvloop.run(main(Path(sys.argv[1])))
"""


def test_validation_on_the_servers_event_loop_neither_crashes_nor_leaks_descriptors() -> None:
    # `ire serve` runs on uvloop, where handing subprocess's pipes to the loop closed their
    # descriptors twice and aborted the process. Run in a child so an abort fails this test
    # rather than the suite.
    proc = subprocess.run(
        [sys.executable, "-c", UVLOOP_VALIDATIONS, str(SHIPPED)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    _, before, after = proc.stdout.split()
    assert before == after
