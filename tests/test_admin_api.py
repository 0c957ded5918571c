"""The admin API drives a real `ire serve`: onboarding, quotas, credentials, models, audit.

Every call goes through the policy (admin scope) and lands in the audit log.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from protos import admin_pb2 as pb
from protos import admin_pb2_grpc as pb_grpc
from supervisor.audit import read_records
from supervisor.audit.bundle import verify_bundle
from supervisor.audit.keys import AuditKey
from supervisor.client import build_request
from supervisor.modelgraph.build import build_mlp
from supervisor.signing.keys import generate_signing_key
from supervisor.signing.model_dir import sign_model_dir
from tests.conftest import Server, ire, make_home, start_server, stop_server, write_model

Metadata = tuple[tuple[str, str], ...]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("admin") / "home")
    server = start_server(home)
    yield server
    stop_server(server)


def _admin(server: Server) -> tuple[pb_grpc.AdminServiceStub, Metadata]:
    md = (("authorization", f"Bearer {server.token('acme', ('admin',))}"),)
    return pb_grpc.AdminServiceStub(grpc.insecure_channel(server.address)), md


def _bearer(token: str) -> Metadata:
    return (("authorization", f"Bearer {token}"),)


def _mlp(model: str = "mlp") -> Any:
    return build_request(model, {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})


def _signed_model(tmp: Path) -> tuple[bytes, bytes, str]:
    """A freshly signed MLP: its bytes, its signature bundle and the signer's public PEM."""
    generate_signing_key(tmp / "key.pem", tmp / "key.pub")
    model_dir = write_model(tmp / "model", build_mlp(seed=7))
    sign_model_dir(model_dir, tmp / "key.pem", tmp / "model.sig")
    return (model_dir / "model.onnx").read_bytes(), (tmp / "model.sig").read_bytes(), (tmp / "key.pub").read_text()


