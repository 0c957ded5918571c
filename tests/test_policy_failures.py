"""An engine that fails refuses the call, and the refusal is audited: crash, timeout, no decision.

A real `ire serve` whose policy fails on purpose, differently for each model, served by the
interpreter with a 0.1 s decision deadline. (regorus cannot be interrupted: the late
decision is discarded when it returns, and the call refused.)
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from supervisor.audit import read_records
from supervisor.client import build_request
from tests.conftest import Server, make_home, start_server, stop_server

FAILING = """package ire.authz

# mlp: allowed. Every other model fails in its own way.
decision := {"allow": true, "reasons": []} if input.model.name == "mlp"

# A runtime error in the engine.
decision := {"allow": to_number(input.model.name) > 0, "reasons": []} if input.model.name == "id-fp32"

# About half a second of work: past the deadline.
decision := {"allow": true, "reasons": []} if {
	input.model.name == "id-int8"
	every i in numbers.range(1, 3000) {
		every j in numbers.range(1, 600) {
			i + j > 0
		}
	}
}

# Not a decision document.
decision := {"allow": "yes", "reasons": []} if input.model.name == "id-fp64"

# id-bool: no rule applies, the decision is undefined.
"""
# Loading is decided by ire.admission; this set admits every model, so that each call
# below fails (or not) on its authz decision alone.
ADMIT_ALL = """package ire.admission

decision := {"allow": true, "reasons": []}
"""
FAILING_TEST = """package ire.authz_test

import data.ire.authz

test_mlp_allowed if authz.decision.allow with input as {"model": {"name": "mlp"}}
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("failing") / "home")
    shutil.rmtree(home.policies_dir)
    home.policies_dir.mkdir()
    (home.policies_dir / "authz.rego").write_text(FAILING)
    (home.policies_dir / "admission.rego").write_text(ADMIT_ALL)
    (home.policies_dir / "authz_test.rego").write_text(FAILING_TEST)
    env = {"IRE_POLICY__COMPILED": "false", "IRE_POLICY__TIMEOUT_SECONDS": "0.1"}
    server = start_server(home, env)
    yield server
    stop_server(server)


def _predict(srv: Server, model: str, datatype: str = "FP32") -> tuple[grpc.StatusCode, str, dict[str, Any]]:
    from sandbox.dtypes import OIP_TO_NUMPY

    shape = (1, 64) if model == "mlp" else (1, 3)
    request = build_request(
        model,
        {"input" if model == "mlp" else "x": np.zeros(shape, OIP_TO_NUMPY[datatype])},
        {"input" if model == "mlp" else "x": datatype},
    )
    md = (("authorization", f"Bearer {srv.token()}"),)
    try:
        _, call = srv.stub().ModelInfer.with_call(request, metadata=md, timeout=60)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        call, code, details = exc, exc.code(), exc.details()
    request_id = dict(call.trailing_metadata())["x-request-id"]
    record = next(r for r in read_records(srv.home.audit_dir) if r["request_id"] == request_id)
    return code, details, record


def test_working_decision_serves(srv: Server) -> None:
    code, _, record = _predict(srv, "mlp")
    assert code == grpc.StatusCode.OK and record["detail"]["policy"]["decision"] == "allow"


@pytest.mark.parametrize(
    ("model", "datatype", "cause"),
    [
        pytest.param("id-fp32", "FP32", "crash", id="engine_crash"),
        pytest.param("id-int8", "INT8", "timeout", id="engine_timeout"),
        pytest.param("id-bool", "BOOL", "undefined", id="undefined_decision"),
        pytest.param("id-fp64", "FP64", "malformed", id="malformed_decision"),
    ],
)
def test_engine_failure_refuses_and_is_audited(srv: Server, model: str, datatype: str, cause: str) -> None:
    code, details, record = _predict(srv, model, datatype)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert details.startswith("policy unavailable (request id ")
    assert (record["outcome"], record["status"]) == ("denied", "PERMISSION_DENIED")
    policy = record["detail"]["policy"]
    assert (policy["decision"], policy["cause"]) == ("unavailable", cause)
    assert len(policy["revision"]) == 64
    # The server serves on after the failure.
    assert _predict(srv, "mlp")[0] == grpc.StatusCode.OK
