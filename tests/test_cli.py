"""The `ire` command line, run as a real subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import jwt
import numpy as np
import onnxruntime as ort
import pytest

from supervisor.modelgraph.build import build_batch_centred, build_mlp
from supervisor.signing import generate_signing_key
from tests.conftest import ire, write_model


@pytest.fixture
def home(tmp_path: Path) -> Path:
    root = tmp_path / "home"
    ire("init", home=root)
    return root


def test_init_creates_private_home(home: Path) -> None:
    assert (home / "config.toml").is_file()
    assert (home / "registry.db").is_file()
    assert (home / "audit").is_dir()
    assert (home / "policies").is_dir()
    assert (home.stat().st_mode & 0o777) == 0o700
    assert ((home / "keys" / "issuer.pem").stat().st_mode & 0o777) == 0o600


def test_init_refuses_existing_home(home: Path) -> None:
    proc = ire("init", home=home, check=False)
    assert proc.returncode == 1
    assert "already an IRE home" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_missing_home_is_a_one_line_diagnosis(tmp_path: Path) -> None:
    env_home = os.environ.pop("IRE_HOME", None)
    try:
        proc = ire("tenant", "list", check=False)
    finally:
        if env_home is not None:
            os.environ["IRE_HOME"] = env_home
    assert proc.returncode == 1
    assert proc.stderr.strip() == "ire: error: no IRE home: pass --home DIR or set IRE_HOME"


def test_tenant_create_and_list(home: Path) -> None:
    ire("tenant", "create", "acme", "--tier", "premium", home=home)
    ire("tenant", "create", "globex", home=home)
    assert ire("tenant", "list", home=home).stdout.splitlines() == ["acme\tpremium", "globex\tstandard"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["tenant", "create", "Bad_Name"], "tenant name 'Bad_Name' is invalid", id="bad_tenant_name"),
        pytest.param(
            ["token", "issue", "--tenant", "ghost"], "tenant 'ghost' does not exist", id="token_for_unknown_tenant"
        ),
        pytest.param(
            ["model", "register", "--tenant", "ghost", "--name", "m", "/nonexistent"],
            "does not exist",
            id="model_for_unknown_tenant",
        ),
    ],
)
def test_bad_input_gets_one_line_diagnosis(home: Path, args: list[str], message: str) -> None:
    proc = ire(*args, home=home, check=False)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_token_issue_prints_only_a_jwt_verifiable_with_jwks(home: Path) -> None:
    ire("tenant", "create", "acme", home=home)
    token = ire("token", "issue", "--tenant", "acme", "--ttl", "120", home=home).stdout.strip()
    assert "\n" not in token and token.count(".") == 2
    jwks = json.loads(ire("token", "jwks", home=home).stdout)
    key = jwt.PyJWK(jwks["keys"][0])
    claims = jwt.decode(token, key, algorithms=["EdDSA"], audience="ire", issuer="ire")
    assert claims["tenant"] == "acme" and claims["scope"] == "predict"
    assert claims["exp"] - claims["iat"] == 120
    assert "d" not in jwks["keys"][0], "the JWKS must not carry the private key"


def test_model_register_refuses_directory_without_one_onnx(home: Path, tmp_path: Path) -> None:
    ire("tenant", "create", "acme", home=home)
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = ire("model", "register", "--tenant", "acme", "--name", "m", str(empty), home=home, check=False)
    assert proc.returncode == 1 and "holds 0 .onnx files, expected exactly one" in proc.stderr


def test_model_register_refuses_garbage_model(home: Path, tmp_path: Path) -> None:
    ire("tenant", "create", "acme", home=home)
    bad = write_model(tmp_path / "bad", b"not an onnx model")
    proc = ire("model", "register", "--tenant", "acme", "--name", "m", str(bad), home=home, check=False)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1


def test_serve_register_predict_round_trip(home: Path, tmp_path: Path) -> None:
    ire("tenant", "create", "acme", home=home)
    model = build_mlp((4, 8, 3), seed=1)
    generate_signing_key(tmp_path / "key.pem", tmp_path / "pub.pem")
    ire("signer", "add", "--name", "release", str(tmp_path / "pub.pem"), home=home)
    model_dir = str(write_model(tmp_path / "m", model))
    sig = str(tmp_path / "m.sig")
    ire("model", "sign", model_dir, "--key", str(tmp_path / "key.pem"), "--signature", sig)
    assert "signed by release" in ire("model", "verify", model_dir, "--signature", sig, home=home).stdout
    out = ire("model", "register", "--tenant", "acme", "--name", "tiny", "--signature", sig, model_dir, home=home)
    assert "version 1" in out.stdout
    assert '"dynamic_batching_auto": "merged"' in out.stderr  # the operator learns it at onboarding
    centred_dir = str(write_model(tmp_path / "centred", build_batch_centred()))
    ire("model", "sign", centred_dir, "--key", str(tmp_path / "key.pem"), "--signature", sig)
    out = ire("model", "register", "--tenant", "acme", "--name", "centred", "--signature", sig, centred_dir, home=home)
    assert '"dynamic_batching_auto": "call by call: node 0 (ReduceMean' in out.stderr
    assert "over the batch axis" in out.stderr
    assert "tiny\t1\t" in ire("model", "list", home=home).stdout
    serve = subprocess.Popen(
        [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, IRE_HOME=str(home)),
    )
    try:
        assert serve.stdout is not None
        address = serve.stdout.readline().split()[-1]
        token = ire("token", "issue", "--tenant", "acme", home=home).stdout.strip()
        x = [[0.5, -1.0, 2.0, 0.25]]
        result = ire(
            "predict", "--server", address, "--token", token, "--model", "tiny", "--input", f"input={json.dumps(x)}"
        )
        got = np.asarray(json.loads(result.stdout)["output"])
        want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"input": np.float32(x)})[0]
        np.testing.assert_allclose(got, want, rtol=1e-5)
        denied = ire(
            "predict",
            "--server",
            address,
            "--token",
            "nonsense",
            "--model",
            "tiny",
            "--input",
            "input=[[1,2,3,4]]",
            check=False,
        )
        assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr
    finally:
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=30) == 0


def test_demo_prints_a_prediction() -> None:
    proc = ire("demo", timeout=180)
    assert "prediction for tenant acme: class" in proc.stdout
    assert "tenant globex asking for acme's model: NOT_FOUND" in proc.stdout
    assert "no token asking for acme's model: UNAUTHENTICATED" in proc.stdout
    assert '"action": "predict", "tenant": "acme", "model": "mlp", "outcome": "allowed"' in proc.stdout
    assert re.search(r"audit log verified: \d+ entries .* \d+ checkpoints signed by key", proc.stdout)
