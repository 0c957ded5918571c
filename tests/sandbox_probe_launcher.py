"""A launcher for the escape suite only: the production launcher, with a probe as the body.

Why this shape: the suite must attack a *real* worker (forked by the real launcher,
confined by the same ``sandbox.confine.spawn``) with arbitrary code, and a crafted ONNX
model cannot run Python. So the test harness starts this module instead of
``sandbox.launcher``: it reuses ``sandbox.launcher.main`` and only swaps the body that
runs after confinement. Production is unaffected by construction: no code path in
``sandbox/`` or ``supervisor/`` accepts a probe, this file lives under ``tests/`` (not in
the installed packages), and the gRPC API has no way to choose the launcher module.

Protocol on the worker socket (test-only, framed like the worker's): the probe sends
``{"report": [...]}``; the harness sends ``{"probe": NAME, "args": {...}, "strict": bool}``;
the probe answers with the probe's JSON result and then waits for the socket to close.
"""

from __future__ import annotations

import json
import socket
import sys

from protos import worker_pb2 as pb
from sandbox import launcher, seccomp
from sandbox.framing import read_frame, write_frame
from tests import sandbox_probes


def probe_body(
    sock: socket.socket, _spawn: pb.SpawnWorker, report: list[str], _region_fd: int = -1, _output_fd: int = -1
) -> int:
    write_frame(sock, json.dumps({"report": report}).encode())
    payload = read_frame(sock, 1 << 20)
    if payload is None:
        return 0
    request = json.loads(payload)
    if request.get("strict"):
        seccomp.load_allow_list()
    try:
        result = sandbox_probes.PROBES[request["probe"]](request.get("args", {}))
    except Exception as exc:
        result = {"exception": f"{type(exc).__name__}: {exc}"}
    write_frame(sock, json.dumps(result).encode())
    read_frame(sock, 1 << 20)  # stay alive until the harness is done with this worker
    return 0


if __name__ == "__main__":
    sys.exit(launcher.main(body=probe_body))
