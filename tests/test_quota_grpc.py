"""Quotas through the real gRPC API: exact under 64 concurrent clients, with the embedded
store and with two supervisors sharing one Redis; rich RESOURCE_EXHAUSTED details; a
restart keeps the day's usage; Redis down refuses (fail closed) and is audited."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.rpc import error_details_pb2, status_pb2

from supervisor.client import build_request
from supervisor.home import Home
from tests.conftest import Server, make_home, start_server, stop_server
from tests.redis_server import redis_server

ROOT = Path(__file__).resolve().parent.parent


def _request():
    return build_request("mlp", {"input": np.ones((1, 64), np.float32)}, {"input": "FP32"})


def _set_quota(home: Home, tenant: str, **overrides: object) -> None:
    registry = home.registry()
    registry.set_quota_overrides(tenant, dict(overrides))
    registry.close()


def _fire(servers: list[Server], calls: int, clients: int = 64) -> Counter[str]:
    """``calls`` predictions from ``clients`` threads, spread over ``servers``; status counts."""
    stubs = [s.stub() for s in servers]
    mds = [s.metadata() for s in servers]

    def one(i: int) -> str:
        try:
            stubs[i % len(stubs)].ModelInfer(_request(), metadata=mds[i % len(mds)], timeout=60)
            return "OK"
        except grpc.RpcError as exc:
            return exc.code().name

    with ThreadPoolExecutor(clients) as pool:
        return Counter(pool.map(one, range(calls)))


def _details(error: grpc.RpcError) -> tuple[str, float | None]:
    trailers = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    limit, retry = "", None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            limit = info.metadata["limit"]
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry_info = error_details_pb2.RetryInfo()
            detail.Unpack(retry_info)
            retry = retry_info.retry_delay.ToTimedelta().total_seconds()
    return limit, retry


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return make_home(tmp_path / "home")


def test_daily_quota_exact_under_64_concurrent_clients(home: Home) -> None:
    _set_quota(home, "acme", daily=25, concurrency=256, rate=100000.0, burst=100000)
    server = start_server(home)
    try:
        counts = _fire([server], calls=100)
    finally:
        stop_server(server)
    assert counts == Counter({"OK": 25, "RESOURCE_EXHAUSTED": 75})


def test_quota_rejection_names_the_limit_with_retry_info(home: Home) -> None:
    _set_quota(home, "acme", rate=0.5, burst=1)
    server = start_server(home)
    try:
        server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=60)
        with pytest.raises(grpc.RpcError) as info:
            server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=60)
    finally:
        stop_server(server)
    error = info.value
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "quota 'rate' exceeded" in error.details()
    limit, retry = _details(error)
    assert limit == "rate" and retry is not None and 0 < retry <= 2.0
    assert dict(error.trailing_metadata())["retry-after"] in ("1", "2")
    record = next(r for r in server.audit() if r["status"] == "RESOURCE_EXHAUSTED")
    assert record["outcome"] == "denied" and record["tenant"] == "acme"


def test_restart_keeps_daily_usage(home: Home) -> None:
    _set_quota(home, "acme", daily=5)
    server = start_server(home)
    try:
        assert _fire([server], calls=3, clients=3) == Counter({"OK": 3})
    finally:
        stop_server(server)
    server = start_server(home)
    try:
        assert _fire([server], calls=5, clients=5) == Counter({"OK": 2, "RESOURCE_EXHAUSTED": 3})
    finally:
        stop_server(server)


def test_failed_calls_do_not_use_daily_quota(home: Home) -> None:
    _set_quota(home, "acme", daily=2)
    server = start_server(home)
    try:
        bad = build_request("mlp", {"input": np.ones((1, 3), np.float32)}, {"input": "FP32"})
        for _ in range(4):  # malformed: refused before admission
            with pytest.raises(grpc.RpcError):
                server.stub().ModelInfer(bad, metadata=server.metadata(), timeout=60)
        assert _fire([server], calls=3, clients=1) == Counter({"OK": 2, "RESOURCE_EXHAUSTED": 1})
    finally:
        stop_server(server)


def test_redis_daily_quota_exact_across_two_supervisors(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis-data") as url:
        env = {"IRE_QUOTA__STORE": "redis", "IRE_QUOTA__REDIS_URL": url}
        home = make_home(tmp_path / "home")
        _set_quota(home, "acme", daily=30, concurrency=256, rate=100000.0, burst=100000)
        servers = [start_server(home, env), start_server(home, env)]
        try:
            counts = _fire(servers, calls=96)
        finally:
            for server in servers:
                stop_server(server)
    assert counts == Counter({"OK": 30, "RESOURCE_EXHAUSTED": 66})


def test_redis_down_refuses_calls_and_is_audited(tmp_path: Path) -> None:
    with redis_server(tmp_path / "redis-data") as url:
        pass  # nothing listens there any more
    home = make_home(tmp_path / "home")
    server = start_server(home, {"IRE_QUOTA__STORE": "redis", "IRE_QUOTA__REDIS_URL": url})
    try:
        with pytest.raises(grpc.RpcError) as info:
            server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=60)
    finally:
        stop_server(server)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    record = next(r for r in server.audit() if r["action"] == "predict")
    assert (record["outcome"], record["status"]) == ("failed", "UNAVAILABLE")
    assert "quota store unavailable" in server.log()


def test_tritonclient_sees_resource_exhausted_with_the_limit(home: Home) -> None:
    _set_quota(home, "acme", daily=1)
    server = start_server(home)
    try:
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "triton_quota_probe.py"), server.address, server.token()],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
    finally:
        stop_server(server)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["first"] == "ok"
    assert result["second_status"] == "StatusCode.RESOURCE_EXHAUSTED"
    assert "quota 'daily' exceeded" in result["second_message"]
