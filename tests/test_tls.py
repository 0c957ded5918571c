"""TLS and mTLS on the listener: the onboarding flow over mTLS, refusals, reload, plaintext rules.

The suite makes its own CA; the server reads its key, certificate and client CA from
files named in [tls] (set here through IRE_TLS__* variables).
"""

from __future__ import annotations

import shutil
import socket
import ssl
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from protos import admin_pb2 as pb
from protos import admin_pb2_grpc as pb_grpc
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.client import build_request
from supervisor.errors import ConfigError
from supervisor.modelgraph.build import build_mlp
from supervisor.server import _add_port
from supervisor.settings import ServerSettings, Settings, TlsSettings
from supervisor.signing.keys import generate_signing_key
from supervisor.signing.model_dir import sign_model_dir
from supervisor.tls import CertificateFiles, is_loopback
from tests.conftest import Server, ire, make_home, start_server, stop_server, write_model
from tests.tls_certs import CertificateAuthority, Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(root / "ca")
    rogue = CertificateAuthority(root / "rogue", "rogue-ca")
    return {
        "ca": ca,
        "server": ca.issue("server", server=True, out=root / "live"),
        "admin": ca.issue("platform-admin", server=False),
        "rogue": rogue.issue("mallory", server=False),
        "root": root,
    }


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Any]) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("tls") / "home")
    env = {
        "IRE_TLS__CERT_FILE": str(pki["server"].cert),
        "IRE_TLS__KEY_FILE": str(pki["server"].key),
        "IRE_TLS__CLIENT_CA_FILE": str(pki["ca"].cert_path),
    }
    server = start_server(home, env)
    yield server
    stop_server(server)


def _channel(server: Server, pki: dict[str, Any], client: Issued | None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki["ca"].cert_path.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(server.address, credentials)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _mlp() -> Any:
    return build_request("mlp", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})


