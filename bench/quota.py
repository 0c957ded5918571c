"""Quota admission cost per call: ``python -m bench.quota``.

Measures admit + release for one tenant, in the same run:
- an empty coroutine round trip (the floor of any async call);
- the embedded store;
- the Redis store on loopback (a real redis-server started for the run).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from supervisor.quota import TIER_DEFAULTS
from supervisor.quota.memory import MemoryQuotaStore
from supervisor.quota.redis import RedisQuotaStore
from supervisor.quota.store import QuotaStore
from tests.redis_server import redis_server

LIMITS = replace(TIER_DEFAULTS["premium"], rate=1e9, burst=10**9, daily=10**12)


async def _timed(store: QuotaStore | None, n: int) -> tuple[list[float], list[float]]:
    """Microseconds per admit and per release."""
    admits, releases = [], []
    for i in range(n + min(n, 1000)):
        start = time.perf_counter_ns()
        ticket = await store.admit("bench", LIMITS) if store else None
        middle = time.perf_counter_ns()
        if store and ticket:
            await store.release(ticket, success=True)
        else:
            await asyncio.sleep(0)
        end = time.perf_counter_ns()
        if i >= min(n, 1000):  # warm-up excluded
            admits.append((middle - start) / 1000)
            releases.append((end - middle) / 1000)
    return admits, releases


def _row(name: str, timings: tuple[list[float], list[float]]) -> None:
    admit, release = (sorted(t) for t in timings)
    cells = [statistics.median(admit), admit[int(len(admit) * 0.99)], statistics.median(release)]
    print(f"{name:<28}" + "".join(f"{c:>12.2f}" for c in cells))


async def _main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ire-bench-quota-") as tmp:
        memory = MemoryQuotaStore(Path(tmp) / "quota.db")
        with redis_server(Path(tmp)) as url:
            redis = RedisQuotaStore(url)
            print(f"{n} calls; microseconds")
            print(f"{'store':<28}{'admit p50':>12}{'admit p99':>12}{'release p50':>12}")
            _row("no store (loop floor)", await _timed(None, n))
            _row("embedded (memory+SQLite)", await _timed(memory, n))
            _row("redis on loopback", await _timed(redis, max(1000, n // 10)))
            await redis.close()
        await memory.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=50_000)
    asyncio.run(_main(parser.parse_args(argv).n))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
