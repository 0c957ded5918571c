"""The OIP v2 API end to end: a real `ire serve` subprocess, real workers, real models."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import grpc
import numpy as np
import onnxruntime as ort
import pytest

from protos.inference import grpc_predict_v2_pb2 as oip
from supervisor.auth import IssuerKey
from supervisor.client import build_request, decode_response
from supervisor.modelgraph.build import build_int64_model, build_mlp
from tests.conftest import OIP_DATATYPES, Server


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _reference(model: bytes, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def _infer(server: Server, request: oip.ModelInferRequest, md: tuple[tuple[str, str], ...] | None = None):
    return server.stub().ModelInfer(request, metadata=server.metadata() if md is None else md, timeout=60)


def _code(server: Server, request: oip.ModelInferRequest, md: tuple[tuple[str, str], ...]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        _infer(server, request, md)
    return info.value


def _mlp_request(rows: int = 1) -> tuple[oip.ModelInferRequest, np.ndarray]:
    x = np.random.default_rng(rows).standard_normal((rows, 64)).astype(np.float32)
    return build_request("mlp", {"input": x}, {"input": "FP32"}), x


def test_server_live_and_ready_without_token(server: Server) -> None:
    stub = server.stub()
    assert stub.ServerLive(oip.ServerLiveRequest()).live
    assert stub.ServerReady(oip.ServerReadyRequest()).ready
    assert stub.ServerMetadata(oip.ServerMetadataRequest()).name == "ire"


def test_mlp_prediction_matches_onnxruntime(server: Server) -> None:
    request, x = _mlp_request(rows=3)
    got = decode_response(_infer(server, request))["output"]
    want = _reference(build_mlp(), {"input": x})["output"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_typed_fp32_contents_match_raw(server: Server) -> None:
    request, x = _mlp_request()
    typed = oip.ModelInferRequest(model_name="mlp")
    typed.inputs.add(name="input", datatype="FP32", shape=[1, 64]).contents.fp32_contents.extend(x.ravel().tolist())
    np.testing.assert_array_equal(
        decode_response(_infer(server, typed))["output"], decode_response(_infer(server, request))["output"]
    )


def test_int64_model_raw_and_typed(server: Server) -> None:
    tokens = np.array([[1, -2, 3, 2**40], [0, 5, -7, 9]], dtype=np.int64)
    want = _reference(build_int64_model(), {"tokens": tokens})
    raw = build_request("tokens", {"tokens": tokens}, {"tokens": "INT64"})
    typed = oip.ModelInferRequest(model_name="tokens")
    typed.inputs.add(name="tokens", datatype="INT64", shape=[2, 4]).contents.int64_contents.extend(
        tokens.ravel().tolist()
    )
    for request in (raw, typed):
        got = decode_response(_infer(server, request))
        np.testing.assert_array_equal(got["scores"], want["scores"])
        np.testing.assert_allclose(got["total"], want["total"], rtol=1e-5)


@pytest.mark.parametrize("datatype", OIP_DATATYPES)
def test_every_oip_datatype_round_trips_raw(server: Server, datatype: str) -> None:
    from sandbox.dtypes import OIP_TO_NUMPY

    dtype = OIP_TO_NUMPY[datatype]
    x = (np.arange(6) % 2).astype(dtype) if datatype == "BOOL" else np.arange(6).astype(dtype)
    request = build_request(f"id-{datatype.lower()}", {"x": x.reshape(2, 3)}, {"x": datatype})
    response = _infer(server, request)
    assert response.outputs[0].datatype == datatype
    np.testing.assert_array_equal(decode_response(response)["y"], x.reshape(2, 3))


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        pytest.param("BOOL", "bool_contents", [True, False, True], id="bool"),
        pytest.param("INT8", "int_contents", [-128, 0, 127], id="int8"),
        pytest.param("INT16", "int_contents", [-3, 0, 300], id="int16"),
        pytest.param("INT32", "int_contents", [-(2**31), 0, 2**31 - 1], id="int32"),
        pytest.param("UINT8", "uint_contents", [0, 1, 255], id="uint8"),
        pytest.param("UINT16", "uint_contents", [0, 1, 65535], id="uint16"),
        pytest.param("UINT32", "uint_contents", [0, 1, 2**32 - 1], id="uint32"),
        pytest.param("UINT64", "uint64_contents", [0, 1, 2**64 - 1], id="uint64"),
        pytest.param("FP64", "fp64_contents", [0.5, -1.25, 1e300], id="fp64"),
    ],
)
def test_typed_contents_for_each_datatype(server: Server, datatype: str, field: str, values: list[object]) -> None:
    request = oip.ModelInferRequest(model_name=f"id-{datatype.lower()}")
    getattr(request.inputs.add(name="x", datatype=datatype, shape=[1, 3]).contents, field).extend(values)
    got = decode_response(_infer(server, request))["y"].ravel().tolist()
    assert got == values


def test_metadata_has_dynamic_dims(server: Server) -> None:
    meta = server.stub().ModelMetadata(oip.ModelMetadataRequest(name="mlp"), metadata=server.metadata(), timeout=30)
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("input", "FP32", [-1, 64])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("output", "FP32", [-1, 10])]
    assert list(meta.versions) == ["1"]


# Tenant isolation


def test_other_tenants_model_is_not_found_like_a_missing_one(server: Server) -> None:
    request, _ = _mlp_request()
    theirs = _code(server, request, server.metadata("globex"))
    request.model_name = "no-such-model"
    missing = _code(server, request, server.metadata("globex"))
    assert theirs.code() == missing.code() == grpc.StatusCode.NOT_FOUND
    strip = lambda e: e.details().split(" (request id")[0].replace("'mlp'", "X").replace("'no-such-model'", "X")  # noqa: E731
    assert strip(theirs) == strip(missing)


def test_other_tenants_model_metadata_is_not_found(server: Server) -> None:
    with pytest.raises(grpc.RpcError) as info:
        server.stub().ModelMetadata(
            oip.ModelMetadataRequest(name="private"), metadata=server.metadata("acme"), timeout=30
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_model_ready_does_not_reveal_other_tenants_models(server: Server) -> None:
    stub = server.stub()
    assert stub.ModelReady(oip.ModelReadyRequest(name="mlp"), metadata=server.metadata("acme")).ready
    assert not stub.ModelReady(oip.ModelReadyRequest(name="mlp"), metadata=server.metadata("globex")).ready


# Authentication


def _home_key(server: Server) -> IssuerKey:
    return server.home.issuer_key()


def _issue(key: IssuerKey, **overrides: object) -> str:
    claims: dict[str, object] = {
        "issuer": "ire",
        "audience": "ire",
        "subject": "acme-test",
        "tenant": "acme",
        "scopes": ["predict"],
        "ttl_seconds": 600,
    }
    claims.update(overrides)
    return key.issue(**claims)  # type: ignore[arg-type]


def _unsigned(alg: str, payload: dict[str, object], kid: str, secret: bytes | None = None) -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT", "kid": kid}).encode())
    body = _b64(json.dumps(payload).encode())
    signing_input = f"{header}.{body}".encode()
    signature = "" if secret is None else _b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
    return f"{header}.{body}.{signature}"


def _claims(server: Server) -> dict[str, object]:
    now = int(time.time())
    return {
        "iss": "ire",
        "aud": "ire",
        "sub": "x",
        "tenant": "acme",
        "scope": "predict",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
    }


def _bad_tokens(server: Server) -> dict[str, str | None]:
    key = _home_key(server)
    good = _issue(key)
    header, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["tenant"] = "globex"
    public_pem = key.public_jwk()["x"].encode()
    return {
        "missing": None,
        "expired": _issue(key, now=time.time() - 7200, ttl_seconds=60),
        "wrong_audience": _issue(key, audience="someone-else"),
        "wrong_issuer": _issue(key, issuer="evil"),
        "alg_none": _unsigned("none", _claims(server), key.kid),
        "hs256_with_public_key": _unsigned("HS256", _claims(server), key.kid, secret=public_pem),
        "unknown_kid": _issue(IssuerKey.generate()),
        "tampered_payload": f"{header}.{_b64(json.dumps(claims).encode())}.{signature}",
        "oversized": _issue(key, subject="a" * 9000),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "expired",
        "wrong_audience",
        "wrong_issuer",
        "alg_none",
        "hs256_with_public_key",
        "unknown_kid",
        "tampered_payload",
        "oversized",
    ],
)
def test_bad_token_is_unauthenticated(server: Server, case: str) -> None:
    token = _bad_tokens(server)[case]
    md = () if token is None else (("authorization", f"Bearer {token}"),)
    request, _ = _mlp_request()
    error = _code(server, request, md)
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "request id" in error.details()
    # The reply names no internal detail of the check.
    assert "got" not in error.details()


def test_token_for_unknown_tenant_is_unauthenticated(server: Server) -> None:
    token = _issue(_home_key(server), tenant="nobody")
    request, _ = _mlp_request()
    assert _code(server, request, (("authorization", f"Bearer {token}"),)).code() == grpc.StatusCode.UNAUTHENTICATED


def test_two_authorization_headers_are_refused(server: Server) -> None:
    request, _ = _mlp_request()
    md = server.metadata("acme") + server.metadata("globex")
    assert _code(server, request, md).code() == grpc.StatusCode.UNAUTHENTICATED


def test_admin_only_token_cannot_predict(server: Server) -> None:
    token = server.token("acme", scopes=("admin",))
    request, _ = _mlp_request()
    assert _code(server, request, (("authorization", f"Bearer {token}"),)).code() == grpc.StatusCode.PERMISSION_DENIED


# Input validation


def _invalid(server: Server, request: oip.ModelInferRequest) -> str:
    error = _code(server, request, server.metadata())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    return error.details()


def test_wrong_shape_is_invalid_argument(server: Server) -> None:
    request = build_request("mlp", {"input": np.zeros((1, 63), np.float32)}, {"input": "FP32"})
    assert "shape [1, 63], expected [-1, 64]" in _invalid(server, request)


def test_wrong_dtype_is_invalid_argument(server: Server) -> None:
    request = build_request("mlp", {"input": np.zeros((1, 64))}, {"input": "FP64"})
    assert "datatype 'FP64', expected 'FP32'" in _invalid(server, request)


def test_oversized_request_is_invalid_argument(server: Server) -> None:
    limit = server.home.settings().server.max_request_bytes
    rows = limit // (64 * 4) + 1
    request = build_request("mlp", {"input": np.zeros((rows, 64), np.float32)}, {"input": "FP32"})
    assert f"limit is {limit}" in _invalid(server, request)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            lambda r: r.raw_input_contents.__setitem__(0, b"\0" * 12), "raw bytes, expected 256", id="short_raw"
        ),
        pytest.param(lambda r: r.inputs[0].__setattr__("name", "other"), "do not match", id="unknown_input"),
        pytest.param(lambda r: r.raw_input_contents.append(b""), "raw_input_contents for 1 inputs", id="extra_raw"),
        pytest.param(lambda r: r.outputs.add(name="nope"), "not outputs of the model", id="unknown_output"),
        pytest.param(lambda r: r.inputs[0].contents.fp32_contents.append(1.0), "sets contents", id="raw_and_typed"),
    ],
)
def test_malformed_request_is_invalid_argument(server: Server, mutate, message: str) -> None:
    request, _ = _mlp_request()
    mutate(request)
    assert message in _invalid(server, request)


def test_typed_value_out_of_range_is_invalid_argument(server: Server) -> None:
    request = oip.ModelInferRequest(model_name="id-int8")
    request.inputs.add(name="x", datatype="INT8", shape=[1, 3]).contents.int_contents.extend([1, 2, 300])
    assert "outside the INT8 range" in _invalid(server, request)


def test_fp16_typed_contents_refused(server: Server) -> None:
    request = oip.ModelInferRequest(model_name="id-fp16")
    request.inputs.add(name="x", datatype="FP16", shape=[1, 3]).contents.fp32_contents.extend([1, 2, 3])
    assert "send raw_input_contents" in _invalid(server, request)


# Audit


def test_every_call_is_audited_without_payload(server: Server) -> None:
    request, x = _mlp_request(rows=2)
    request_id = dict(response_trailers(server, request)).get("x-request-id")
    assert request_id
    records = {r["request_id"]: r for r in server.audit()}
    record = records[request_id]
    assert record["outcome"] == "allowed" and record["status"] == "OK"
    assert record["tenant"] == "acme" and record["principal"] == "acme-test"
    assert record["model"] == "mlp" and record["model_version"] == "1" and len(record["model_sha256"]) == 64
    assert len(record["input_sha256"]) == 64 and len(record["output_sha256"]) == 64
    assert record["latency_ms"] > 0
    # Never the payload itself.
    line = json.dumps(record)
    assert x.tobytes().hex()[:32] not in line
    assert str(float(x.ravel()[0]))[:8] not in line


def response_trailers(server: Server, request: oip.ModelInferRequest) -> tuple[tuple[str, str], ...]:
    _, call = server.stub().ModelInfer.with_call(request, metadata=server.metadata(), timeout=60)
    return tuple(call.trailing_metadata())


def test_refused_calls_are_audited(server: Server) -> None:
    request, _ = _mlp_request()
    before = len(server.audit())
    _code(server, request, ())
    _code(server, request, server.metadata("globex"))
    bad = build_request("mlp", {"input": np.zeros((1, 3), np.float32)}, {"input": "FP32"})
    _code(server, bad, server.metadata())
    outcomes = [(r["outcome"], r["status"]) for r in server.audit()[before:]]
    assert outcomes == [("denied", "UNAUTHENTICATED"), ("denied", "NOT_FOUND"), ("malformed", "INVALID_ARGUMENT")]
