"""IRE against the unmodified NVIDIA Triton client (tritonclient[grpc]).

The client runs in its own Python process (tests/triton_probe.py), never in pytest's:
tritonclient registers its generated ``inference.*`` protobuf messages in the default
descriptor pool, and so do IRE's own ``protos.inference`` modules; importing both in one
process clashes. The probe writes what it saw to JSON, and these tests check it against
onnxruntime run here on the very same model bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from supervisor.modelgraph.build import build_int64_model, build_mlp
from tests.conftest import Server

ROOT = Path(__file__).resolve().parent.parent
PROBE = "tests/triton_probe.py"
UNAUTHENTICATED = "StatusCode.UNAUTHENTICATED"


def _reference(model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20240611)
    return {
        "mlp_input": rng.standard_normal((4, 64)).astype(np.float32),
        # Values beyond 2**31 (and below -2**31) catch any INT32 narrowing on the way.
        "tokens": np.array([[1, -2, 3, 2**40], [0, 5, -7, 2**31 + 5], [-(2**33), 2**31, 9, 2**50]], dtype=np.int64),
    }


@pytest.fixture(scope="module")
def probe(server: Server, inputs: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One run of the Triton client probe for the whole module."""
    work = tmp_path_factory.mktemp("triton")
    np.savez(work / "inputs.npz", **inputs)
    settings = server.home.settings()
    expired = server.home.issuer_key().issue(
        issuer=settings.auth.issuer,
        audience=settings.auth.audience,
        subject="acme-test",
        tenant="acme",
        scopes=("predict",),
        ttl_seconds=60,
        now=time.time() - 7200,
    )
    out = work / "out.json"
    proc = subprocess.run(
        [
            sys.executable,
            PROBE,
            server.address,
            server.token("acme"),
            str(work / "inputs.npz"),
            str(out),
            "--expired-token",
            expired,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, f"probe exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(out.read_text())


def _ok(probe: dict[str, Any], step: str) -> dict[str, Any]:
    result = probe[step]
    assert result["ok"], f"{step} failed through tritonclient: {result['error']}"
    return result


def _array(encoded: dict[str, Any]) -> np.ndarray:
    return np.array(encoded["data"], dtype=encoded["dtype"]).reshape(encoded["shape"])


def test_tritonclient_probe_never_loads_ire_protos(probe: dict[str, Any]) -> None:
    assert probe["foreign_modules"] == []
    assert "tritonclient" not in sys.modules


def test_tritonclient_sees_server_live_and_ready(probe: dict[str, Any]) -> None:
    assert _ok(probe, "live")["value"] is True
    assert _ok(probe, "ready")["value"] is True
    assert _ok(probe, "model_ready")["value"] is True


def test_tritonclient_model_metadata_has_dynamic_batch_dim(probe: dict[str, Any]) -> None:
    meta = _ok(probe, "metadata_mlp")
    assert meta["name"] == "mlp"
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    assert meta["outputs"] == [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("step", ["mlp_raw", "mlp_typed"], ids=["raw_contents", "typed_fp32_contents"])
def test_tritonclient_unmodified_infers_fp32_mlp(
    probe: dict[str, Any], inputs: dict[str, np.ndarray], step: str
) -> None:
    result = _ok(probe, step)
    assert result["model_name"] == "mlp"
    assert result["output_datatypes"] == {"output": "FP32"}
    got = _array(result["outputs"]["output"])
    want = _reference(build_mlp(), {"input": inputs["mlp_input"]})["output"]
    assert got.dtype == np.float32 and got.shape == want.shape == (4, 10)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("step", ["tokens_raw", "tokens_typed"], ids=["raw_contents", "typed_int64_contents"])
def test_tritonclient_int64_beyond_int32_is_exact(
    probe: dict[str, Any], inputs: dict[str, np.ndarray], step: str
) -> None:
    result = _ok(probe, step)
    assert result["output_datatypes"] == {"scores": "INT64", "total": "FP32"}
    want = _reference(build_int64_model(), {"tokens": inputs["tokens"]})
    scores = _array(result["outputs"]["scores"])
    assert scores.dtype == np.int64
    np.testing.assert_array_equal(scores, want["scores"])
    total = _array(result["outputs"]["total"])
    assert total.dtype == np.float32 and total.shape == want["total"].shape
    np.testing.assert_allclose(total, want["total"], rtol=1e-5)


@pytest.mark.parametrize(
    "step",
    ["mlp_no_token", "mlp_garbage_token", "mlp_expired_token"],
    ids=["no_token", "garbage_token", "expired_token"],
)
def test_tritonclient_without_valid_token_is_unauthenticated(probe: dict[str, Any], step: str) -> None:
    result = probe[step]
    assert not result["ok"], f"{step} was served"
    error = result["error"]
    assert error["kind"] == "InferenceServerException"
    assert error["status"] == UNAUTHENTICATED, error
    assert "request id" in error["message"]
