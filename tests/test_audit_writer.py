"""The writer: several processes, torn tails, retention, bundles and admin records."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from supervisor.audit import AuditKey, AuditWriter, read_records
from supervisor.audit.bundle import export_bundle, verify_bundle
from supervisor.audit.chain import parse_line
from supervisor.audit.segments import TORN_DIR, list_segments
from supervisor.audit.verify import AuditTamperedError, DamageKind, verify_log
from supervisor.cli import main
from supervisor.errors import AuditWriteError
from supervisor.home import Home
from supervisor.settings import AuditSettings
from tests.conftest import ire
from tests.test_audit_tamper import SMALL, build_log, record


def cli(home: Path, *args: str) -> int:
    """The `ire` command line in this process (setup steps; asserted runs use `ire`)."""
    return main(["--home", str(home), *args])


def test_audit_multiprocess_writers_keep_one_chain(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    key = AuditKey.generate()
    key.save(tmp_path / "audit.pem")
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from supervisor.audit import AuditKey, AuditWriter
        from supervisor.settings import AuditSettings
        name, count = sys.argv[1], int(sys.argv[2])
        key = AuditKey.load(Path(sys.argv[3]))
        settings = AuditSettings(checkpoint_every_records=50, segment_max_bytes=40000)
        writer = AuditWriter(Path(sys.argv[4]), key, settings)
        for i in range(count):
            writer.append({"time": 1.5, "request_id": f"{name}-{i}", "action": "predict", "tenant": name})
        writer.close(strict=True)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, f"w{n}", "400", str(tmp_path / "audit.pem"), str(directory)])
        for n in range(4)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    report = verify_log(directory, key.public)
    ids = [r["request_id"] for r in read_records(directory)]
    assert len(ids) == len(set(ids)) == 1600 == report.records
    assert report.segments > 3  # rotations happened while all four were writing


def test_audit_torn_tail_repaired_and_recorded(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    key = AuditKey.generate()
    writer = AuditWriter(directory, key, SMALL)
    for i in range(5):
        writer.append(record(i))
    writer.close(strict=True)
    path = list_segments(directory)[-1][1]
    # A later write cut short by a crash (power loss, a full disk): half a line at the end.
    torn = b'{"action":"predict","detail":{},"lat'
    with path.open("ab") as f:
        f.write(torn)
    reopened = AuditWriter(directory, key, SMALL)
    reopened.append(record(99))
    reopened.close(strict=True)
    repairs = [parse_line(line).body for line in path.read_bytes().splitlines() if b'"type":"repair"' in line]
    assert len(repairs) == 1 and repairs[0]["removed_bytes"] == len(torn)
    assert (directory / repairs[0]["saved_as"]).read_bytes() == torn
    assert (directory / TORN_DIR).is_dir()
    verify_log(directory, key.public)
    assert [r["request_id"] for r in read_records(directory)][-1] == "req-0099"


def test_audit_torn_bytes_covered_by_checkpoint_are_not_repaired(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    key = build_log(directory, 25)
    path = list_segments(directory)[-1][1]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # the signed last checkpoint loses its end
    with pytest.raises(AuditWriteError, match="covered by a checkpoint"):
        AuditWriter(directory, key, SMALL)


def test_audit_retention_removes_with_signed_record_and_verifies_across(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    key = build_log(directory, 80)
    before = list_segments(directory)
    settings = AuditSettings(checkpoint_every_records=10, segment_max_bytes=6000, retention_days=1)
    writer = AuditWriter(directory, key, settings)
    removed = writer.prune(now=time.time() + 2 * 86400)  # every sealed segment is now past retention
    writer.close(strict=True)
    assert removed and len(list_segments(directory)) == len(before) - len(removed)
    report = verify_log(directory, key.public)
    assert report.retention_boundary is not None and report.retention_boundary > 0
    (retention,) = [e for e in read_records_all(directory) if e["type"] == "retention"]
    assert [r["segment"] for r in retention["removed"]] == removed
    # A bundle cut from the pruned log still proves its range against a signed checkpoint.
    out = tmp_path / "after-retention.json"
    with out.open("w") as f:
        export_bundle(directory, key.public, 1_700_000_070.0, 1_700_000_075.9, f)
    assert verify_bundle(json.loads(out.read_text()), key.public).entries > 0
    # A further segment deleted by hand, past the signed boundary, is still caught.
    list_segments(directory)[0][1].unlink()
    with pytest.raises(AuditTamperedError) as caught:
        verify_log(directory, key.public)
    assert caught.value.damage.kind == DamageKind.DELETED


def read_records_all(directory: Path) -> list[dict[str, object]]:
    return [parse_line(line).body for _, p in list_segments(directory) for line in p.read_bytes().splitlines()]


def test_audit_bundle_verifies_offline_and_detects_tampering(tmp_path: Path) -> None:
    directory = tmp_path / "audit"
    directory.mkdir()
    key = build_log(directory, 70)
    out = tmp_path / "bundle.json"
    with out.open("w") as f:
        summary = export_bundle(directory, key.public, 1_700_000_020.0, 1_700_000_040.9, f)
    bundle = json.loads(out.read_text())
    report = verify_bundle(bundle, key.public)
    assert report.consistency_checked and report.latest_size > report.checkpoint_size
    ids = [json.loads(e)["request_id"] for e in bundle["entries"] if '"type":"call"' in e]
    assert ids[0] == "req-0020" and ids[-1] == "req-0040" and summary["entries"] == len(bundle["entries"])
    bad = dict(bundle, entries=[e.replace('"acme"', '"evil"') for e in bundle["entries"]])
    with pytest.raises(AuditTamperedError):
        verify_bundle(bad, key.public)
    with pytest.raises(AuditTamperedError):
        verify_bundle(bundle, AuditKey.generate().public)
    dropped = dict(bundle, entries=bundle["entries"][:3] + bundle["entries"][4:])
    with pytest.raises(AuditTamperedError):
        verify_bundle(dropped, key.public)


def test_audit_admin_actions_recorded_never_the_token(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home.init(home)
    assert cli(home, "tenant", "create", "initech") == 0
    token = ire("token", "issue", "--tenant", "initech", home=home).stdout.strip()
    assert cli(home, "tenant", "create", "initech") == 1
    records = read_records(home / "audit")
    assert [(r["action"], r["outcome"]) for r in records] == [
        ("tenant.create", "allowed"),
        ("token.issue", "allowed"),
        ("tenant.create", "failed"),
    ]
    assert records[1]["tenant"] == "initech" and records[1]["principal"].startswith("local:")
    assert records[1]["detail"]["jti"]
    raw = b"".join(p.read_bytes() for _, p in list_segments(home / "audit"))
    assert token.encode() not in raw and token.split(".")[2].encode() not in raw
    verified = ire("audit", "verify", home=home)
    assert verified.stdout.startswith("ok:")


def test_audit_cli_verify_exit_code_names_kind_and_seq(tmp_path: Path) -> None:
    home = tmp_path / "home"
    Home.init(home)
    for name in ("a1", "a2", "a3"):
        assert cli(home, "tenant", "create", name) == 0
    pub = tmp_path / "audit.pub"
    pub.write_text(ire("audit", "pubkey", home=home).stdout)
    assert ire("audit", "verify", "--pubkey", str(pub), home=home).returncode == 0
    bundle = tmp_path / "export.json"
    assert cli(home, "audit", "export", "--since", "2000-01-01", "--until", "2100-01-01", "--out", str(bundle)) == 0
    # The auditor's side: no IRE home, only the bundle and the public key.
    offline = ire("audit", "verify", "--bundle", str(bundle), "--pubkey", str(pub))
    assert offline.stdout.startswith("bundle ok:")
    path = list_segments(home / "audit")[0][1]
    path.write_bytes(path.read_bytes().replace(b'"tenant":"a2"', b'"tenant":"zz"'))
    result = ire("audit", "verify", "--pubkey", str(pub), home=home, check=False)
    assert result.returncode == 3
    assert "modified at seq 2" in result.stderr


def test_audit_capture_setting_is_audited_and_off_by_default(tmp_path: Path) -> None:
    from supervisor.audit.capture import CaptureRule, capture_payload, load_capture

    home = tmp_path / "home"
    Home.init(home)
    assert cli(home, "tenant", "create", "acme") == 0
    assert load_capture(Home.open(home)) == {}
    assert cli(home, "audit", "capture", "--tenant", "acme", "--on", "--redact", "ssn", "--max-bytes", "8") == 0
    rule = load_capture(Home.open(home))["acme"]
    assert rule == CaptureRule(enabled=True, redact=("ssn",), max_bytes=8)
    (change,) = [r for r in read_records(home / "audit") if r["action"] == "audit.capture.set"]
    assert change["detail"]["before"]["enabled"] is False and change["detail"]["after"]["enabled"] is True
    kept = capture_payload(rule, {"ssn": b"123-45-6789", "x": b"0123456789"}, 4096)
    assert kept["ssn"] == {"redacted": True, "bytes": 11}
    assert kept["x"]["truncated"] and kept["x"]["bytes"] == 10
    assert capture_payload(None, {"x": b"1"}, 4096) == {}
