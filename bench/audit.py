"""Audit log benchmarks: appends per second with group commit, hot-path cost, verify time.

    python -m bench.audit                       # 200k appends, 100k-record verify
    python -m bench.audit --verify-records 1000000

- throughput: one process appends realistic call records back to back while the group
  commit thread fsyncs every ``audit.fsync_interval_ms`` (target: at least 50,000/s);
- hot path: each ``append`` timed alone, p50/p90/p99 (target: p50 at most 20 µs);
- verify: wall time of the real ``ire audit verify`` command (a subprocess) on a home
  holding N records.

The log lives on the machine's disk (not tmpfs), so the fsyncs are real.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench._environment import describe
from bench._results import save_results
from supervisor.audit import AuditRecord, AuditWriter
from supervisor.home import Home

REPO = Path(__file__).resolve().parent.parent


def call_record(i: int) -> dict[str, Any]:
    """A record shaped like a served prediction's."""
    return AuditRecord(
        time=time.time(),
        request_id=uuid.uuid4().hex,
        action="predict",
        tenant="acme",
        principal="acme-service",
        model="mlp",
        model_version="1",
        model_sha256="9f" * 32,
        outcome="allowed",
        status="OK",
        latency_ms=1.234 + (i % 97) / 1000,
        input_sha256="ab" * 32,
        output_sha256="cd" * 32,
        peer="ipv4:127.0.0.1:54321",
        detail={"policy_revision": "r42", "device": "cpu"},
    ).to_dict()


def _records(n: int) -> list[dict[str, Any]]:
    """``n`` records differing in request id, time and latency; the other values shared, as
    a server's records share the tenant, model and digest strings of a busy model."""
    base = call_record(0)
    out = []
    for i in range(n):
        rec = dict(base)
        rec["request_id"] = f"{i:032x}"
        rec["time"] = base["time"] + i / 1e4
        rec["latency_ms"] = 1.234 + (i % 97) / 1000
        out.append(rec)
    return out


def bench_throughput(home: Home, n: int) -> dict[str, Any]:
    """Back-to-back appends; each record is made in the loop, as the server makes one per call."""
    base = call_record(0)
    ids = [f"{i:032x}" for i in range(n)]
    writer = AuditWriter.for_home(home)
    started = time.perf_counter()
    for i in range(n):
        rec = dict(base)
        rec["request_id"] = ids[i]
        writer.append(rec)
    elapsed = time.perf_counter() - started
    writer.close(strict=True)
    return {"records": n, "seconds": round(elapsed, 3), "appends_per_s": round(n / elapsed)}


def bench_hot_path(home: Home, n: int) -> dict[str, Any]:
    base = call_record(0)
    ids = [f"{i:032x}" for i in range(n)]
    writer = AuditWriter.for_home(home)
    clock = time.perf_counter_ns
    samples = []
    for i in range(n):
        rec = dict(base)
        rec["request_id"] = ids[i]
        t0 = clock()
        writer.append(rec)
        samples.append(clock() - t0)
    writer.close(strict=True)
    samples.sort()

    def pct(p: float) -> float:
        return round(samples[min(len(samples) - 1, int(p * len(samples)))] / 1000, 2)

    return {"calls": n, "p50_us": pct(0.50), "p90_us": pct(0.90), "p99_us": pct(0.99), "max_us": pct(1.0)}


def bench_verify(home: Home, n: int) -> dict[str, Any]:
    writer = AuditWriter.for_home(home)
    base = _records(1)[0]
    for i in range(n):
        rec = dict(base)
        rec["request_id"] = f"{i:032x}"
        writer.append(rec)
    writer.close(strict=True)
    size = sum(p.stat().st_size for p in home.audit_dir.glob("seg-*.jsonl"))
    env = dict(os.environ, IRE_HOME=str(home.root))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", "audit", "verify", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"ire audit verify failed ({proc.returncode}): {proc.stderr}")
    report = json.loads(proc.stdout)
    return {
        "records": n,
        "entries": report["entries"],
        "log_mib": round(size / 2**20, 1),
        "seconds": round(elapsed, 2),
        "entries_per_s": round(report["entries"] / elapsed),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="appends for the throughput run")
    parser.add_argument("--hot-path-calls", type=int, default=50_000)
    parser.add_argument("--verify-records", type=int, default=100_000, help="1000000 for the 1M figure")
    parser.add_argument("--rounds", type=int, default=3, help="throughput and hot-path rounds (median kept)")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary homes go (default: /var/tmp)")
    args = parser.parse_args(argv)
    base = args.dir or Path("/var/tmp")
    with tempfile.TemporaryDirectory(prefix="ire-bench-audit-", dir=base) as tmp:
        root = Path(tmp)
        throughput = [bench_throughput(Home.init(root / f"t{r}"), args.records) for r in range(args.rounds)]
        hot = [bench_hot_path(Home.init(root / f"h{r}"), args.hot_path_calls) for r in range(args.rounds)]
        verify = bench_verify(Home.init(root / "v"), args.verify_records)
    result = {
        "throughput": throughput,
        "throughput_median_per_s": statistics.median(t["appends_per_s"] for t in throughput),
        "hot_path": hot,
        "hot_path_p50_us": statistics.median(h["p50_us"] for h in hot),
        "hot_path_p99_us": statistics.median(h["p99_us"] for h in hot),
        "verify": verify,
        "environment": describe(REPO),
    }
    print("| measure | value | target |")
    print("| --- | --- | --- |")
    print(
        f"| appends/s, group commit ({args.records} records, median of {args.rounds}) | "
        f"{result['throughput_median_per_s']:,} | ≥ 50,000 |"
    )
    print(
        f"| hot-path append p50 / p99 ({args.hot_path_calls} calls) | "
        f"{result['hot_path_p50_us']} µs / {result['hot_path_p99_us']} µs | p50 ≤ 20 µs |"
    )
    print(
        f"| `ire audit verify`, {verify['records']:,} records ({verify['log_mib']} MiB) | "
        f"{verify['seconds']} s ({verify['entries_per_s']:,} entries/s) | |"
    )
    print(f"results: {save_results('audit', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