def test_mtls_onboard_quota_signer_model_predict_revoke(srv: Server, pki: dict[str, Any], tmp_path: Path) -> None:
    channel = _channel(srv, pki, pki["admin"])
    admin = pb_grpc.AdminServiceStub(channel)
    md = _bearer(srv.token("acme", ("admin",)))
    admin.CreateTenant(pb.CreateTenantRequest(name="wayne", tier="premium"), metadata=md)
    admin.SetQuota(pb.SetQuotaRequest(tenant="wayne", overrides={"daily": "100"}), metadata=md)
    generate_signing_key(tmp_path / "k.pem", tmp_path / "k.pub")
    model_dir = write_model(tmp_path / "model", build_mlp(seed=11))
    sign_model_dir(model_dir, tmp_path / "k.pem", tmp_path / "m.sig")
    pem = (tmp_path / "k.pub").read_text()
    admin.AddSigner(pb.AddSignerRequest(name="wayne-ci", tenant="wayne", public_key_pem=pem), metadata=md)
    admin.RegisterModel(
        pb.RegisterModelRequest(
            tenant="wayne",
            name="mlp",
            onnx=(model_dir / "model.onnx").read_bytes(),
            signature=(tmp_path / "m.sig").read_bytes(),
        ),
        metadata=md,
    )
    issued = admin.IssueToken(pb.IssueTokenRequest(tenant="wayne"), metadata=md)
    oip = oip_grpc.GRPCInferenceServiceStub(channel)
    assert oip.ModelInfer(_mlp(), metadata=_bearer(issued.token), timeout=60).model_name == "mlp"
    admin.RevokeToken(pb.RevokeTokenRequest(token_id=issued.token_id), metadata=md)
    with pytest.raises(grpc.RpcError) as info:
        oip.ModelInfer(_mlp(), metadata=_bearer(issued.token), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert f"token {issued.token_id!r} has been revoked" in srv.log()


@pytest.mark.parametrize("client", [pytest.param(None, id="no-client-cert"), pytest.param("rogue", id="other-ca")])
def test_mtls_client_without_trusted_certificate_refused(srv: Server, pki: dict[str, Any], client: str | None) -> None:
    channel = _channel(srv, pki, pki[client] if client else None)
    with pytest.raises(grpc.RpcError) as info:
        oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_mlp(), metadata=srv.metadata(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_client_refused_by_tls_listener(srv: Server) -> None:
    with pytest.raises(grpc.RpcError) as info:
        srv.stub().ModelInfer(_mlp(), metadata=srv.metadata(), timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def _served_certificate(server: Server, pki: dict[str, Any]) -> bytes:
    context = ssl.create_default_context(cafile=str(pki["ca"].cert_path))
    context.load_cert_chain(str(pki["admin"].cert), str(pki["admin"].key))
    context.set_alpn_protocols(["h2"])
    host, port = server.address.rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_renewed_certificate_served_without_restart(srv: Server, pki: dict[str, Any]) -> None:
    before = _served_certificate(srv, pki)
    renewed = pki["ca"].issue("server", server=True, out=pki["root"] / "renewed")
    live: Issued = pki["server"]
    # The way cert-manager and certbot replace files: write aside, then rename over.
    for source, target in ((renewed.key, live.key), (renewed.cert, live.cert)):
        shutil.copy(source, target.with_suffix(".new"))
        target.with_suffix(".new").replace(target)
    after = _served_certificate(srv, pki)
    assert after != before
    channel = _channel(srv, pki, pki["admin"])
    reply = oip_grpc.GRPCInferenceServiceStub(channel).ModelInfer(_mlp(), metadata=srv.metadata(), timeout=60)
    assert reply.model_name == "mlp"


def test_mismatched_renewal_keeps_previous_certificate(pki: dict[str, Any], tmp_path: Path) -> None:
    a = pki["ca"].issue("a", server=True, out=tmp_path)
    b = pki["ca"].issue("b", server=True, out=tmp_path / "b")
    files = CertificateFiles(TlsSettings(cert_file=str(a.cert), key_file=str(a.key)), Path("/"))
    assert files.fetch() is None
    shutil.copy(b.key, a.key)  # a key that does not match the certificate
    assert files.fetch() is None


def test_mismatched_key_refused_at_start(pki: dict[str, Any], tmp_path: Path) -> None:
    a = pki["ca"].issue("a", server=True, out=tmp_path)
    b = pki["ca"].issue("b", server=True, out=tmp_path / "b")
    with pytest.raises(ConfigError, match="does not match"):
        CertificateFiles(TlsSettings(cert_file=str(a.cert), key_file=str(b.key)), Path("/"))


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        pytest.param("127.0.0.1:8001", True, id="ipv4-loopback"),
        pytest.param("[::1]:8001", True, id="ipv6-loopback"),
        pytest.param("localhost:8001", True, id="localhost"),
        pytest.param("0.0.0.0:8001", False, id="any-ipv4"),
        pytest.param("[::]:8001", False, id="any-ipv6"),
        pytest.param("10.0.0.5:8001", False, id="private-ip"),
        pytest.param("ire.example:8001", False, id="hostname"),
    ],
)
def test_loopback_detection(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_plaintext_outside_loopback_refused_without_unsafe_setting() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(1))
    with pytest.raises(ConfigError, match="unsafe_plaintext"):
        _add_port(server, Settings(), Path("/"), "0.0.0.0:0")  # type: ignore[arg-type]


def test_plaintext_outside_loopback_allowed_when_unsafe_set() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(1))
    settings = Settings(server=ServerSettings(unsafe_plaintext=True))
    assert _add_port(server, settings, Path("/"), "0.0.0.0:0") > 0  # type: ignore[arg-type]
    server.stop(None)


def test_health_probe_over_mtls(srv: Server, pki: dict[str, Any]) -> None:
    tls = [
        "--tls-ca",
        str(pki["ca"].cert_path),
        "--tls-cert",
        str(pki["admin"].cert),
        "--tls-key",
        str(pki["admin"].key),
    ]
    probe = ire("health", "--server", srv.address, *tls)
    assert probe.stdout.strip() == "SERVING"
    refused = ire("health", "--server", srv.address, "--tls-ca", str(pki["ca"].cert_path), check=False)
    assert refused.returncode == 1
