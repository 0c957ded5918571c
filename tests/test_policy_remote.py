"""The remote engine against an OPA REST server: allow, deny, and every failure refuses.

No OPA server binary can be installed on these machines (only package registries are
reachable), so these tests run against an OPA-REST-compatible test server written here:
an aiohttp app serving ``POST /v1/data/<path>`` over TLS with a bearer token, evaluating
the shipped policies with regorus, and reporting a bundle revision in ``provenance`` as
OPA does. Production uses the real OPA as a sidecar (deploy/kubernetes).
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from supervisor.audit import AuditRecord, read_records
from supervisor.auth import Principal
from supervisor.client import build_request
from supervisor.errors import ConfigError, PolicyDeniedError, PolicyUnavailableError
from supervisor.policy import Authorizer, Query
from supervisor.policy._regorus import Interpreter
from supervisor.policy.policyset import PolicySet, load_policy_set
from supervisor.policy.probes import _model
from supervisor.policy.remote import RemoteEngine
from supervisor.registry import Tenant
from tests.conftest import make_home, start_server, stop_server

SHIPPED = Path(__file__).resolve().parent.parent / "policies"
TOKEN = "opa-test-token"
PRINCIPAL = Principal(subject="acme-app", tenant="acme", scopes=frozenset({"predict"}), token_id="t", expires_at=0)
ADMIN_ONLY = Principal(subject="acme-app", tenant="acme", scopes=frozenset({"admin"}), token_id="t", expires_at=0)
TENANT = Tenant(name="acme", tier="standard", created_at=0.0, number=1)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signs for 127.0.0.1: (ca.pem, server.pem, server.key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ire-test-ca"))
        .issuer_name(_name("ire-test-ca"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("opa"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class OpaTestServer:
    """OPA's data API, enough of it: POST /v1/data/<package path>/<rule> {"input": ...}.

    Runs in its own thread and event loop; the regorus engine is made in that thread.
    ``delay`` makes every answer late; ``undefined`` makes every rule undefined.
    """

    def __init__(self, policy_set: PolicySet, cert: Path, key: Path) -> None:
        self.policy_set = policy_set
        self.delay = 0.0
        self.undefined = False
        self.requests = 0
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(cert, key)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    async def _data(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response({"code": "unauthorized", "message": "bad token"}, status=401)
        body = await request.json()
        await asyncio.sleep(self.delay)
        rule = "data." + request.match_info["path"].strip("/").replace("/", ".")
        value = None if self.undefined else self._engine.eval_rule(rule, body.get("input", {}))
        answer: dict[str, Any] = {} if value is None else {"result": value}
        if request.query.get("provenance") == "true":
            answer["provenance"] = {"version": "test", "bundles": {"ire": {"revision": self.policy_set.revision}}}
        return web.json_response(answer)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._engine = Interpreter(self.policy_set.modules)
        app = web.Application()
        app.router.add_post("/v1/data/{path:.*}", self._data)
        runner = web.AppRunner(app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=self._context)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        del self._engine  # on this thread: regorus engines must not be dropped elsewhere

    def start(self) -> OpaTestServer:
        self._thread.start()
        assert self._ready.wait(10), "OPA test server did not start"
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def opa(tls: tuple[Path, Path, Path]) -> Iterator[OpaTestServer]:
    server = OpaTestServer(load_policy_set(SHIPPED), tls[1], tls[2]).start()
    yield server
    server.stop()


@pytest.fixture
def fresh(opa: OpaTestServer) -> Iterator[OpaTestServer]:
    opa.delay, opa.undefined = 0.0, False
    yield opa
    opa.delay, opa.undefined = 0.0, False


def _record() -> AuditRecord:
    return AuditRecord(time=time.time(), request_id="r", action="predict")


async def _authorize(engine: RemoteEngine, principal: Principal = PRINCIPAL) -> tuple[Any, AuditRecord]:
    record = _record()
    try:
        return await Authorizer(engine).authorize("predict", principal, TENANT, record, model=_model("acme")), record
    finally:
        await engine.close()


async def test_remote_allow_carries_the_bundle_revision(fresh: OpaTestServer, tls: tuple[Path, Path, Path]) -> None:
    decision, record = await _authorize(RemoteEngine(fresh.url, TOKEN, str(tls[0]), 2.0))
    assert decision.allow
    assert decision.revision == f"remote:ire={fresh.policy_set.revision}"
    assert record.detail["policy"]["engine"] == "remote"


async def test_remote_deny_carries_the_policy_reasons(fresh: OpaTestServer, tls: tuple[Path, Path, Path]) -> None:
    with pytest.raises(PolicyDeniedError, match="needs scope 'predict'"):
        await _authorize(RemoteEngine(fresh.url, TOKEN, str(tls[0]), 2.0), ADMIN_ONLY)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("setup", "cause"),
    [
        pytest.param("slow", "timeout", id="timeout"),
        pytest.param("down", "unreachable", id="server_down"),
        pytest.param("wrong_token", "http", id="wrong_token"),
        pytest.param("untrusted_certificate", "unreachable", id="untrusted_certificate"),
        pytest.param("undefined", "undefined", id="undefined_result"),
    ],
)
async def test_remote_failure_refuses(
    fresh: OpaTestServer, tls: tuple[Path, Path, Path], tmp_path: Path, setup: str, cause: str
) -> None:
    url, token, ca = fresh.url, TOKEN, str(tls[0])
    if setup == "slow":
        fresh.delay = 2.0
    elif setup == "down":
        url = f"https://127.0.0.1:{_free_port()}"
    elif setup == "wrong_token":
        token = "stolen"
    elif setup == "untrusted_certificate":
        ca = str(make_tls(tmp_path / "other")[0])
    elif setup == "undefined":
        fresh.undefined = True
    started = time.monotonic()
    record = _record()
    engine = RemoteEngine(url, token, ca, 0.3)
    try:
        with pytest.raises(PolicyUnavailableError, match=r"^policy unavailable$"):
            await Authorizer(engine).authorize("predict", PRINCIPAL, TENANT, record, model=_model("acme"))
    finally:
        await engine.close()
    assert time.monotonic() - started < 1.5, "the timeout did not bound the call"
    assert (record.detail["policy"]["decision"], record.detail["policy"]["cause"]) == ("unavailable", cause)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("http://127.0.0.1:8181", id="plain_http"),
        pytest.param("https://127.0.0.1:8181/v1/data", id="with_path"),
    ],
)
def test_remote_url_must_be_https_without_path(tls: tuple[Path, Path, Path], url: str) -> None:
    with pytest.raises(ConfigError):
        RemoteEngine(url, TOKEN, str(tls[0]), 1.0)


def test_remote_engine_through_the_grpc_api(tmp_path: Path, tls: tuple[Path, Path, Path]) -> None:
    """`ire serve` with policy.engine = "remote": decisions, their revision in the audit, and refusal when OPA goes."""
    opa = OpaTestServer(load_policy_set(SHIPPED), tls[1], tls[2]).start()
    home = make_home(tmp_path / "home")
    (home.root / "opa").mkdir()
    (home.root / "opa" / "token").write_text(TOKEN + "\n")
    (home.root / "opa" / "ca.pem").write_bytes(tls[0].read_bytes())
    server = start_server(home, {"IRE_POLICY__ENGINE": "remote", "IRE_POLICY__REMOTE_URL": opa.url})
    request = build_request("mlp", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})

    def predict(scopes: tuple[str, ...]) -> tuple[grpc.StatusCode, str, dict[str, Any]]:
        md = (("authorization", f"Bearer {server.token('acme', scopes)}"),)
        try:
            _, call = server.stub().ModelInfer.with_call(request, metadata=md, timeout=60)
            code, details = grpc.StatusCode.OK, ""
        except grpc.RpcError as exc:
            call, code, details = exc, exc.code(), exc.details()
        request_id = dict(call.trailing_metadata())["x-request-id"]
        return code, details, next(r for r in read_records(home.audit_dir) if r["request_id"] == request_id)

    try:
        code, _, record = predict(("predict",))
        assert code == grpc.StatusCode.OK
        assert record["detail"]["policy"]["engine"] == "remote"
        assert record["detail"]["policy"]["revision"] == f"remote:ire={opa.policy_set.revision}"
        code, details, _ = predict(("admin",))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "needs scope 'predict'" in details
        opa.stop()
        code, details, record = predict(("predict",))
        assert code == grpc.StatusCode.PERMISSION_DENIED and details.startswith("policy unavailable")
        assert record["detail"]["policy"]["cause"] == "unreachable"
    finally:
        opa.stop()
        stop_server(server)


def test_query_paths_match_opa_data_api() -> None:
    assert Query.AUTHZ.value.replace(".", "/") == "ire/authz"
