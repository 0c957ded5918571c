"""Reloading the policy set on a running server: atomic, tested first, never opening the door.

The server polls its home's policies/ every 0.2 s here. A candidate set replaces the one
in force only if it compiles and passes its own tests; otherwise the old revision serves on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from protos import admin_pb2, admin_pb2_grpc
from supervisor.audit import read_records
from supervisor.client import build_request
from supervisor.policy.policyset import load_policy_set
from tests.conftest import Server, ire, make_home, start_server, stop_server

POLL = "0.2"
# Adds a deny rule to the shipped ire.authz (for this suite's token subject), with a test.
SUSPEND = """package ire.authz

violations contains "principal acme-test is suspended" if input.principal.sub == "acme-test"
"""
SUSPEND_TEST = """package ire.suspend_test

import data.ire.authz

test_acme_test_suspended if {
	"principal acme-test is suspended" in authz.violations with input as {"principal": {"sub": "acme-test"}}
}
"""
# Grants everything: the shipped tests fail on it, so it must never be put in force.
OPEN_DOOR = "package ire.authz\n\nallow if true\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = make_home(tmp_path_factory.mktemp("reload") / "home")
    server = start_server(home, {"IRE_POLICY__RELOAD_POLL_SECONDS": POLL})
    yield server
    stop_server(server)


@pytest.fixture
def policies(srv: Server) -> Iterator[Path]:
    """The home's policies/, restored (and reloaded) after the test."""
    directory = srv.home.policies_dir
    backup = directory.parent / "policies.bak"
    shutil.copytree(directory, backup)
    original = load_policy_set(directory).revision
    yield directory
    shutil.rmtree(directory)
    shutil.move(backup, directory)
    _wait_for_revision(srv, original)


def _md(srv: Server, scopes: tuple[str, ...] = ("predict",)) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {srv.token('acme', scopes)}"),)


def _predict(srv: Server, scopes: tuple[str, ...] = ("predict",)) -> tuple[grpc.StatusCode, str, dict[str, Any]]:
    request = build_request("mlp", {"input": np.zeros((1, 64), np.float32)}, {"input": "FP32"})
    try:
        _, call = srv.stub().ModelInfer.with_call(request, metadata=_md(srv, scopes), timeout=60)
        code, details = grpc.StatusCode.OK, ""
    except grpc.RpcError as exc:
        call, code, details = exc, exc.code(), exc.details()
    request_id = dict(call.trailing_metadata())["x-request-id"]
    record = next(r for r in read_records(srv.home.audit_dir) if r["request_id"] == request_id)
    return code, details, record


def _ops_token(srv: Server) -> str:
    """An admin token whose subject the SUSPEND rule does not name."""
    auth = srv.home.settings().auth
    return srv.home.issuer_key().issue(
        issuer=auth.issuer, audience=auth.audience, subject="ops", tenant="acme", scopes=["admin"], ttl_seconds=600
    )


def _reload(srv: Server) -> admin_pb2.ReloadPolicyResponse:
    stub = admin_pb2_grpc.AdminServiceStub(grpc.insecure_channel(srv.address))
    md = (("authorization", f"Bearer {_ops_token(srv)}"),)
    return stub.ReloadPolicy(admin_pb2.ReloadPolicyRequest(), metadata=md, timeout=60)


def _revision_in_force(srv: Server) -> str:
    return _predict(srv)[2]["detail"]["policy"]["revision"]


def _wait_for_revision(srv: Server, revision: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while _revision_in_force(srv) != revision:
        assert time.monotonic() < deadline, f"revision {revision[:12]} not in force after {timeout} s"
        time.sleep(0.1)


def test_hot_reload_on_file_change_takes_effect(srv: Server, policies: Path) -> None:
    before = _revision_in_force(srv)
    (policies / "suspend.rego").write_text(SUSPEND)
    (policies / "suspend_test.rego").write_text(SUSPEND_TEST)
    after = load_policy_set(policies).revision
    _wait_for_revision(srv, after)
    code, details, record = _predict(srv)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "principal acme-test is suspended" in details
    assert record["detail"]["policy"]["revision"] == after != before
    watcher = [r for r in read_records(srv.home.audit_dir) if r["action"] == "policy.reload"]
    assert watcher and watcher[-1]["detail"]["revision"] == after and watcher[-1]["detail"]["previous"] == before


def test_reload_with_syntax_error_keeps_old_revision_and_serves_on(srv: Server, policies: Path) -> None:
    before = _revision_in_force(srv)
    (policies / "broken.rego").write_text("package ire.authz\n\nviolations contains msg if {\n")
    with pytest.raises(grpc.RpcError) as info:
        _reload(srv)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "broken.rego" in info.value.details() and f"keeping revision {before[:12]}" in info.value.details()
    time.sleep(float(POLL) * 3)  # the watcher sees the file too, and refuses it too
    code, _, record = _predict(srv)
    assert code == grpc.StatusCode.OK
    assert record["detail"]["policy"]["revision"] == before


def test_reload_with_failing_test_never_opens_the_door(srv: Server, policies: Path) -> None:
    before = _revision_in_force(srv)
    (policies / "open.rego").write_text(OPEN_DOOR)
    with pytest.raises(grpc.RpcError) as info:
        _reload(srv)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "tests fail" in info.value.details()
    time.sleep(float(POLL) * 3)
    code, details, record = _predict(srv, scopes=("admin",))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "needs scope 'predict'" in details
    assert record["detail"]["policy"]["revision"] == before


def test_ire_policy_reload_cli_reaches_the_server(srv: Server, policies: Path) -> None:
    (policies / "suspend.rego").write_text(SUSPEND)
    (policies / "suspend_test.rego").write_text(SUSPEND_TEST)
    after = load_policy_set(policies).revision
    proc = ire("policy", "reload", "--server", srv.address, "--token", _ops_token(srv), home=srv.home.root)
    # The watcher may have loaded it first: either way this revision is now in force.
    assert f"revision {after[:12]} in force" in proc.stdout
    assert _predict(srv)[0] == grpc.StatusCode.PERMISSION_DENIED


def test_ire_policy_reload_cli_refuses_a_broken_set(srv: Server, policies: Path) -> None:
    (policies / "broken.rego").write_text("package ire.authz\n\nallow if {\n")
    local = ire("policy", "reload", home=srv.home.root, check=False)
    assert local.returncode == 1 and "broken.rego" in local.stderr
    remote = ire(
        "policy", "reload", "--server", srv.address, "--token", _ops_token(srv), home=srv.home.root, check=False
    )
    assert remote.returncode == 1 and "FAILED_PRECONDITION" in remote.stderr
