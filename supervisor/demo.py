"""``ire demo``: the whole flow on the embedded defaults, in a temporary home.

It creates two tenants, builds and registers a small MLP for one of them, serves on a free
loopback port, predicts through gRPC with a token, shows what the other tenant and an
anonymous caller get, prints the audit records, and shuts down.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from pathlib import Path

import grpc
import numpy as np

from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.audit.keys import AuditKey
from supervisor.audit.verify import verify_log
from supervisor.audit.writer import read_records
from supervisor.client import build_request, decode_response
from supervisor.home import Home
from supervisor.modelgraph.build import build_mlp
from supervisor.server import serve
from supervisor.signing.onboard import local_signer, sign_and_register


def _say(text: str) -> None:
    print(text, flush=True)


async def _calls(port: int, home: Home) -> None:
    settings = home.settings()
    key = home.issuer_key()

    def token(tenant: str) -> str:
        return key.issue(
            issuer=settings.auth.issuer,
            audience=settings.auth.audience,
            subject=f"{tenant}-app",
            tenant=tenant,
            scopes=["predict"],
            ttl_seconds=300,
        )

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = oip_grpc.GRPCInferenceServiceStub(channel)
        live = await stub.ServerLive(oip.ServerLiveRequest())
        _say(f"server live: {live.live}")
        acme = (("authorization", f"Bearer {token('acme')}"),)
        meta = await stub.ModelMetadata(oip.ModelMetadataRequest(name="mlp"), metadata=acme)
        _say(
            "model metadata: "
            + ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in meta.inputs)
            + " -> "
            + ", ".join(f"{t.name} {t.datatype} {list(t.shape)}" for t in meta.outputs)
        )
        x = np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)
        request = build_request("mlp", {"input": x}, {"input": "FP32"})
        response = await stub.ModelInfer(request, metadata=acme)
        scores = decode_response(response)["output"][0]
        _say(f"prediction for tenant acme: class {int(scores.argmax())}, scores {[round(float(v), 3) for v in scores]}")
        for who, md in (("tenant globex", (("authorization", f"Bearer {token('globex')}"),)), ("no token", ())):
            try:
                await stub.ModelInfer(request, metadata=md)
                _say(f"{who}: unexpectedly served")
            except grpc.aio.AioRpcError as exc:
                _say(f"{who} asking for acme's model: {exc.code().name} ({exc.details()})")


async def _run(home: Home) -> None:
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    server = asyncio.create_task(serve(home, "127.0.0.1:0", on_ready=ready.set_result, stop=stop))
    await asyncio.wait([ready, server], return_when=asyncio.FIRST_COMPLETED)  # type: ignore[type-var]
    if server.done():
        await server  # raises the start-up error
    port = ready.result()
    _say(f"serving on 127.0.0.1:{port}")
    try:
        await _calls(port, home)
    finally:
        stop.set()
        await server


def run_demo(keep: bool = False) -> int:
    root = Path(tempfile.mkdtemp(prefix="ire-demo-"))
    try:
        home = Home.init(root / "home")
        _say(f"home: {home.root}")
        registry = home.registry()
        for name in ("acme", "globex"):
            registry.create_tenant(name, "standard")
        _say("tenants: acme, globex")
        model_dir = root / "mlp"
        model_dir.mkdir()
        (model_dir / "mlp.onnx").write_bytes(build_mlp((64, 256, 256, 10), seed=7))
        key = local_signer(registry, root / "signing", name="acme-release")
        _say("trusted signer acme-release (EC P-256)")
        record = sign_and_register(home, registry, "acme", "mlp", model_dir, key)
        _say(f"signed and registered acme/mlp version {record.version} sha256 {record.sha256[:16]}…")
        registry.close()
        asyncio.run(_run(home))
        _say("audit records:")
        for rec in read_records(home.audit_dir):
            _say(
                "  " + json.dumps({k: rec[k] for k in ("action", "tenant", "model", "outcome", "status", "latency_ms")})
            )
        report = verify_log(home.audit_dir, AuditKey.load(home.audit_key_path).public)
        _say(f"audit log verified: {report.summary()}")
        _say("stopped")
    finally:
        if keep:
            _say(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0
