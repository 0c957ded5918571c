"""The Prometheus endpoint after real traffic: per-tenant series, parsed by prometheus_client."""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.client import build_request
from tests.conftest import Server, make_home, start_server, stop_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    home = make_home(tmp_path_factory.mktemp("metrics") / "home")
    port = _free_port()
    env = {"IRE_METRICS__LISTEN": f"127.0.0.1:{port}", "IRE_METRICS__SAMPLE_SECONDS": "0.2"}
    server = start_server(home, env)
    yield server, port
    stop_server(server)


def _scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], name: str, **labels: str) -> list[Any]:
    family = families.get(name)
    if family is None:
        return []
    return [s for s in family.samples if all(s.labels.get(k) == v for k, v in labels.items())]


def test_scrape_after_traffic_shows_per_tenant_series(srv: tuple[Server, int]) -> None:
    server, port = srv
    request = build_request("mlp", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})
    for _ in range(3):
        server.stub().ModelInfer(request, metadata=server.metadata(), timeout=60)
    with pytest.raises(grpc.RpcError):  # a policy denial: predict with an admin-only token
        server.stub().ModelInfer(request, metadata=(("authorization", f"Bearer {server.token('acme', ('admin',))}"),))
    time.sleep(1.0)  # a few samples of the worker gauges
    families = _scrape(port)
    ok = _samples(families, "ire_calls", tenant="acme", model="acme/mlp", action="predict", status="OK")
    assert sum(s.value for s in ok if s.name == "ire_calls_total") == 3
    latency = _samples(families, "ire_call_latency_seconds", tenant="acme", action="predict")
    assert any(s.name == "ire_call_latency_seconds_count" and s.value >= 3 for s in latency)
    denied = _samples(families, "ire_policy_denials", tenant="acme", action="predict")
    assert sum(s.value for s in denied if s.name == "ire_policy_denials_total") == 1
    assert _samples(families, "ire_calls", tenant="acme", status="PERMISSION_DENIED")
    starts = _samples(families, "ire_worker_starts", tenant="acme")
    assert sum(s.value for s in starts if s.name == "ire_worker_starts_total") >= 1
    memory = _samples(families, "ire_worker_memory_bytes", tenant="acme")
    assert memory and memory[0].value > 0
    audit = _samples(families, "ire_audit_write_seconds")
    assert any(s.name == "ire_audit_write_seconds_count" and s.value >= 4 for s in audit)
    queued = _samples(families, "ire_queue_seconds", tenant="acme", model="acme/mlp")
    assert any(s.name == "ire_queue_seconds_count" and s.value == 3 for s in queued)
    backlog = _samples(families, "ire_audit_backlog_records")
    assert backlog and backlog[0].value >= 0


def test_unknown_model_names_do_not_grow_series(srv: tuple[Server, int]) -> None:
    server, port = srv
    for i in range(20):
        request = build_request(f"no-such-{i}", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})
        with pytest.raises(grpc.RpcError):
            server.stub().ModelInfer(request, metadata=server.metadata(), timeout=60)
    models = {s.labels.get("model") for s in _samples(_scrape(port), "ire_calls")}
    assert not any(m and m.startswith("acme/no-such-") for m in models)


def test_log_lines_of_a_call_carry_request_id_tenant_and_model(srv: tuple[Server, int]) -> None:
    server, _ = srv
    request = build_request("mlp", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})
    admin_only = (("authorization", f"Bearer {server.token('acme', ('admin',))}"),)
    with pytest.raises(grpc.RpcError) as info:
        server.stub().ModelInfer.with_call(request, metadata=admin_only, timeout=60)
    request_id = dict(info.value.trailing_metadata() or ())["x-request-id"]
    time.sleep(0.2)
    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert mine, "the refused call logged nothing"
    for line in mine:
        assert (line["tenant"], line["model"], line["action"]) == ("acme", "mlp", "predict"), line
