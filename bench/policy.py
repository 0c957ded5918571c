"""What policy costs: one embedded decision, the policy step in the server path, and a prediction end to end.

    python -m bench.policy [--decisions 20000] [--duration 5] [--warmup 1] [--rounds 2] [--no-e2e]

1. Decision: ``EmbeddedEngine.decide`` on the shipped set for an allowed prediction,
   uncached: input document in, checked value out (JSON encoding, regorus, JSON decoding).
   Compiled RVM path and interpreter side by side; the cached path for reference.
2. Step: ``await Authorizer.authorize`` inside an event loop, as the server runs it:
   building the input document, the decision, the audit detail. Uncached; a decision
   cache hit (a tenant record equal to the last one but not the same object, as after
   the registry re-reads it); and a reused decision (the same principal, tenant and
   model objects as the last call, as for a client calling again).
3. End to end: ``ire serve`` with the shipped set (cache on, and cache off) against the
   same server with a trivially-allowing set, at concurrency 1, alternating servers within
   each round; the p50 difference is what the policy adds to a prediction.

Results go to bench/results/policy-<UTC>.json. Exit 1 when the benchmark could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import regorus  # type: ignore[import-untyped]

from bench import _report
from bench._environment import describe
from bench._procs import ServerProcess, ServerStartError, start_server, stop
from bench._results import save_results, utc_stamp
from bench._setup import MODEL, TENANT, make_bench_home
from bench.loadgen import TOKEN_ENV
from bench.serve import START_TIMEOUT_SECONDS, BenchError, run_loadgen
from supervisor.audit import AuditRecord
from supervisor.auth import Principal
from supervisor.policy import Authorizer, Query, RequestFacts
from supervisor.policy.cache import DecisionCache, encode, projector
from supervisor.policy.compiler import compile_policy
from supervisor.policy.document import build_input
from supervisor.policy.embedded import EmbeddedEngine
from supervisor.policy.policyset import load_policy_set
from supervisor.policy.probes import _model
from supervisor.registry import Tenant

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "policies"
ALLOW_ALL = {
    "authz.rego": 'package ire.authz\n\ndecision := {"allow": true, "reasons": []}\n',
    # Loading is decided by ire.admission: a set without it refuses every model.
    "admission.rego": 'package ire.admission\n\ndecision := {"allow": true, "reasons": []}\n',
    "authz_test.rego": "package ire.authz_test\n\ntest_allows if data.ire.authz.decision.allow\n",
}
PRINCIPAL = Principal(subject="bench-app", tenant=TENANT, scopes=frozenset({"predict"}), token_id="t", expires_at=0)
BENCH_TENANT = Tenant(name=TENANT, tier="standard", created_at=0.0, number=1, labels=(("team", "ml"),))
REQUEST = RequestFacts(bytes=300, batch=1, peer="127.0.0.1")


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    samples = sorted(samples_ns)
    n = len(samples)
    return {
        "p50_us": round(samples[n // 2] / 1000, 2),
        "p90_us": round(samples[int(n * 0.9)] / 1000, 2),
        "p99_us": round(samples[int(n * 0.99)] / 1000, 2),
        "mean_us": round(statistics.fmean(samples) / 1000, 2),
    }


def _time(fn: Callable[[], object], count: int) -> dict[str, float]:
    for _ in range(min(1000, count)):
        fn()
    samples = []
    gc.disable()
    try:
        for _ in range(count):
            started = time.perf_counter_ns()
            fn()
            samples.append(time.perf_counter_ns() - started)
    finally:
        gc.enable()
    return _percentiles(samples)


def _document(now_ns: int) -> dict[str, Any]:
    model = _model(TENANT)
    return build_input("predict", PRINCIPAL, BENCH_TENANT, now_ns=now_ns, model=model, request=REQUEST)


def measure_decisions(count: int) -> dict[str, Any]:
    compiled, _ = compile_policy(load_policy_set(SHIPPED), use_vm=True)
    interpreted, _ = compile_policy(load_policy_set(SHIPPED), use_vm=False)
    assert compiled.program is not None, compiled.vm_note
    rvm = EmbeddedEngine(compiled, timeout_seconds=1.0)
    interpreter = EmbeddedEngine(interpreted, timeout_seconds=1.0)
    cached = EmbeddedEngine(compiled, timeout_seconds=1.0, cache=DecisionCache(1000))
    document = _document(time.time_ns())
    for engine in (rvm, interpreter, cached):
        assert engine.decide(Query.AUTHZ, document).value == {"allow": True, "reasons": []}
    # The compiled path, step by step (each timed alone, so warmer than in sequence).
    vm = regorus.Program.deserialize_binary(compiled.program)[0]
    raw = regorus.Rvm()
    raw.load_program(vm)
    raw.set_data_json("{}")
    assert compiled.reads is not None
    project = projector(compiled.reads)
    text = encode(project(document))
    raw.set_input_json(text)
    answer = raw.execute_entry_point(Query.AUTHZ.rule)
    return {
        "revision": compiled.revision,
        "rvm": _time(lambda: rvm.decide(Query.AUTHZ, document), count),
        "interpreter": _time(lambda: interpreter.decide(Query.AUTHZ, document), count),
        "cached": _time(lambda: cached.decide(Query.AUTHZ, document), count),
        "build_input": _time(lambda: _document(1), count),
        "rvm_parts": {
            "input_bytes": len(text),
            "project_and_encode_input": _time(lambda: encode(project(document)), count),
            "regorus_set_input_json": _time(lambda: raw.set_input_json(text), count),
            "rvm_execute": _time(lambda: raw.execute_entry_point(Query.AUTHZ.rule), count),
            "decode_result_json": _time(lambda: orjson.loads(answer), count),
        },
    }


async def _step(authorizer: Authorizer, count: int, *, same_objects: bool = True) -> dict[str, float]:
    model = _model(TENANT)
    samples = []
    for i in range(count + 1000):
        record = AuditRecord(time=0.0, request_id="r", action="predict")
        # An equal copy is another object: the decision cache answers, not decision reuse.
        tenant = BENCH_TENANT if same_objects else dataclasses.replace(BENCH_TENANT)
        started = time.perf_counter_ns()
        await authorizer.authorize("predict", PRINCIPAL, tenant, record, model=model, request=REQUEST)
        if i >= 1000:
            samples.append(time.perf_counter_ns() - started)
    return _percentiles(samples)


def measure_step(count: int) -> dict[str, Any]:
    compiled, _ = compile_policy(load_policy_set(SHIPPED), use_vm=True)
    uncached = Authorizer(EmbeddedEngine(compiled, timeout_seconds=1.0))
    cached = Authorizer(EmbeddedEngine(compiled, timeout_seconds=1.0, cache=DecisionCache(1000)))
    return {
        "uncached": asyncio.run(_step(uncached, count)),
        "cached": asyncio.run(_step(cached, count, same_objects=False)),
        "reused": asyncio.run(_step(cached, count)),
    }


def _start(name: str, home: Path, env: dict[str, str], workdir: Path) -> ServerProcess:
    return start_server(
        name,
        [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"],
        dict(env, IRE_HOME=str(home)),
        r"IRE serving on (\S+)",
        workdir,
        START_TIMEOUT_SECONDS,
        cwd=REPO,
    )


def measure_e2e(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    bench_home = make_bench_home(workdir / "bench", token_ttl_seconds=3600 + int(args.rounds * 60 * args.duration))
    trivial = workdir / "trivial-policies"
    trivial.mkdir()
    for name, text in ALLOW_ALL.items():
        (trivial / name).write_text(text)
    home = bench_home.home.root
    base = {
        k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "IRE_HOME") and not k.startswith("IRE_POLICY__")
    }
    # The variants share one home and the allow-all set is swapped in after the shipped
    # servers start: their hot reload must not pick it up.
    base["IRE_POLICY__RELOAD_POLL_SECONDS"] = "86400"
    variants = {
        "shipped": {},
        "shipped-nocache": {"IRE_POLICY__DECISION_CACHE": "false"},
        "allow-all": {"IRE_POLICY__DECISION_CACHE": "false"},
    }
    started: list[ServerProcess] = []
    runs: list[dict[str, Any]] = []
    try:
        servers = {}
        for name, extra in variants.items():
            if name == "allow-all":
                # Same home, other policies: swap the set in before this server starts.
                shutil.move(home / "policies", workdir / "shipped-policies")
                shutil.copytree(trivial, home / "policies")
            server = _start(name, home, dict(base, **extra), workdir)
            started.append(server)
            servers[name] = server
        env = dict(base, **{TOKEN_ENV: bench_home.token})
        for round_ in range(args.rounds):
            for name, server in servers.items():
                print(f"  {name:<16} round {round_ + 1}/{args.rounds} ...", flush=True)
                runs.append({"server": name, "round": round_, "result": run_loadgen(server, env, 1, args)})
    finally:
        for server in reversed(started):
            stop(server.process)
    medians = {n: _report.median_of_rounds([r["result"] for r in runs if r["server"] == n]) for n in variants}
    base_p50 = medians["allow-all"]["p50"]
    return {
        "model": MODEL,
        "concurrency": 1,
        "medians": medians,
        "p50_added_us": {n: round((m["p50"] - base_p50) * 1000, 1) for n, m in medians.items()},
        "runs": runs,
    }


def render(result: dict[str, Any]) -> str:
    d = result["decisions"]
    lines = [
        f"Embedded decision, shipped set, allowed prediction ({result['settings']['decisions']} samples):",
        f"  {'path':<34} {'p50 µs':>8} {'p90 µs':>8} {'p99 µs':>8}",
    ]
    labels = {
        "rvm": "decision, compiled RVM (served)",
        "interpreter": "decision, interpreter",
        "cached": "decision, cache hit",
        "build_input": "building the input document",
    }
    for key, label in labels.items():
        m = d[key]
        lines.append(f"  {label:<34} {m['p50_us']:>8.2f} {m['p90_us']:>8.2f} {m['p99_us']:>8.2f}")
    parts = d["rvm_parts"]
    lines.append(f"  compiled path, each part timed alone ({parts['input_bytes']} bytes of projected input JSON):")
    for key in ("project_and_encode_input", "regorus_set_input_json", "rvm_execute", "decode_result_json"):
        lines.append(
            f"    {key:<32} {parts[key]['p50_us']:>8.2f} {parts[key]['p90_us']:>8.2f} {parts[key]['p99_us']:>8.2f}"
        )
    s = result["step"]
    lines += ["", "Policy step in the server path (await Authorizer.authorize, event loop):"]
    step_labels = {"uncached": "uncached", "cached": "decision cache hit", "reused": "decision reused (same objects)"}
    for key, label in step_labels.items():
        if key in s:
            m = s[key]
            lines.append(f"  {label:<34} {m['p50_us']:>8.2f} {m['p90_us']:>8.2f} {m['p99_us']:>8.2f}")
    e2e = result.get("e2e")
    if e2e:
        lines += ["", "End to end, ire serve, batch-1 MLP, concurrency 1 (median of rounds):"]
        lines.append(f"  {'server':<18} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'p50 added µs':>13} {'errors':>6}")
        for name, m in e2e["medians"].items():
            lines.append(
                f"  {name:<18} {m['throughput_rps']:>8.1f} {m['p50']:>8.3f} {m['p99']:>8.3f} "
                f"{e2e['p50_added_us'][name]:>13.1f} {int(m['errors']):>6}"
            )
    lines.append(f"  (load average at start: {result['environment']['load_average'][0]:.2f})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__.split("\n\n")[0])
    p.add_argument("--decisions", type=int, default=20000, help="samples per in-process measure (default 20000)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per end-to-end run (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per end-to-end run (default 1)")
    p.add_argument("--rounds", type=int, default=2, help="server alternations (default 2)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end part")
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "policy",
        "timestamp": utc_stamp(),
        "settings": {k: getattr(args, k) for k in ("decisions", "duration", "warmup", "rounds", "no_e2e")},
        "environment": describe(REPO),
    }
    print("decisions ...", flush=True)
    result["decisions"] = measure_decisions(args.decisions)
    print("policy step ...", flush=True)
    result["step"] = measure_step(args.decisions)
    if not args.no_e2e:
        workdir = Path(tempfile.mkdtemp(prefix="ire-bench-policy-"))
        try:
            print("end to end ...", flush=True)
            result["e2e"] = measure_e2e(args, workdir)
        except (BenchError, ServerStartError) as exc:
            print(f"bench.policy: {exc}", file=sys.stderr)
            return 1
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    path = save_results("policy", result, result["timestamp"])
    print()
    print(render(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
