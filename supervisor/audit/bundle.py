"""Export bundles: a time range of the log that a third party verifies offline.

A bundle holds the entries of the range as they are stored (so their hashes can be
recomputed), the compact Merkle state on their left (the frontier at the first entry),
the roots of the aligned subtrees on their right up to a signed checkpoint, and that
checkpoint. Together they recompute the checkpoint's signed root: an RFC 6962 range proof.
It also holds the latest checkpoint and a consistency proof to it, when the log still has
every leaf. Verifying needs only the bundle and the audit public key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from supervisor.audit.chain import GENESIS, Entry, parse_line
from supervisor.audit.keys import AuditPublicKey
from supervisor.audit.merkle import Frontier, consistency_proof, range_subtrees, subtree_root, verify_consistency
from supervisor.audit.segments import iter_lines, list_segments, read_side_file
from supervisor.audit.statements import checkpoint_message, signature_valid
from supervisor.audit.verify import AuditTamperedError, Damage, DamageKind, checkpoint_fields
from supervisor.errors import InvalidInputError

__all__ = ["BUNDLE_FORMAT", "BundleReport", "export_bundle", "verify_bundle"]

BUNDLE_FORMAT = "ire-audit-bundle/1"


def _time(entry: Entry) -> float:
    value = entry.body.get("time")
    return float(value) if isinstance(value, int | float) else 0.0


def _checkpoint_json(entry: Entry) -> dict[str, Any]:
    return {**checkpoint_fields(entry.body, entry.prev), "sig": entry.body.get("sig")}


def _start_state(directory: Path, first: int) -> Frontier:
    if first == 0:
        return Frontier()
    side, _ = read_side_file(directory)
    for e in side:
        if e.get("type") == "retention" and e.get("first_kept_seq") == first:
            return Frontier(first, [bytes.fromhex(n) for n in e["anchor_frontier"]])
    raise InvalidInputError(f"no retention anchor for seq {first}; run `ire audit verify`")


def _entries(segments: list[tuple[int, Path]]) -> Iterator[tuple[bytes, Entry]]:
    for _, path in segments:
        for _, line, complete in iter_lines(path):
            if complete:
                yield line, parse_line(line)


def export_bundle(directory: Path, public: AuditPublicKey, since: float, until: float, out: IO[str]) -> dict[str, Any]:
    """Write the bundle for the entries timed in [since, until] to ``out``; its summary.

    The range runs from the first to the last entry in the window, with everything between
    (the proof needs a contiguous run). Call after a checkpoint that follows the range.
    """
    segments = list_segments(directory)
    if not segments:
        raise InvalidInputError("the audit log is empty")
    first_seq = last_seq = -1
    checkpoints: list[Entry] = []
    for _, entry in _entries(segments):
        # Checkpoints do not open or close a range: the checkpoint after it is the proof.
        if entry.type != "checkpoint" and since <= _time(entry) <= until:
            if first_seq < 0:
                first_seq = entry.seq
            last_seq = entry.seq
        if entry.type == "checkpoint":
            checkpoints.append(entry)
    if first_seq < 0:
        raise InvalidInputError("no audit entries in that time range")
    target = next((c for c in checkpoints if c.seq > last_seq), None)
    if target is None:
        raise InvalidInputError("no checkpoint after the range yet; write one first (`ire audit export` does)")
    latest = checkpoints[-1]
    full_history = segments[0][0] == 0
    frontier = _start_state(directory, segments[0][0])
    leaves: list[bytes] = []
    left = frontier.copy()
    lines: list[str] = []
    right: list[bytes] = []
    for line, entry in _entries(segments):
        if entry.seq == first_seq:
            left = frontier.copy()
        if first_seq <= entry.seq <= last_seq:
            lines.append(line.decode("utf-8"))
        elif last_seq < entry.seq < target.seq:
            right.append(entry.hash)
        frontier.append(entry.hash)
        if full_history:
            leaves.append(entry.hash)
        if entry.seq >= latest.seq:
            break
    parts = []
    for start, height in range_subtrees(last_seq + 1, target.seq):
        offset = start - last_seq - 1
        chunk = right[offset : offset + (1 << height)]
        parts.append({"start": start, "height": height, "hash": subtree_root(chunk).hex()})
    if not full_history:
        latest = target  # no consistency proof without every leaf; the range checkpoint is the latest shown
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created": time.time(),
        "key_id": public.key_id,
        "public_key_pem": public.pem().decode("ascii"),
        "since": since,
        "until": until,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "left": {"size": left.size, "frontier": [n.hex() for n in left.nodes]},
        "right": parts,
        "checkpoint": _checkpoint_json(target),
        "latest": _checkpoint_json(latest),
    }
    if latest.seq > target.seq:
        proof = consistency_proof(target.seq, leaves[: latest.seq])
        bundle["consistency"] = {"from": target.seq, "to": latest.seq, "proof": [p.hex() for p in proof]}
    # The entries go last, one per line, so that a large bundle streams out.
    head = json.dumps(bundle, indent=1)
    out.write(head[:-2] + ',\n "entries": [\n')
    for index, text in enumerate(lines):
        out.write("  " + json.dumps(text, ensure_ascii=False) + (",\n" if index < len(lines) - 1 else "\n"))
    out.write(" ]\n}\n")
    return {"first_seq": first_seq, "last_seq": last_seq, "entries": len(lines), "checkpoint": target.seq}


@dataclass(frozen=True)
class BundleReport:
    first_seq: int
    last_seq: int
    entries: int
    checkpoint_size: int
    latest_size: int
    consistency_checked: bool


def _bad(kind: DamageKind, detail: str, seq: int | None = None) -> AuditTamperedError:
    return AuditTamperedError(Damage(kind, detail, seq, "bundle"))


def _check_signed(public: AuditPublicKey, checkpoint: Any, name: str) -> tuple[int, bytes]:
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("size"), int):
        raise _bad(DamageKind.MODIFIED, f"no {name} checkpoint")
    if checkpoint.get("key_id") != public.key_id or not signature_valid(
        public, checkpoint_message(checkpoint), checkpoint.get("sig")
    ):
        raise _bad(DamageKind.BAD_SIGNATURE, f"{name} checkpoint not signed by key {public.key_id}", checkpoint["size"])
    return checkpoint["size"], bytes.fromhex(str(checkpoint.get("root")))


def verify_bundle(bundle: dict[str, Any], public: AuditPublicKey) -> BundleReport:
    """Check a bundle against ``public`` alone; AuditTamperedError names the first damage."""
    if bundle.get("format") != BUNDLE_FORMAT:
        raise InvalidInputError(f"got bundle format {bundle.get('format')!r}, expected {BUNDLE_FORMAT!r}")
    size, root = _check_signed(public, bundle.get("checkpoint"), "range")
    latest_size, latest_root = _check_signed(public, bundle.get("latest"), "latest")
    left = bundle.get("left") or {}
    try:
        frontier = Frontier(int(left["size"]), [bytes.fromhex(n) for n in left["frontier"]])
    except (KeyError, TypeError, ValueError) as exc:
        raise _bad(DamageKind.MODIFIED, f"bad left frontier: {exc}") from exc
    first = int(bundle.get("first_seq", -1))
    if frontier.size != first:
        raise _bad(DamageKind.MODIFIED, f"left frontier has size {frontier.size}, expected {first}", first)
    prev = None if first else GENESIS
    entries = bundle.get("entries") or []
    verifier_seq = first
    for raw in entries:
        try:
            entry = parse_line(str(raw).encode("utf-8"), strict=True)
        except ValueError as exc:
            raise _bad(DamageKind.MODIFIED, str(exc), verifier_seq) from exc
        if entry.seq != verifier_seq:
            kind = DamageKind.REORDERED if first <= entry.seq < verifier_seq else DamageKind.DELETED
            raise _bad(kind, f"got seq {entry.seq}, expected {verifier_seq}", verifier_seq)
        if prev is not None and entry.prev != prev:
            raise _bad(DamageKind.MODIFIED, "chain link broken", entry.seq - 1)
        if entry.type == "checkpoint":
            fields = checkpoint_fields(entry.body, entry.prev)
            if not signature_valid(public, checkpoint_message(fields), entry.body.get("sig")):
                raise _bad(DamageKind.BAD_SIGNATURE, "checkpoint signature does not verify", entry.seq)
            if entry.body.get("root") != frontier.root().hex():
                raise _bad(DamageKind.MODIFIED, "entries do not hash to an in-range checkpoint's root", entry.seq)
        frontier.append(entry.hash)
        prev = entry.hash.hex()
        verifier_seq += 1
    last = verifier_seq - 1
    if last != bundle.get("last_seq"):
        raise _bad(DamageKind.TRUNCATED, f"bundle ends at seq {last}, its header says {bundle.get('last_seq')}", last)
    for part in bundle.get("right") or []:
        try:
            if part["start"] != frontier.size:
                raise _bad(DamageKind.MODIFIED, f"right subtree at {part['start']}, expected {frontier.size}")
            frontier.append_subtree(int(part["height"]), bytes.fromhex(part["hash"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise _bad(DamageKind.MODIFIED, f"bad right subtree: {exc}") from exc
    if frontier.size != size or frontier.root() != root:
        raise _bad(
            DamageKind.MODIFIED, f"entries {first}..{last} do not hash to the signed root of checkpoint {size}", first
        )
    if size - 1 == last and bundle["checkpoint"].get("head") != prev:
        raise _bad(DamageKind.MODIFIED, "checkpoint head is not the last entry's hash", last)
    checked = False
    consistency = bundle.get("consistency")
    if latest_size != size or consistency is not None:
        if not isinstance(consistency, dict):
            raise _bad(DamageKind.MODIFIED, f"no consistency proof from {size} to {latest_size}")
        proof = [bytes.fromhex(p) for p in consistency.get("proof", [])]
        if consistency.get("from") != size or consistency.get("to") != latest_size:
            raise _bad(DamageKind.MODIFIED, "consistency proof is for other checkpoints")
        if not verify_consistency(size, latest_size, root, latest_root, proof):
            raise _bad(DamageKind.MODIFIED, f"checkpoint {latest_size} is not consistent with checkpoint {size}")
        checked = True
    return BundleReport(first, last, len(entries), size, latest_size, checked)
