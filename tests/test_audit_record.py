"""What one call's audit record turns into: its declared fields, and nothing else."""

from __future__ import annotations

from dataclasses import fields

from supervisor.audit import AuditRecord


def _record() -> AuditRecord:
    record = AuditRecord(time=1_700_000_000.5, request_id="r1", action="predict", peer="ipv4:10.0.0.1:5")
    record.tenant, record.model = "acme", "mlp"
    record.detail = {"batch": 2, "policy": {"decision": "allow", "reasons": ["a"]}}
    return record


def test_record_holds_every_declared_field() -> None:
    out = _record().to_dict()
    assert list(out) == [f.name for f in fields(AuditRecord)]
    assert (out["tenant"], out["model"], out["detail"]["batch"]) == ("acme", "mlp", 2)


def test_an_attribute_that_is_not_a_field_never_reaches_the_log() -> None:
    # A misspelt field set on the record must not become a member nobody declared.
    record = _record()
    record.tenat = "typo"  # type: ignore[attr-defined]
    for detached in (True, False):
        out = record.to_dict(detached=detached)
        assert "tenat" not in out
        assert set(out) == {f.name for f in fields(AuditRecord)}


def test_detached_record_does_not_change_with_the_call() -> None:
    record = _record()
    out = record.to_dict()
    record.detail["policy"]["reasons"].append("b")
    record.tenant = "other"
    assert out["detail"]["policy"]["reasons"] == ["a"]
    assert out["tenant"] == "acme"
    shared = record.to_dict(detached=False)
    assert shared["detail"] is record.detail  # for a caller that encodes it at once