def test_onboard_quota_signer_model_predict_then_revoke(srv: Server, tmp_path: Path) -> None:
    admin, md = _admin(srv)
    admin.CreateTenant(pb.CreateTenantRequest(name="hooli", tier="standard"), metadata=md)
    quota = admin.SetQuota(pb.SetQuotaRequest(tenant="hooli", overrides={"daily": "1000", "rate": "50"}), metadata=md)
    assert (quota.overrides["daily"], quota.limits["daily"]) == ("1000", "1000")
    onnx, signature, pem = _signed_model(tmp_path)
    signer = admin.AddSigner(pb.AddSignerRequest(name="hooli-ci", tenant="hooli", public_key_pem=pem), metadata=md)
    assert signer.key_hint
    model = admin.RegisterModel(
        pb.RegisterModelRequest(tenant="hooli", name="mlp", onnx=onnx, signature=signature), metadata=md
    )
    assert (model.version, model.signer) == ("1", "hooli-ci")
    issued = admin.IssueToken(pb.IssueTokenRequest(tenant="hooli", scopes=["predict"], ttl_seconds=300), metadata=md)
    reply = srv.stub().ModelInfer(_mlp(), metadata=_bearer(issued.token), timeout=60)
    assert reply.model_name == "mlp"
    shown = admin.GetQuota(pb.GetQuotaRequest(tenant="hooli"), metadata=md)
    assert shown.usage_known and shown.daily_used == 1
    admin.RevokeToken(pb.RevokeTokenRequest(token_id=issued.token_id, reason="test"), metadata=md)
    with pytest.raises(grpc.RpcError) as info:
        srv.stub().ModelInfer(_mlp(), metadata=_bearer(issued.token), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    actions = {(r["action"], r["outcome"]) for r in read_records(srv.home.audit_dir)}
    for action in ("admin.tenant.create", "admin.quota.set", "admin.signer.add", "admin.model.register",
                   "admin.token.issue", "admin.token.revoke"):  # fmt: skip
        assert (action, "allowed") in actions
    issue = next(r for r in read_records(srv.home.audit_dir) if r["action"] == "admin.token.issue")
    assert issued.token not in json.dumps(issue)


def test_suspended_tenant_tokens_refused_until_resumed(srv: Server) -> None:
    admin, md = _admin(srv)
    token = srv.token("acme", ("predict",))
    admin.SuspendTenant(pb.SuspendTenantRequest(name="globex", suspended=True), metadata=md)
    with pytest.raises(grpc.RpcError) as info:
        srv.stub().ModelMetadata(pb_oip_metadata("private"), metadata=_bearer(srv.token("globex")), timeout=60)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    admin.SuspendTenant(pb.SuspendTenantRequest(name="globex", suspended=False), metadata=md)
    assert srv.stub().ModelInfer(_mlp(), metadata=_bearer(token), timeout=60).model_name == "mlp"


def pb_oip_metadata(name: str) -> Any:
    from protos.inference import grpc_predict_v2_pb2 as oip

    return oip.ModelMetadataRequest(name=name)


def test_tenant_update_delete_and_models_listed(srv: Server) -> None:
    admin, md = _admin(srv)
    admin.CreateTenant(pb.CreateTenantRequest(name="umbrella", labels={"team": "a"}), metadata=md)
    updated = admin.UpdateTenant(
        pb.UpdateTenantRequest(name="umbrella", tier="premium", labels={"cost": "x"}), metadata=md
    ).tenant
    assert (updated.tier, dict(updated.labels)) == ("premium", {"team": "a", "cost": "x"})
    admin.DeleteTenant(pb.DeleteTenantRequest(name="umbrella"), metadata=md)
    names = {t.name for t in admin.ListTenants(pb.ListTenantsRequest(), metadata=md).tenants}
    assert "umbrella" not in names
    models = admin.ListModels(pb.ListModelsRequest(tenant="acme"), metadata=md).models
    assert "mlp" in {m.name for m in models}


def test_tenant_with_models_cannot_be_deleted(srv: Server) -> None:
    admin, md = _admin(srv)
    with pytest.raises(grpc.RpcError) as info:
        admin.DeleteTenant(pb.DeleteTenantRequest(name="acme"), metadata=md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        pytest.param({"bogus": "1"}, "bogus", id="unknown-field"),
        pytest.param({"daily": "inf"}, "daily", id="infinite"),
        pytest.param({"daily": "nan"}, "daily", id="nan"),
        pytest.param({"daily": "-5"}, "daily", id="negative"),
        pytest.param({"daily": "1.5"}, "daily", id="fractional-count"),
    ],
)
def test_bad_quota_override_rejected(srv: Server, overrides: dict[str, str], named: str) -> None:
    admin, md = _admin(srv)
    with pytest.raises(grpc.RpcError) as info:
        admin.SetQuota(pb.SetQuotaRequest(tenant="acme", overrides=overrides), metadata=md)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert named in (info.value.details() or "")


