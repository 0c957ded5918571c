"""Quota arithmetic and both stores, under concurrency: exactly the limit is admitted.

The Redis tests start a real redis-server and run two stores in two separate processes
against it, as two supervisors of a fleet would.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.errors import InvalidInputError, QuotaExceededError, QuotaStoreUnavailableError
from supervisor.quota import TIER_DEFAULTS, effective_limits, parse_overrides
from supervisor.quota.bucket import Bucket, refill, wait_for_token
from supervisor.quota.limits import parse_size
from supervisor.quota.memory import MemoryQuotaStore
from supervisor.quota.redis import RedisQuotaStore
from supervisor.quota.store import check_request
from tests.redis_server import redis_server

BASE = replace(TIER_DEFAULTS["standard"], rate=1000.0, burst=10_000, concurrency=10_000, daily=10_000_000)


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def _admit_many(store, tenant: str, limits, n: int) -> tuple[int, list[str]]:
    async def one():
        try:
            return await store.admit(tenant, limits)
        except QuotaExceededError as exc:
            return exc.limit

    results = await asyncio.gather(*(one() for _ in range(n)))
    admitted = [r for r in results if not isinstance(r, str)]
    return len(admitted), [r for r in results if isinstance(r, str)]


# Pure arithmetic


@settings(max_examples=300, deadline=None)
@given(rate=st.floats(0.1, 1000), burst=st.integers(1, 100), steps=st.lists(st.floats(-5, 5), max_size=30))
def test_bucket_never_exceeds_burst_or_refills_backwards(rate: float, burst: int, steps: list[float]) -> None:
    now = 1000.0
    bucket = refill(None, rate, burst, now)
    for step in steps:
        now += step
        before = bucket.tokens
        bucket = refill(bucket, rate, burst, now)
        assert 0 <= bucket.tokens <= burst
        if step <= 0:
            assert bucket.tokens == before  # a clock stepping back adds nothing
        if bucket.tokens >= 1:
            bucket = Bucket(bucket.tokens - 1, bucket.updated)


def test_wait_for_token_is_exact() -> None:
    assert wait_for_token(Bucket(0.25, 0.0), rate=2.0) == pytest.approx(0.375)
    assert wait_for_token(Bucket(1.0, 0.0), rate=2.0) == 0.0


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param({"ratee": 1}, "unknown quota 'ratee'", id="typo"),
        pytest.param({"rate": -1}, "expected a positive float", id="negative_rate"),
        pytest.param({"burst": 1.5}, "expected a positive int", id="fractional_burst"),
        pytest.param({"daily": True}, "expected a number", id="bool"),
        pytest.param({"gpu": "all"}, "MIG profile", id="bad_gpu"),
    ],
)
def test_bad_quota_override_refused(raw: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        parse_overrides(raw)


def test_overrides_apply_over_tier_defaults() -> None:
    limits = effective_limits("free", {"daily": 5, "gpu": "1g.18gb"})
    assert limits.daily == 5 and limits.gpu == "1g.18gb"
    assert limits.rate == TIER_DEFAULTS["free"].rate


def test_sizes_parse() -> None:
    assert parse_size("256M") == 256 * 1024**2
    assert parse_size("2Gi") == 2 * 1024**3
    assert parse_size("1048576") == 1048576
    with pytest.raises(InvalidInputError):
        parse_size("lots")


def test_request_limits_name_the_limit() -> None:
    limits = replace(BASE, max_request_bytes=100, max_batch=4)
    with pytest.raises(QuotaExceededError) as info:
        check_request(limits, 101, 1)
    assert info.value.limit == "max_request_bytes"
    with pytest.raises(QuotaExceededError) as info:
        check_request(limits, 10, 5)
    assert info.value.limit == "max_batch"


# The embedded store


@pytest.fixture
def memory_store(tmp_path: Path) -> Iterator[MemoryQuotaStore]:
    clock = FakeClock()
    store = MemoryQuotaStore(tmp_path / "quota.db", clock=clock)
    store.clock = clock  # type: ignore[attr-defined]
    yield store


async def test_daily_quota_admits_exactly_n_of_64_concurrent(memory_store: MemoryQuotaStore) -> None:
    admitted, refused = await _admit_many(memory_store, "acme", replace(BASE, daily=17), 64)
    assert admitted == 17
    assert set(refused) == {"daily"}


async def test_concurrency_limit_is_exact_and_freed_on_release(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, concurrency=5)
    tickets = [await memory_store.admit("acme", limits) for _ in range(5)]
    with pytest.raises(QuotaExceededError) as info:
        await memory_store.admit("acme", limits)
    assert info.value.limit == "concurrency"
    await memory_store.release(tickets[0], success=True)
    await memory_store.admit("acme", limits)


async def test_rate_limit_admits_burst_then_rate(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, rate=10.0, burst=20)
    admitted, refused = await _admit_many(memory_store, "acme", limits, 64)
    assert admitted == 20 and set(refused) == {"rate"}
    with pytest.raises(QuotaExceededError) as info:
        await memory_store.admit("acme", limits)
    assert info.value.retry_after == pytest.approx(0.1)
    memory_store.clock.now += 1.0  # type: ignore[attr-defined]
    admitted, _ = await _admit_many(memory_store, "acme", limits, 64)
    assert admitted == 10


async def test_failed_call_gives_back_its_daily_count(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, daily=1)
    ticket = await memory_store.admit("acme", limits)
    await memory_store.release(ticket, success=False)
    ticket = await memory_store.admit("acme", limits)
    await memory_store.release(ticket, success=True)
    with pytest.raises(QuotaExceededError, match="daily"):
        await memory_store.admit("acme", limits)


async def test_rejection_takes_nothing(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, concurrency=1, daily=100)
    await memory_store.admit("acme", limits)
    for _ in range(10):
        with pytest.raises(QuotaExceededError):
            await memory_store.admit("acme", limits)
    assert (await memory_store.usage("acme", limits)).daily_used == 1


async def test_daily_counter_rolls_over_at_utc_midnight(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, daily=1)
    memory_store.clock.now = 86400 * 20000 - 1  # type: ignore[attr-defined]
    await memory_store.admit("acme", limits)
    with pytest.raises(QuotaExceededError) as info:
        await memory_store.admit("acme", limits)
    assert info.value.retry_after == pytest.approx(1.0)
    memory_store.clock.now += 2  # type: ignore[attr-defined]
    await memory_store.admit("acme", limits)


async def test_tenants_do_not_share_counters(memory_store: MemoryQuotaStore) -> None:
    limits = replace(BASE, daily=1)
    await memory_store.admit("acme", limits)
    await memory_store.admit("globex", limits)


async def test_restart_keeps_daily_usage(tmp_path: Path) -> None:
    clock = FakeClock()
    limits = replace(BASE, daily=10)
    store = MemoryQuotaStore(tmp_path / "q.db", clock=clock)
    for _ in range(7):
        await store.release(await store.admit("acme", limits), success=True)
    await store.close()
    again = MemoryQuotaStore(tmp_path / "q.db", clock=clock)
    assert (await again.usage("acme", limits)).daily_used == 7
    admitted, _ = await _admit_many(again, "acme", limits, 64)
    assert admitted == 3
    await again.close()


# The Redis store


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def _flush(url: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    await client.flushall()
    await client.aclose()


def _process_admits(url: str, tenant: str, limits_kwargs: dict[str, float], n: int, start_at: float, out) -> None:
    async def run() -> None:
        store = RedisQuotaStore(url)
        while time.time() < start_at:
            await asyncio.sleep(0.001)
        admitted, refused = await _admit_many(store, tenant, replace(BASE, **limits_kwargs), n)
        await store.close()
        out.put((admitted, refused))

    asyncio.run(run())


def _two_supervisors(
    url: str, tenant: str, limits_kwargs: dict[str, float], per_process: int = 32
) -> tuple[int, set[str]]:
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 1.5
    procs = [
        ctx.Process(target=_process_admits, args=(url, tenant, limits_kwargs, per_process, start_at, out))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    return sum(r[0] for r in results), {x for r in results for x in r[1]}


async def test_redis_daily_quota_exact_across_two_supervisors(redis_url: str) -> None:
    await _flush(redis_url)
    admitted, refused = _two_supervisors(redis_url, "acme", {"daily": 23})
    assert admitted == 23 and refused == {"daily"}


async def test_redis_concurrency_limit_exact_across_two_supervisors(redis_url: str) -> None:
    await _flush(redis_url)
    admitted, refused = _two_supervisors(redis_url, "acme", {"concurrency": 9})
    assert admitted == 9 and refused == {"concurrency"}


async def test_redis_rate_limit_exact_across_two_supervisors(redis_url: str) -> None:
    await _flush(redis_url)
    # A slow refill keeps the measured window's refill below one token.
    admitted, refused = _two_supervisors(redis_url, "acme", {"rate": 0.01, "burst": 15})
    assert admitted == 15 and refused == {"rate"}


async def test_redis_failed_call_gives_back_daily_and_slot(redis_url: str) -> None:
    await _flush(redis_url)
    store = RedisQuotaStore(redis_url)
    limits = replace(BASE, daily=1, concurrency=1)
    ticket = await store.admit("acme", limits)
    usage = await store.usage("acme", limits)
    assert (usage.in_flight, usage.daily_used) == (1, 1)
    await store.release(ticket, success=False)
    usage = await store.usage("acme", limits)
    assert (usage.in_flight, usage.daily_used) == (0, 0)
    await store.close()


async def test_redis_lease_of_a_dead_supervisor_expires(redis_url: str) -> None:
    await _flush(redis_url)
    store = RedisQuotaStore(redis_url, lease_seconds=0.2)
    limits = replace(BASE, concurrency=1)
    await store.admit("acme", limits)  # never released: its supervisor "died"
    with pytest.raises(QuotaExceededError):
        await store.admit("acme", limits)
    await asyncio.sleep(0.3)
    await store.admit("acme", limits)
    await store.close()


async def test_redis_down_refuses(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        pass  # started and stopped: nothing listens there now
    store = RedisQuotaStore(url, timeout_seconds=0.2)
    with pytest.raises(QuotaStoreUnavailableError):
        await store.admit("acme", BASE)
    await store.close()
