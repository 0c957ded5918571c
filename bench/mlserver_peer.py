"""Run MLServer 1.7.1 as a benchmark peer, serving one ONNX model over its gRPC (OIP v2).

Run with the peer's own interpreter (``bench/.venv-mlserver/bin/python``, made by
``bench.mlserver_env``), never IRE's: this module uses only the standard library. It writes
an MLServer config folder (settings.json, model-settings.json and the custom runtime
``bench/_mlserver_model.py``), starts ``mlserver start`` on loopback ports it picks, waits
until the gRPC port accepts connections, prints ``MLSERVER serving on HOST:PORT`` and
forwards SIGTERM to MLServer. MLServer keeps its defaults otherwise (one parallel worker).

    bench/.venv-mlserver/bin/python bench/mlserver_peer.py --model model.onnx --name mlp --dir /tmp/x
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

HERE = Path(__file__).resolve().parent
START_TIMEOUT_SECONDS = 120.0
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, model: Path, name: str) -> int:
    """The settings folder ``mlserver start`` reads; returns the gRPC port."""
    grpc_port = _free_port()
    settings = {
        "host": HOST,
        "grpc_port": grpc_port,
        "http_port": _free_port(),
        "metrics_port": _free_port(),
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_dir = folder / name
    model_dir.mkdir(parents=True)
    shutil.copy(HERE / "_mlserver_model.py", model_dir / "ire_bench_onnx.py")
    model_settings = {
        "name": name,
        "implementation": "ire_bench_onnx.OnnxModel",
        "parameters": {"uri": str(model.resolve())},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    return grpc_port


def _wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, required=True, help="path of the .onnx file")
    p.add_argument("--name", default="mlp")
    p.add_argument("--dir", type=Path, required=True, help="an empty folder for MLServer's config")
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    port = write_config(args.dir, args.model, args.name)
    mlserver = Path(sys.executable).parent / "mlserver"
    process = subprocess.Popen([str(mlserver), "start", str(args.dir)], cwd=args.dir)

    def _forward(signum: int, frame: FrameType | None) -> None:
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, _forward)
    signal.signal(signal.SIGINT, _forward)
    if not _wait_for_port(port, process, START_TIMEOUT_SECONDS):
        process.kill()
        print(f"mlserver did not open {HOST}:{port} (exit status {process.poll()})", file=sys.stderr)
        return 1
    # The gRPC port opens before the model is loaded; the load generator's first call waits.
    print(f"MLSERVER serving on {HOST}:{port}", flush=True)
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