def test_register_model_path_traversal_filename_rejected(srv: Server) -> None:
    admin, md = _admin(srv)
    with pytest.raises(grpc.RpcError) as info:
        admin.RegisterModel(
            pb.RegisterModelRequest(tenant="acme", name="evil", onnx=b"x", filename="../../x.onnx"), metadata=md
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_signers_listed_and_removed(srv: Server, tmp_path: Path) -> None:
    admin, md = _admin(srv)
    generate_signing_key(tmp_path / "k.pem", tmp_path / "k.pub")
    pem = (tmp_path / "k.pub").read_text()
    admin.AddSigner(pb.AddSignerRequest(name="temp", public_key_pem=pem), metadata=md)
    assert "temp" in {s.name for s in admin.ListSigners(pb.ListSignersRequest(), metadata=md).signers}
    admin.RemoveSigner(pb.RemoveSignerRequest(name="temp"), metadata=md)
    assert "temp" not in {s.name for s in admin.ListSigners(pb.ListSignersRequest(), metadata=md).signers}


def test_audit_checkpoint_export_verifies(srv: Server) -> None:
    admin, md = _admin(srv)
    reply = admin.ExportAuditCheckpoint(pb.ExportAuditCheckpointRequest(), metadata=md)
    assert reply.tree_size > 0
    report = verify_bundle(json.loads(reply.bundle), AuditKey.load(srv.home.audit_key_path).public)
    assert report.entries > 0


@pytest.mark.parametrize(
    ("rpc", "request_"),
    [
        pytest.param("IssueToken", pb.IssueTokenRequest(tenant="acme", scopes=["admin"]), id="issue-admin-token"),
        pytest.param("RevokeToken", pb.RevokeTokenRequest(token_id="x"), id="revoke"),
        pytest.param("SetQuota", pb.SetQuotaRequest(tenant="acme", overrides={"daily": "1"}), id="quota"),
        pytest.param("SuspendTenant", pb.SuspendTenantRequest(name="globex", suspended=True), id="suspend"),
        pytest.param("ExportAuditCheckpoint", pb.ExportAuditCheckpointRequest(), id="audit"),
    ],
)
def test_tenant_token_cannot_use_admin_api(srv: Server, rpc: str, request_: Any) -> None:
    admin, _ = _admin(srv)
    with pytest.raises(grpc.RpcError) as info:
        getattr(admin, rpc)(request_, metadata=_bearer(srv.token("acme", ("predict",))), timeout=60)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_cli_drives_remote_supervisor(srv: Server, tmp_path: Path) -> None:
    remote = ("--server", srv.address, "--token", srv.token("acme", ("admin",)))
    # No home on this side: everything goes through the admin API.
    ire("tenant", "create", "soylent", "--tier", "free", *remote, home=tmp_path / "nohome")
    assert "soylent\tfree" in ire("tenant", "list", *remote).stdout
    ire("quota", "set", "soylent", "--daily", "5", "--memory", "1G", *remote)
    shown = json.loads(ire("quota", "show", "soylent", *remote).stdout)
    assert (shown["limits"]["daily"], shown["usage"]["daily_used"]) == ("5", 0)
    token = ire("token", "issue", "--tenant", "soylent", *remote).stdout.strip()
    assert token.count(".") == 2
    assert "mlp" in ire("model", "list", "--tenant", "acme", *remote).stdout
    ire("audit", "checkpoint", "--out", str(tmp_path / "bundle.json"), *remote)
    assert json.loads((tmp_path / "bundle.json").read_text())["entries"]


def test_cli_remote_refusal_exits_nonzero_with_status(srv: Server) -> None:
    proc = ire("tenant", "list", "--server", srv.address, "--token", srv.token("acme", ("predict",)), check=False)
    assert proc.returncode == 1
    assert "PERMISSION_DENIED" in proc.stderr


def test_cli_local_suspend_update_revoke_delete(tmp_path: Path) -> None:
    from supervisor.home import Home

    home = Home.init(tmp_path / "home")
    ire("tenant", "create", "initech", "--label", "team=a", home=home.root)
    ire("tenant", "update", "initech", "--tier", "premium", home=home.root)
    ire("tenant", "suspend", "initech", home=home.root)
    assert "initech\tpremium\tsuspended" in ire("tenant", "list", home=home.root).stdout
    ire("tenant", "resume", "initech", home=home.root)
    ire("token", "revoke", "some-jti", "--reason", "lost", home=home.root)
    registry = home.registry()
    assert "some-jti" in registry.revoked_token_ids()
    assert not registry.get_tenant("initech").suspended
    ire("tenant", "delete", "initech", home=home.root)
    assert ire("tenant", "list", home=home.root).stdout == ""
    actions = {r["action"] for r in read_records(home.audit_dir)}
    assert {"tenant.suspend", "tenant.resume", "tenant.delete", "token.revoke"} <= actions
