"""The audit log under a real `ire serve`: SIGKILL under load, and a full disk."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

from supervisor.audit import read_records
from supervisor.audit.verify import verify_log
from supervisor.client import build_request
from tests.conftest import Server, ire, make_home, start_server, stop_server


def _request() -> object:
    x = np.ones((1, 64), np.float32)
    return build_request("mlp", {"input": x}, {"input": "FP32"})


class Load:
    """A few concurrent clients; keeps the request id of every reply that arrived."""

    def __init__(self, server: Server, clients: int = 3, max_calls: int = 3000) -> None:
        self.answered: set[str] = set()
        self.codes: list[grpc.StatusCode] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = server
        self._max_calls = max_calls
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        stub, metadata, request = self._server.stub(), self._server.metadata(), _request()
        for _ in range(self._max_calls):  # bounded, whatever happens
            if self._stop.is_set():
                return
            try:
                _, call = stub.ModelInfer.with_call(request, metadata=metadata, timeout=10)
            except grpc.RpcError as exc:
                with self._lock:
                    self.codes.append(exc.code())
                if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                    time.sleep(0.01)
                continue
            request_id = dict(call.trailing_metadata())["x-request-id"]
            with self._lock:
                self.answered.add(request_id)
                self.codes.append(grpc.StatusCode.OK)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


@pytest.mark.slow
def test_audit_sigkill_under_load_every_answered_call_recorded(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    server = start_server(home)
    with Load(server) as load:
        deadline = time.monotonic() + 30
        while len(load.answered) < 150 and time.monotonic() < deadline:
            time.sleep(0.05)
        server.process.kill()  # SIGKILL mid-load: no shutdown checkpoint, no final fsync
        server.process.wait(timeout=30)
    answered = set(load.answered)
    assert len(answered) >= 150
    restarted = start_server(home)
    try:
        assert ire("audit", "verify", home=home.root).returncode == 0
        recorded = {r["request_id"] for r in read_records(home.audit_dir)}
        assert answered <= recorded, f"{len(answered - recorded)} answered calls have no record"
    finally:
        assert stop_server(restarted) == 0
    # The graceful stop signed everything: nothing is left covered by the chain alone.
    report = verify_log(home.audit_dir, home_public_key(home.root))
    assert report.unsigned_tail == 0


def home_public_key(root: Path) -> object:
    from supervisor.audit import AuditKey

    return AuditKey.load(root / "keys" / "audit.pem").public


@pytest.mark.root
@pytest.mark.slow
def test_audit_disk_full_refuses_predictions_never_unaudited(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    audit_dir = home.audit_dir
    # A filesystem of 96 KiB for the audit directory: room for about a hundred records.
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(audit_dir)], check=True)
    try:
        server = start_server(home)
        try:
            with Load(server, clients=2, max_calls=1500) as load:
                deadline = time.monotonic() + 60
                while grpc.StatusCode.UNAVAILABLE not in load.codes and time.monotonic() < deadline:
                    time.sleep(0.05)
                time.sleep(0.5)  # keep calling with the disk full
            codes = list(load.codes)
            assert grpc.StatusCode.UNAVAILABLE in codes, "the disk never filled"
            first_refusal = codes.index(grpc.StatusCode.UNAVAILABLE)
            # The refusal is sticky: once the log failed, no call is answered after it.
            assert grpc.StatusCode.OK not in codes[first_refusal + len(load._threads) :]
            recorded = {r["request_id"] for r in read_records(audit_dir)}
            assert load.answered and load.answered <= recorded
        finally:
            stop_server(server)
        assert ire("audit", "verify", home=home.root).returncode == 0
    finally:
        subprocess.run(["umount", str(audit_dir)], check=True)
