"""The sandbox seen through `ire serve`: OOM reported over gRPC, the confinement report,
cleanup of cgroups and zombies, the subreaper, and the refusal to serve unconfined."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper

from sandbox.confine import LAYERS
from supervisor.client import build_request, decode_response
from supervisor.signing.onboard import local_signer, sign_and_register
from tests.conftest import Server, make_home, start_server, stop_server, write_model

pytestmark = pytest.mark.root


def _bomb_model() -> bytes:
    """``y = ConstantOfShape(n)``: the caller picks how many floats the worker allocates."""
    graph = helper.make_graph(
        [
            helper.make_node(
                "ConstantOfShape", ["n"], ["y"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])
            )
        ],
        "bomb",
        [helper.make_tensor_value_info("n", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["d"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    return onnx.shape_inference.infer_shapes(model).SerializeToString()


def _mlp_call() -> object:
    return build_request("mlp", {"input": np.ones((1, 64), np.float32)}, {"input": "FP32"})


def _scope_dirs(launcher_pid: int) -> list[Path]:
    return [p for p in Path("/sys/fs/cgroup").glob(f"**/ire/l-{launcher_pid}") if p.is_dir()]


def _launcher_pid(server: Server) -> int:
    (launcher,) = [
        p for p in psutil.Process(server.process.pid).children() if "sandbox.launcher" in " ".join(p.cmdline())
    ]
    return launcher.pid


def test_worker_oom_is_resource_exhausted_and_counted(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    registry = home.registry()
    key = local_signer(registry, tmp_path / "signing")
    sign_and_register(home, registry, "globex", "bomb", write_model(tmp_path / "m-bomb", _bomb_model()), key, "1")
    registry.close()
    server = start_server(home)
    try:
        stub, md = server.stub(), server.metadata("globex")
        # 2^28 floats are 1 GiB: twice the free tier's 512 MiB.
        bomb = build_request("bomb", {"n": np.array([2**28], np.int64)}, {"n": "INT64"})
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(bomb, metadata=md, timeout=60)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details().startswith("worker exceeded its memory limit")
        # The tenant gets a fresh worker on the next call.
        small = build_request("bomb", {"n": np.array([4], np.int64)}, {"n": "INT64"})
        assert decode_response(stub.ModelInfer(small, metadata=md, timeout=60))["y"].tolist() == [1.0] * 4
    finally:
        stop_server(server)
    records = [r for r in server.audit() if r.get("model") == "bomb"]
    assert [r["status"] for r in records] == ["RESOURCE_EXHAUSTED", "OK"]
    assert re.search(r'"oom_kills": 1, "event": "worker exceeded its memory limit"', server.log())


def test_worker_started_log_carries_confinement_report(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"))
    try:
        server.stub().ModelInfer(_mlp_call(), metadata=server.metadata(), timeout=30)
        launcher = _launcher_pid(server)
        assert _scope_dirs(launcher), "the launcher's cgroup scope exists while it serves"
    finally:
        assert stop_server(server) == 0
    (line,) = [line for line in server.log().splitlines() if '"worker started"' in line]
    for layer in LAYERS:
        assert f'"{layer}' in line, f"{layer} missing from {line}"
    assert '"uid": 200001' in line
    assert _scope_dirs(launcher) == [], "no cgroup is left behind after a clean stop"


def test_stale_cgroups_of_a_killed_supervisor_are_removed_at_next_start(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    server = start_server(home)
    server.stub().ModelInfer(_mlp_call(), metadata=server.metadata(), timeout=30)
    launcher = _launcher_pid(server)
    server.process.kill()  # no cleanup at all: the launcher dies of its death signal
    server.process.wait()
    deadline = time.monotonic() + 10
    while psutil.pid_exists(launcher) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _scope_dirs(launcher), "a SIGKILLed supervisor leaves its scope behind"
    server = start_server(home)
    try:
        assert _scope_dirs(launcher) == []
    finally:
        stop_server(server)


def test_orphans_of_a_dead_launcher_are_reaped_by_the_supervisor(tmp_path: Path) -> None:
    server = start_server(make_home(tmp_path / "home"))
    try:
        server.stub().ModelInfer(_mlp_call(), metadata=server.metadata(), timeout=30)
        launcher = _launcher_pid(server)
        os.kill(launcher, signal.SIGKILL)
        supervisor = psutil.Process(server.process.pid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and "reaped an orphaned sandbox process" not in server.log():
            time.sleep(0.1)
        time.sleep(0.5)
        # The launcher itself is left to its Popen; the adopted shim and worker are reaped.
        assert [c.pid for c in supervisor.children()] in ([], [launcher])
        assert "reaped an orphaned sandbox process" in server.log()
    finally:
        server.process.kill()
        server.process.wait()


def _serve(home: Path, *extra: str) -> subprocess.Popen[str]:
    log = (home.parent / "serve.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0", *extra],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=dict(os.environ, IRE_HOME=str(home)),
    )
    log.close()
    return process


def test_serve_refuses_when_workers_cannot_be_confined(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    # A cgroup parent IRE refuses to use stands in for a host without usable cgroups.
    home.config.write_text(home.config.read_text().replace('cgroup_parent = "ire"', 'cgroup_parent = "../escape"'))
    process = _serve(home.root)
    assert process.wait(timeout=60) == 1
    log = (home.root.parent / "serve.log").read_text()
    assert "cannot confine tenant workers on this host" in log and "--unsafe-no-sandbox" in log


def test_unsafe_no_sandbox_warns_on_every_call(tmp_path: Path) -> None:
    home = make_home(tmp_path / "home")
    home.config.write_text(home.config.read_text().replace('cgroup_parent = "ire"', 'cgroup_parent = "../escape"'))
    process = _serve(home.root, "--unsafe-no-sandbox")
    try:
        assert process.stdout is not None
        address = process.stdout.readline().split()[-1]
        server = Server(home, address, process)  # type: ignore[arg-type]
        for _ in range(3):
            server.stub().ModelInfer(_mlp_call(), metadata=server.metadata(), timeout=30)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    log = (home.root.parent / "serve.log").read_text()
    assert log.count("UNSAFE: serving a call with an unconfined worker") == 3
    (line,) = [line for line in log.splitlines() if '"worker started"' in line]
    assert '"confinement": []' in line


def test_launcher_names_the_threads_it_finds_when_it_refuses_to_fork() -> None:
    # A launcher that finds more threads than it started with refuses to fork (fork would
    # copy locks held by threads that do not exist in the child); the refusal names them,
    # so the library that started one can be found.
    from sandbox import _prctl, launcher

    named, done = threading.Event(), threading.Event()

    def stray() -> None:
        _prctl.set_name("ire-stray")
        named.set()
        done.wait(10)

    thread = threading.Thread(target=stray)
    thread.start()
    try:
        assert named.wait(10)
        assert "ire-stray" in launcher.thread_names()
    finally:
        done.set()
        thread.join()
    # join() returns once the thread's Python state is gone; the kernel may list the thread
    # in /proc/self/task a moment longer, until it has exited.
    deadline = time.monotonic() + 5
    while "ire-stray" in launcher.thread_names() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "ire-stray" not in launcher.thread_names()


def test_launcher_starts_no_onnx_runtime_telemetry_threads() -> None:
    # ONNX Runtime 1.29+ starts a telemetry uploader at import: a thread that later starts
    # short-lived threads of its own (and tries to upload). A thread that appears between
    # spawns makes the launcher refuse to fork, so a spawn failed now and then; the
    # launcher switches telemetry off before importing ORT and runs on its main thread alone.
    from supervisor.workers.launcher import LauncherClient

    client = LauncherClient.start(cgroup_parent="ire-test")
    try:
        tasks = Path(f"/proc/{client.pid}/task")
        names = [(task / "comm").read_text().strip() for task in tasks.iterdir()]
        assert len(names) == 1, f"the launcher runs {len(names)} threads: {names}"
    finally:
        client.close()
