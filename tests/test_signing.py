"""Signed models: each attack on a model or its signature is refused, and IRE interoperates
with the OpenSSF `model_signing` CLI in both directions."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest

from supervisor.client import build_request, decode_response
from supervisor.errors import ModelIntegrityError, ModelUnsignedError, SignatureMismatchError, SignerUntrustedError
from supervisor.home import Home
from supervisor.modelgraph.build import build_mlp
from supervisor.models import register_model
from supervisor.registry import Registry
from supervisor.settings import ModelSettings, Settings
from supervisor.signing import generate_signing_key, sign_model_dir, trusted_signer
from supervisor.signing.load import load_model_bytes
from tests.conftest import ire, start_server, stop_server, write_model

MODEL_SIGNING_CLI = str(Path(sys.executable).with_name("model_signing"))


class Env:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.home = Home.init(tmp / "home")
        self.registry: Registry = self.home.registry()
        self.registry.create_tenant("acme")
        self.registry.create_tenant("globex")
        self.key = self.new_key("platform")
        self.registry.add_signer(trusted_signer("platform", "", (tmp / "platform.pub.pem").read_bytes()))

    def new_key(self, name: str) -> Path:
        generate_signing_key(self.tmp / f"{name}.pem", self.tmp / f"{name}.pub.pem")
        return self.tmp / f"{name}.pem"

    def model(self, name: str = "m", seed: int = 0, extra: dict[str, bytes] | None = None) -> Path:
        directory = write_model(self.tmp / name, build_mlp((4, 8, 3), seed=seed))
        for filename, data in (extra or {}).items():
            (directory / filename).write_bytes(data)
        return directory

    def sign(self, directory: Path, key: Path | None = None) -> Path:
        signature = directory.with_name(directory.name + ".sig")
        sign_model_dir(directory, key or self.key, signature)
        return signature

    def register(self, directory: Path, signature: Path | None, tenant: str = "acme"):
        return register_model(self.home, self.registry, tenant, "model", directory, "", signature)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_signed_model_registers_with_its_signer(env: Env) -> None:
    directory = env.model()
    record = env.register(directory, env.sign(directory))
    assert record.signer == "platform" and len(record.signature_sha256) == 64
    assert (
        load_model_bytes(record, env.home.store(), env.registry, env.home.settings())
        == (directory / "model.onnx").read_bytes()
    )


def test_unsigned_model_refused(env: Env) -> None:
    with pytest.raises(ModelUnsignedError, match="has no signature"):
        env.register(env.model(), None)


def test_byte_flipped_after_signing_refused(env: Env) -> None:
    directory = env.model()
    signature = env.sign(directory)
    data = bytearray((directory / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01
    (directory / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(SignatureMismatchError, match="does not match its signature"):
        env.register(directory, signature)


def test_file_added_after_signing_refused(env: Env) -> None:
    directory = env.model()
    signature = env.sign(directory)
    (directory / "extra.bin").write_bytes(b"smuggled")
    with pytest.raises(SignatureMismatchError):
        env.register(directory, signature)


def test_file_removed_after_signing_refused(env: Env) -> None:
    directory = env.model(extra={"vocab.txt": b"a\nb\n"})
    signature = env.sign(directory)
    (directory / "vocab.txt").unlink()
    with pytest.raises(SignatureMismatchError):
        env.register(directory, signature)


def test_wrong_key_refused(env: Env) -> None:
    directory = env.model()
    with pytest.raises(SignerUntrustedError, match="not trusted"):
        env.register(directory, env.sign(directory, env.new_key("stranger")))


def test_signer_trusted_only_for_another_tenant_refused(env: Env) -> None:
    key = env.new_key("globex-ci")
    env.registry.add_signer(trusted_signer("globex-ci", "globex", (env.tmp / "globex-ci.pub.pem").read_bytes()))
    directory = env.model()
    signature = env.sign(directory, key)
    with pytest.raises(SignerUntrustedError, match="tenant 'acme'"):
        env.register(directory, signature, tenant="acme")
    assert env.register(directory, signature, tenant="globex").signer == "globex-ci"


def test_signature_for_another_model_refused(env: Env) -> None:
    other = env.model("other", seed=9)
    signature = env.sign(other)
    with pytest.raises(SignatureMismatchError):
        env.register(env.model("m", seed=1), signature)


def test_forged_signature_bytes_refused(env: Env) -> None:
    directory = env.model()
    signature = env.sign(directory)
    bundle = json.loads(signature.read_text())
    raw = bytearray(base64.b64decode(bundle["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    bundle["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(SignatureMismatchError, match="does not verify"):
        env.register(directory, signature)


def test_model_swapped_in_store_after_registration_refused_at_load(env: Env) -> None:
    record = env.register(env.model(), env.sign(env.model()))
    other = build_mlp((4, 8, 3), seed=5)
    stored = env.home.store_dir / f"{record.sha256}.onnx"
    stored.chmod(0o644)
    stored.write_bytes(other)
    with pytest.raises(ModelIntegrityError, match="sha256"):
        load_model_bytes(record, env.home.store(), env.registry, env.home.settings())


def test_removed_signer_stops_its_models_loading(env: Env) -> None:
    directory = env.model()
    record = env.register(directory, env.sign(directory))
    env.registry.remove_signer("platform")
    with pytest.raises(ModelIntegrityError, match="does not exist"):
        load_model_bytes(record, env.home.store(), env.registry, env.home.settings())


def test_unsigned_accepted_only_in_unsafe_home(tmp_path: Path) -> None:
    home = Home.init(tmp_path / "home", Settings(models=ModelSettings(unsafe_allow_unsigned=True)))
    registry = home.registry()
    registry.create_tenant("acme")
    record = register_model(home, registry, "acme", "m", write_model(tmp_path / "m", build_mlp((4, 8, 3))))
    assert record.signer == ""
    assert load_model_bytes(record, home.store(), registry, home.settings())


# Interop with the model_signing CLI


def test_model_signed_by_model_signing_cli_registers_and_serves(tmp_path: Path) -> None:
    home_dir = tmp_path / "home"
    ire("init", home=home_dir)
    ire("tenant", "create", "acme", home=home_dir)
    generate_signing_key(tmp_path / "key.pem", tmp_path / "pub.pem")
    ire("signer", "add", "--name", "upstream", str(tmp_path / "pub.pem"), home=home_dir)
    model = build_mlp((4, 8, 3), seed=2)
    directory = write_model(tmp_path / "m", model)
    signature = tmp_path / "m.sig"
    subprocess.run(
        [
            MODEL_SIGNING_CLI,
            "sign",
            "key",
            str(directory),
            "--private_key",
            str(tmp_path / "key.pem"),
            "--signature",
            str(signature),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    ire(
        "model",
        "register",
        "--tenant",
        "acme",
        "--name",
        "tiny",
        "--signature",
        str(signature),
        str(directory),
        home=home_dir,
    )
    server = start_server(Home.open(home_dir))
    try:
        x = np.ones((1, 4), np.float32)
        response = server.stub().ModelInfer(
            build_request("tiny", {"input": x}, {"input": "FP32"}), metadata=server.metadata(), timeout=60
        )
        assert decode_response(response)["output"].shape == (1, 3)
    finally:
        stop_server(server)


def test_ire_signature_passes_model_signing_cli_verify(tmp_path: Path) -> None:
    generate_signing_key(tmp_path / "key.pem", tmp_path / "pub.pem")
    directory = write_model(tmp_path / "m", build_mlp((4, 8, 3)))
    ire("model", "sign", str(directory), "--key", str(tmp_path / "key.pem"), "--signature", str(tmp_path / "m.sig"))
    verified = subprocess.run(
        [
            MODEL_SIGNING_CLI,
            "verify",
            "key",
            str(directory),
            "--public_key",
            str(tmp_path / "pub.pem"),
            "--signature",
            str(tmp_path / "m.sig"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr + verified.stdout
    # And the CLI refuses it once the model changes, so the check above is not vacuous.
    (directory / "model.onnx").write_bytes(build_mlp((4, 8, 3), seed=1))
    tampered = subprocess.run(
        [
            MODEL_SIGNING_CLI,
            "verify",
            "key",
            str(directory),
            "--public_key",
            str(tmp_path / "pub.pem"),
            "--signature",
            str(tmp_path / "m.sig"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert tampered.returncode != 0


def test_signature_inside_model_directory_is_not_part_of_the_model(env: Env) -> None:
    directory = env.model()
    signature = directory / "model.sig"
    sign_model_dir(directory, env.key, signature)
    assert env.register(directory, signature).signer == "platform"


def test_cli_refusals_are_one_line(tmp_path: Path) -> None:
    home_dir = tmp_path / "home"
    ire("init", home=home_dir)
    ire("tenant", "create", "acme", home=home_dir)
    directory = write_model(tmp_path / "m", build_mlp((4, 8, 3)))
    proc = ire("model", "register", "--tenant", "acme", "--name", "m", str(directory), home=home_dir, check=False)
    assert proc.returncode == 1 and "has no signature" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    shutil.rmtree(directory)


# Admission policy (ire.admission), at registration and at load


def test_custom_op_domain_refused_by_admission(env: Env) -> None:
    from supervisor.errors import PolicyDeniedError
    from supervisor.modelgraph.build import build_custom_domain_model

    directory = write_model(env.tmp / "custom", build_custom_domain_model())
    with pytest.raises(PolicyDeniedError, match=re.escape('operator domain "com.example.custom" is not allowed')):
        env.register(directory, env.sign(directory))
    assert env.registry.list_models("acme") == []


def test_oversized_model_refused_by_admission_for_its_tier(env: Env) -> None:
    from supervisor.errors import PolicyDeniedError
    from supervisor.modelgraph.build import build_large_mlp

    env.registry.create_tenant("tiny", "free")
    directory = write_model(env.tmp / "big", build_large_mlp(hidden=2304, layers=4))  # ~85 MB > free tier's 64 MiB
    with pytest.raises(PolicyDeniedError, match=re.escape('tier "free" admits models of at most 67108864 bytes')):
        env.register(directory, env.sign(directory), tenant="tiny")
    # The same model is admitted for a tier without that bound.
    assert env.register(directory, env.sign(directory), tenant="acme").signer == "platform"


def test_load_is_refused_when_admission_policy_changes(tmp_path: Path) -> None:
    """A model admitted at registration is decided again at load, under the policy then in force."""
    from supervisor.audit import read_records
    from tests.conftest import make_home

    home = make_home(tmp_path / "home")
    admission = home.policies_dir / "ire" / "admission.rego"
    admission.write_text(
        admission.read_text().replace('allowed_domains := {"", "ai.onnx",', 'allowed_domains := {"ai.onnx",')
    )
    for test in home.policies_dir.rglob("admission_test.rego"):
        test.unlink()  # its tests describe the shipped rule
    server = start_server(home)
    try:
        x = np.ones((1, 64), np.float32)
        with pytest.raises(grpc.RpcError) as info:
            server.stub().ModelInfer(
                build_request("mlp", {"input": x}, {"input": "FP32"}), metadata=server.metadata(), timeout=60
            )
    finally:
        stop_server(server)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert 'operator domain "" is not allowed' in info.value.details()
    record = next(r for r in read_records(home.audit_dir) if r["action"] == "predict")
    assert record["detail"]["admission"]["decision"] == "deny"
