"""The tamper catalogue: each attack on a stored log is detected, with its kind and place."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from supervisor.audit import AuditKey, AuditWriter
from supervisor.audit.chain import encode_entry, parse_line
from supervisor.audit.merkle import Frontier
from supervisor.audit.segments import SIDE_FILE, list_segments
from supervisor.audit.statements import checkpoint_message, sign_fields
from supervisor.audit.verify import AuditTamperedError, DamageKind, verify_log
from supervisor.settings import AuditSettings

# Small segments and frequent checkpoints, so a short log has several of each.
SMALL = AuditSettings(checkpoint_every_records=10, segment_max_bytes=6000)


def record(i: int, tenant: str = "acme") -> dict[str, object]:
    return {
        "time": 1_700_000_000.0 + i + 0.5,
        "request_id": f"req-{i:04d}",
        "action": "predict",
        "tenant": tenant,
        "principal": f"{tenant}-svc",
        "model": "mlp",
        "outcome": "allowed",
        "status": "OK",
        "latency_ms": 1.25,
    }


def build_log(directory: Path, n: int = 60, settings: AuditSettings = SMALL) -> AuditKey:
    key = AuditKey.generate()
    writer = AuditWriter(directory, key, settings)
    for i in range(n):
        writer.append(record(i))
    writer.close(strict=True)
    return key


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, AuditKey]:
    directory = tmp_path / "audit"
    directory.mkdir()
    return directory, build_log(directory)


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def segment_holding(directory: Path, seq: int) -> tuple[Path, int]:
    """The segment and line index of entry ``seq``."""
    for _, path in list_segments(directory):
        for index, line in enumerate(lines_of(path)):
            if parse_line(line[:-1]).seq == seq:
                return path, index
    raise AssertionError(f"no seq {seq}")


def damage_of(directory: Path, key: AuditKey) -> tuple[DamageKind, int | None, str | None]:
    with pytest.raises(AuditTamperedError) as caught:
        verify_log(directory, key.public)
    d = caught.value.damage
    return d.kind, d.seq, d.segment


def test_untouched_log_verifies(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    report = verify_log(directory, key.public)
    assert report.records == 60
    assert report.segments >= 3 and report.checkpoints >= 6
    assert report.unsigned_tail == 0


def test_audit_modified_value_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    path, index = segment_holding(directory, 12)
    lines = lines_of(path)
    lines[index] = lines[index].replace(b'"outcome":"allowed"', b'"outcome":"denied"')
    path.write_bytes(b"".join(lines))
    assert damage_of(directory, key) == (DamageKind.MODIFIED, 12, path.name)


def test_audit_modified_value_with_recomputed_hash_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    path, index = segment_holding(directory, 12)
    lines = lines_of(path)
    body = dict(parse_line(lines[index][:-1]).body, tenant="globex")
    lines[index], _ = encode_entry(body)
    path.write_bytes(b"".join(lines))
    assert damage_of(directory, key) == (DamageKind.MODIFIED, 12, path.name)


def test_audit_rewritten_chain_fails_the_signed_root(log: tuple[Path, AuditKey]) -> None:
    """An attacker who re-chains every later entry still cannot re-sign the checkpoints."""
    directory, key = log
    path, index = segment_holding(directory, 12)
    lines = lines_of(path)
    prev = None
    for i in range(index, len(lines)):
        body = dict(parse_line(lines[i][:-1]).body)
        if i == index:
            body["tenant"] = "globex"
        if prev is not None:
            body["prev"] = prev
        lines[i], digest = encode_entry(body)
        prev = digest.hex()
    path.write_bytes(b"".join(lines))
    kind, seq, _ = damage_of(directory, key)
    assert kind == DamageKind.MODIFIED and seq is not None and seq <= 12


def test_audit_deleted_record_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    path, index = segment_holding(directory, 15)
    lines = lines_of(path)
    del lines[index]
    path.write_bytes(b"".join(lines))
    assert damage_of(directory, key) == (DamageKind.DELETED, 15, path.name)


def test_audit_reordered_records_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    path, index = segment_holding(directory, 15)
    lines = lines_of(path)
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    path.write_bytes(b"".join(lines))
    assert damage_of(directory, key) == (DamageKind.REORDERED, 15, path.name)


def test_audit_truncated_tail_covered_by_checkpoint_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    path = list_segments(directory)[-1][1]
    lines = lines_of(path)
    last_checkpoint = max(i for i, line in enumerate(lines) if parse_line(line[:-1]).type == "checkpoint")
    cut = parse_line(lines[last_checkpoint - 2][:-1]).seq
    path.write_bytes(b"".join(lines[: last_checkpoint - 2]))
    assert damage_of(directory, key) == (DamageKind.TRUNCATED, cut, path.name)


def test_audit_truncated_log_refuses_to_open_for_writing(log: tuple[Path, AuditKey]) -> None:
    """A writer never chains new entries onto a log cut below a signed checkpoint."""
    from supervisor.errors import AuditWriteError

    directory, key = log
    path = list_segments(directory)[-1][1]
    path.write_bytes(b"".join(lines_of(path)[:-3]))
    with pytest.raises(AuditWriteError, match="truncated"):
        AuditWriter(directory, key, SMALL)


def _forge_checkpoint(directory: Path, signer: AuditKey) -> tuple[int, bytes, dict[str, object]]:
    """A well-chained checkpoint appended at the end, signed by ``signer``."""
    entries = [parse_line(line[:-1]) for _, p in list_segments(directory) for line in lines_of(p)]
    frontier = Frontier()
    for entry in entries:
        frontier.append(entry.hash)
    last = entries[-1]
    fields = {"size": last.seq + 1, "root": frontier.root().hex(), "head": last.hash.hex(), "time": time.time()}
    fields["key_id"] = signer.key_id
    sig = sign_fields(signer, checkpoint_message(fields))
    body = {
        "type": "checkpoint",
        "seq": last.seq + 1,
        "prev": last.hash.hex(),
        "v": 1,
        "time": fields["time"],
        "size": fields["size"],
        "root": fields["root"],
        "key_id": signer.key_id,
        "sig": sig,
        "reason": "count",
        "seal": False,
        "frontier": [n.hex() for n in frontier.nodes],
    }
    line, _ = encode_entry(body)
    return last.seq + 1, line, {"type": "checkpoint", **fields, "sig": sig, "segment": "x"}


def test_audit_forged_checkpoint_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    seq, line, _ = _forge_checkpoint(directory, AuditKey.generate())
    path = list_segments(directory)[-1][1]
    path.write_bytes(path.read_bytes() + line)
    assert damage_of(directory, key) == (DamageKind.BAD_SIGNATURE, seq, path.name)


def test_audit_forged_checkpoint_with_our_key_id_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    attacker = AuditKey.generate()
    seq, line, _ = _forge_checkpoint(directory, attacker)
    # Claim our key's id and re-hash, so that only the signature is wrong.
    line = line.replace(attacker.key_id.encode(), key.key_id.encode())
    forged = json.loads(line)
    forged.pop("hash")
    fixed, _ = encode_entry(forged)
    path = list_segments(directory)[-1][1]
    path.write_bytes(path.read_bytes() + fixed)
    assert damage_of(directory, key) == (DamageKind.BAD_SIGNATURE, seq, path.name)


def test_audit_forged_side_file_checkpoint_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    _, _, side = _forge_checkpoint(directory, AuditKey.generate())
    with (directory / SIDE_FILE).open("a") as f:
        f.write(json.dumps(side) + "\n")
    kind, _, segment = damage_of(directory, key)
    assert (kind, segment) == (DamageKind.BAD_SIGNATURE, SIDE_FILE)


def test_audit_segment_removed_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    segments = list_segments(directory)
    start, path = segments[1]
    path.unlink()
    assert damage_of(directory, key) == (DamageKind.DELETED, start, path.name)


def test_audit_first_segment_removed_detected(log: tuple[Path, AuditKey]) -> None:
    directory, key = log
    _, path = list_segments(directory)[0]
    path.unlink()
    assert damage_of(directory, key) == (DamageKind.DELETED, 0, path.name)


def test_audit_wrong_public_key_is_bad_signature(log: tuple[Path, AuditKey]) -> None:
    directory, _ = log
    kind, _, _ = damage_of(directory, AuditKey.generate())
    assert kind == DamageKind.BAD_SIGNATURE
