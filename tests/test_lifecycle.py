"""SIGTERM during load drains: calls in flight finish, later ones are refused cleanly.

Several client threads keep predicting while the server is told to stop. Each call either
completes OK or is refused as UNAVAILABLE before it started; none is cut mid-call
(a reset or closed socket), and the audit log verifies afterwards.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import numpy as np

from supervisor.audit import read_records
from supervisor.client import build_request
from tests.conftest import ire, make_home, start_server

BROKEN = ("Socket closed", "Connection reset", "Broken pipe", "RST_STREAM", "Stream removed")


def test_sigterm_during_load_drains_without_broken_calls(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    registry = home.registry()
    registry.set_quota_overrides("acme", {"rate": 100000, "burst": 100000, "concurrency": 64})
    registry.close()
    server = start_server(home, {"IRE_SERVER__GRACE_SECONDS": "20"})
    request = build_request("mlp", {"input": np.zeros((8, 64), np.float32)}, {"input": "FP32"})
    stop = threading.Event()
    outcomes: list[tuple[str, str]] = []
    lock = threading.Lock()

    def client() -> None:
        channel = grpc.insecure_channel(server.address)
        stub = server.stub().__class__(channel)
        metadata = server.metadata()
        while not stop.is_set():
            try:
                stub.ModelInfer(request, metadata=metadata, timeout=30)
                outcome = ("OK", "")
            except grpc.RpcError as exc:
                outcome = (exc.code().name, exc.details() or "")
            with lock:
                outcomes.append(outcome)
            if outcome[0] != "OK":
                break
        channel.close()

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    time.sleep(2.0)
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=60) == 0
    stop.set()
    for t in threads:
        t.join(timeout=60)
    codes = {code for code, _ in outcomes}
    assert "OK" in codes
    assert codes <= {"OK", "UNAVAILABLE"}, outcomes[-10:]
    broken = [details for code, details in outcomes if any(b in details for b in BROKEN)]
    assert not broken, broken
    assert ire("audit", "verify", home=home.root).returncode == 0
    allowed = [r for r in read_records(home.audit_dir) if r["action"] == "predict" and r["outcome"] == "allowed"]
    assert len(allowed) == sum(code == "OK" for code, _ in outcomes)
    log = server.log()
    assert log.index("stopping") < log.index("stopped")
