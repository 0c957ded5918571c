"""Shared fixtures: a real home, a real `ire serve` subprocess on a free port, tokens.

Markers:
- root: needs root (namespaces, cgroups); CI runs as root.
- gpu: needs an NVIDIA GPU; skipped elsewhere.
- slow: takes more than a few seconds.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.home import Home
from supervisor.modelgraph.build import build_identity, build_int64_model, build_mlp
from supervisor.signing.onboard import local_signer, sign_and_register

OIP_DATATYPES = [
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "root: needs root privileges (namespaces, cgroups, uid changes)")
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU and driver")
    config.addinivalue_line("markers", "slow: takes more than a few seconds")


def _has_gpu() -> bool:
    try:
        import pynvml

        pynvml.nvmlInit()
        return bool(pynvml.nvmlDeviceGetCount())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_root = pytest.mark.skip(reason="needs root: run as root (CI does)")
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU with its driver (NVML); this machine has none")
    has_gpu = None
    for item in items:
        if "root" in item.keywords and os.geteuid() != 0:
            item.add_marker(skip_root)
        if "gpu" in item.keywords:
            has_gpu = _has_gpu() if has_gpu is None else has_gpu
            if not has_gpu:
                item.add_marker(skip_gpu)


def ire(
    *args: str, home: Path | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `ire` command line."""
    env = dict(os.environ)
    if home is not None:
        env["IRE_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "supervisor", *args], capture_output=True, text=True, env=env, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ire {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def write_model(directory: Path, data: bytes, name: str = "model.onnx") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(data)
    return directory


def make_home(root: Path) -> Home:
    """A home with tenants acme and globex; acme owns mlp, tokens (INT64) and one identity model per datatype."""
    home = Home.init(root)
    registry = home.registry()
    registry.create_tenant("acme", "standard")
    registry.create_tenant("globex", "free")
    key = local_signer(registry, root.parent / "signing")

    def add(tenant: str, name: str, data: bytes) -> None:
        sign_and_register(home, registry, tenant, name, write_model(root.parent / f"m-{tenant}-{name}", data), key, "1")

    add("acme", "mlp", build_mlp())
    add("acme", "tokens", build_int64_model())
    add("globex", "private", build_mlp(seed=3))
    for dt in OIP_DATATYPES:
        add("acme", f"id-{dt.lower()}", build_identity(dt))
    registry.close()
    return home


@dataclass
class Server:
    home: Home
    address: str
    process: subprocess.Popen[str]

    def token(self, tenant: str = "acme", scopes: tuple[str, ...] = ("predict",), ttl: int = 600) -> str:
        settings = self.home.settings()
        return self.home.issuer_key().issue(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            subject=f"{tenant}-test",
            tenant=tenant,
            scopes=scopes,
            ttl_seconds=ttl,
        )

    def metadata(self, tenant: str = "acme") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token(tenant)}"),)

    def stub(self) -> oip_grpc.GRPCInferenceServiceStub:
        return oip_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(self.address))

    def audit(self) -> list[dict[str, object]]:
        from supervisor.audit.writer import read_records

        return read_records(self.home.audit_dir)

    def log(self) -> str:
        return (self.home.root.parent / "serve.log").read_text()


def start_server(home: Home, extra_env: dict[str, str] | None = None) -> Server:
    env = dict(os.environ, IRE_HOME=str(home.root), **(extra_env or {}))
    # The server's log goes to a file: a pipe nobody drains would block the server.
    log = (home.root.parent / "serve.log").open("a")
    process = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=env,
    )
    log.close()
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        match = re.match(r"IRE serving on (\S+)", line)
        if match:
            return Server(home, match.group(1), process)
    process.kill()
    raise AssertionError(f"server did not start: {line!r} {(home.root.parent / 'serve.log').read_text()}")


def stop_server(server: Server) -> int:
    server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        raise


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("ire") / "home")
    srv = start_server(home)
    yield srv
    stop_server(srv)
