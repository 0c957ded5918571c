"""Worker failures: a worker killed mid-request, replaced on the next call, and audited."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import pytest

from supervisor.client import build_request, decode_response
from tests.conftest import Server, make_home, start_server, stop_server


@pytest.fixture
def fresh_server(tmp_path: Path):
    srv = start_server(make_home(tmp_path / "home"))
    yield srv
    stop_server(srv)


def _request():
    x = np.ones((1, 64), np.float32)
    return build_request("mlp", {"input": x}, {"input": "FP32"})


def _workers(server: Server) -> list[psutil.Process]:
    """The launcher is the supervisor's child; each of its children is a worker's shim,
    whose only child is the worker itself (pid 1 of its own pid namespace)."""
    launcher = [p for p in psutil.Process(server.process.pid).children() if "sandbox.launcher" in " ".join(p.cmdline())]
    assert len(launcher) == 1
    return [worker for shim in launcher[0].children() for worker in shim.children()]


def _wait_for(predicate, timeout: float = 10.0, describe=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not reached {describe()}".rstrip())


def _kernel_wait(pid: int) -> str:
    """Where in the kernel ``pid`` waits (its wchan and stack, when readable)."""
    parts = []
    for name in ("wchan", "stack"):
        try:
            parts.append(Path(f"/proc/{pid}/{name}").read_text().strip().replace("\n", " | "))
        except OSError:
            continue
    return " / ".join(parts)


def _survivors(processes: list[psutil.Process]) -> list[tuple[int, str, str, str]]:
    """(pid, name, status, kernel wait) of each process still running and not a zombie."""
    alive = []
    for p in processes:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                alive.append((p.pid, p.name(), p.status(), _kernel_wait(p.pid)))
        except psutil.NoSuchProcess:
            continue
    return alive


def test_worker_killed_mid_request_gives_unavailable_then_recovers(fresh_server: Server) -> None:
    server = fresh_server
    stub = server.stub()
    md = server.metadata()
    stub.ModelInfer(_request(), metadata=md, timeout=30)  # start the tenant's worker
    (worker,) = _workers(server)
    # Freeze the worker so the next call is certainly in flight when the worker dies.
    os.kill(worker.pid, signal.SIGSTOP)
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(stub.ModelInfer.with_call, _request(), metadata=md, timeout=30)
        time.sleep(0.5)
        assert not future.done(), "the call must be waiting on the frozen worker"
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as info:
            future.result()
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    crashed_id = dict(info.value.trailing_metadata())["x-request-id"]

    response, call = stub.ModelInfer.with_call(_request(), metadata=md, timeout=30)
    assert decode_response(response)["output"].shape == (1, 10)
    recovered_id = dict(call.trailing_metadata())["x-request-id"]
    (new_worker,) = _workers(server)
    assert new_worker.pid != worker.pid

    records = {r["request_id"]: r for r in server.audit()}
    assert (records[crashed_id]["outcome"], records[crashed_id]["status"]) == ("failed", "UNAVAILABLE")
    assert (records[recovered_id]["outcome"], records[recovered_id]["status"]) == ("allowed", "OK")


def _stopped_worker(server: Server) -> tuple[Any, tuple[tuple[str, str], ...], psutil.Process]:
    """A stub, its metadata and the tenant's worker, started by one call and then stopped."""
    stub = server.stub()
    md = server.metadata()
    stub.ModelInfer(_request(), metadata=md, timeout=30)
    (worker,) = _workers(server)
    os.kill(worker.pid, signal.SIGSTOP)
    return stub, md, worker


def test_all_calls_in_flight_fail_when_worker_dies(tmp_path: Path) -> None:
    # Batching off: all four calls are then at the worker when it dies. (With batching, the
    # calls that wait for the run ahead of them go to the next worker: the test below.)
    server = start_server(make_home(tmp_path / "home"), {"IRE_WORKERS__DYNAMIC_BATCHING": "off"})
    try:
        stub, md, worker = _stopped_worker(server)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(stub.ModelInfer, _request(), metadata=md, timeout=30) for _ in range(4)]
            time.sleep(0.5)
            os.kill(worker.pid, signal.SIGKILL)
            codes = []
            for f in futures:
                with pytest.raises(grpc.RpcError) as info:
                    f.result()
                codes.append(info.value.code())
        assert codes == [grpc.StatusCode.UNAVAILABLE] * 4
    finally:
        stop_server(server)


def test_batched_calls_waiting_behind_a_dead_workers_run_are_answered_by_the_next_worker(
    fresh_server: Server,
) -> None:
    server = fresh_server  # dynamic batching "auto": the MLP's calls merge
    stub, md, worker = _stopped_worker(server)
    with ThreadPoolExecutor(4) as pool:
        first = pool.submit(stub.ModelInfer, _request(), metadata=md, timeout=30)
        time.sleep(1.0)  # its run is at the stopped worker; the next calls wait behind it
        waiting = [pool.submit(stub.ModelInfer, _request(), metadata=md, timeout=30) for _ in range(3)]
        time.sleep(0.5)
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(grpc.RpcError) as info:
            first.result()
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        answers = [f.result() for f in waiting]
    assert all(len(a.raw_output_contents) == 1 for a in answers)
    (replacement,) = _workers(server)
    assert replacement.pid != worker.pid


def test_tenants_get_separate_workers(fresh_server: Server) -> None:
    server = fresh_server
    stub = server.stub()
    stub.ModelInfer(_request(), metadata=server.metadata("acme"), timeout=30)
    globex = build_request("private", {"input": np.ones((1, 64), np.float32)}, {"input": "FP32"})
    stub.ModelInfer(globex, metadata=server.metadata("globex"), timeout=30)
    assert len(_workers(server)) == 2


def test_sigterm_stops_workers_and_launcher(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"))
    server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=30)
    descendants = psutil.Process(server.process.pid).children(recursive=True)
    assert len(descendants) == 3  # launcher, and one worker with its shim
    assert stop_server(server) == 0
    _wait_for(lambda: not _survivors(descendants), describe=lambda: f"still running: {_survivors(descendants)}")


def test_supervisor_killed_takes_workers_down(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"))
    server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=30)
    descendants = psutil.Process(server.process.pid).children(recursive=True)
    server.process.kill()
    server.process.wait()
    _wait_for(lambda: not _survivors(descendants), describe=lambda: f"still running: {_survivors(descendants)}")


def test_model_swapped_in_store_is_refused_at_load(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    record = home.registry().find_model("acme", "mlp")
    stored = home.store_dir / f"{record.sha256}.onnx"
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[-10] ^= 0xFF  # one flipped byte in the last initializer
    stored.write_bytes(bytes(data))
    server = start_server(home)
    try:
        with pytest.raises(grpc.RpcError) as info:
            server.stub().ModelInfer(_request(), metadata=server.metadata(), timeout=30)
        assert info.value.code() == grpc.StatusCode.INTERNAL
        assert "sha256" not in info.value.details()
        (record_line,) = [r for r in server.audit() if r["action"] == "predict"]
        assert (record_line["outcome"], record_line["status"]) == ("failed", "INTERNAL")
        assert _workers(server) == [] or all(w.is_running() for w in _workers(server))
    finally:
        stop_server(server)
    assert "model integrity check failed" in server.log()
