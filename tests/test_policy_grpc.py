"""Every call is decided by the Rego policy: allow and deny through the real gRPC API, per role.

A real `ire serve` with the shipped policies; tenant calls over OIP v2, admin calls over
ire.admin.v1.AdminService. Each decision lands in the audit record with its revision.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest

from protos import admin_pb2, admin_pb2_grpc
from protos.inference import grpc_predict_v2_pb2 as oip
from supervisor.audit import read_records
from supervisor.client import build_request
from supervisor.policy.policyset import load_policy_set
from tests.conftest import Server, make_home, start_server, stop_server

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("policy") / "home")
    server = start_server(home)
    yield server
    stop_server(server)


def _md(server: Server, tenant: str = "acme", scopes: tuple[str, ...] = ("predict",)) -> Metadata:
    return (("authorization", f"Bearer {server.token(tenant, scopes)}"),)


def _admin(server: Server) -> admin_pb2_grpc.AdminServiceStub:
    return admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(server.address))


def _record(server: Server, call: Any) -> dict[str, Any]:
    request_id = dict(call.trailing_metadata())["x-request-id"]
    return next(r for r in read_records(server.home.audit_dir) if r["request_id"] == request_id)


def _refused(method: Any, request: Any, md: Metadata) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        method.with_call(request, metadata=md, timeout=60)
    return info.value


def _revision(server: Server) -> str:
    return load_policy_set(server.home.policies_dir).revision


def _mlp(rows: int = 1, model: str = "mlp") -> oip.ModelInferRequest:
    return build_request(model, {"input": np.zeros((rows, 64), np.float32)}, {"input": "FP32"})


# Tenant predict


def test_tenant_predict_allowed_and_audited_with_revision(srv: Server) -> None:
    _, call = srv.stub().ModelInfer.with_call(_mlp(), metadata=_md(srv), timeout=60)
    policy = _record(srv, call)["detail"]["policy"]
    assert policy == {
        "engine": "embedded",
        "query": "ire.authz",
        "revision": _revision(srv),
        "decision": "allow",
        "reasons": [],
    }


def test_predict_with_admin_only_token_denied_with_policy_reason(srv: Server) -> None:
    error = _refused(srv.stub().ModelInfer, _mlp(), _md(srv, scopes=("admin",)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert """action "predict" needs scope 'predict'; the token has ["admin"]""" in error.details()
    record = _record(srv, error)
    assert (record["outcome"], record["status"]) == ("denied", "PERMISSION_DENIED")
    assert record["detail"]["policy"]["decision"] == "deny"
    assert record["detail"]["policy"]["revision"] == _revision(srv)


def test_free_tier_batch_over_its_bound_denied_by_policy(srv: Server) -> None:
    globex = _md(srv, "globex")
    srv.stub().ModelInfer(_mlp(rows=32, model="private"), metadata=globex, timeout=60)
    error = _refused(srv.stub().ModelInfer, _mlp(rows=33, model="private"), globex)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert 'tier "free" allows a batch of at most 32, got 33' in error.details()


def test_other_tenants_model_stays_not_found_without_scope(srv: Server) -> None:
    # The lookup comes before the decision, so a denial cannot confirm the model exists.
    error = _refused(srv.stub().ModelInfer, _mlp(model="private"), _md(srv, scopes=("admin",)))
    assert error.code() == grpc.StatusCode.NOT_FOUND


# Tenant metadata and readiness


def test_tenant_metadata_allowed(srv: Server) -> None:
    meta, call = srv.stub().ModelMetadata.with_call(oip.ModelMetadataRequest(name="mlp"), metadata=_md(srv))
    assert meta.name == "mlp"
    assert _record(srv, call)["detail"]["policy"]["decision"] == "allow"


def test_metadata_without_predict_scope_denied(srv: Server) -> None:
    error = _refused(srv.stub().ModelMetadata, oip.ModelMetadataRequest(name="mlp"), _md(srv, scopes=()))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert """action "model_metadata" needs scope 'predict'; the token has []""" in error.details()


def test_model_ready_without_predict_scope_denied(srv: Server) -> None:
    error = _refused(srv.stub().ModelReady, oip.ModelReadyRequest(name="mlp"), _md(srv, scopes=("admin",)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


# Admin actions


def test_admin_creates_and_lists_tenants_with_admin_scope(srv: Server) -> None:
    admin = _admin(srv)
    md = _md(srv, scopes=("admin",))
    created, call = admin.CreateTenant.with_call(
        admin_pb2.CreateTenantRequest(name="initech", tier="premium", labels={"team": "ml"}), metadata=md
    )
    assert (created.tenant.name, created.tenant.tier, dict(created.tenant.labels)) == (
        "initech",
        "premium",
        {"team": "ml"},
    )
    record = _record(srv, call)
    assert (record["action"], record["outcome"]) == ("admin.tenant.create", "allowed")
    assert record["detail"]["policy"]["revision"] == _revision(srv)
    listed = admin.ListTenants(admin_pb2.ListTenantsRequest(), metadata=md)
    assert "initech" in [t.name for t in listed.tenants]
    first = admin.ListTenants(admin_pb2.ListTenantsRequest(page_size=1), metadata=md)
    second = admin.ListTenants(admin_pb2.ListTenantsRequest(page_size=1, page_token=first.next_page_token), metadata=md)
    assert [t.name for t in first.tenants] == ["acme"] and [t.name for t in second.tenants] == ["globex"]


@pytest.mark.parametrize(
    ("rpc", "request_", "action"),
    [
        pytest.param("CreateTenant", admin_pb2.CreateTenantRequest(name="mallory"), "admin.tenant.create", id="create"),
        pytest.param("ListTenants", admin_pb2.ListTenantsRequest(), "admin.tenant.list", id="list"),
        pytest.param("ReloadPolicy", admin_pb2.ReloadPolicyRequest(), "admin.policy.reload", id="reload"),
    ],
)
def test_admin_action_without_admin_scope_denied_and_audited(srv: Server, rpc: str, request_: Any, action: str) -> None:
    error = _refused(getattr(_admin(srv), rpc), request_, _md(srv, scopes=("predict",)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"""action "{action}" needs scope 'admin'; the token has ["predict"]""" in error.details()
    record = _record(srv, error)
    assert (record["action"], record["outcome"], record["detail"]["policy"]["decision"]) == (action, "denied", "deny")
    names = [
        t.name
        for t in _admin(srv).ListTenants(admin_pb2.ListTenantsRequest(), metadata=_md(srv, scopes=("admin",))).tenants
    ]
    assert "mallory" not in names


def test_admin_call_without_token_is_unauthenticated(srv: Server) -> None:
    error = _refused(_admin(srv).ListTenants, admin_pb2.ListTenantsRequest(), ())
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_admin_reload_of_unchanged_set_keeps_revision(srv: Server) -> None:
    response = _admin(srv).ReloadPolicy(admin_pb2.ReloadPolicyRequest(), metadata=_md(srv, scopes=("admin",)))
    assert (response.revision, response.changed, response.compiled) == (_revision(srv), False, True)
    assert response.tests_passed > 10
