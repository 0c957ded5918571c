"""``ire audit``: verify, query, export and follow the tamper-evident audit log.

Exit codes: 0 success (``verify``: the log or bundle is intact); 1 an IRE error, such as
no home or an unreadable key; 2 a usage error; 3 ``verify`` found damage, printed as
``<kind> at seq N, segment S: detail`` with kind one of modified, deleted, reordered,
truncated, bad-signature.
"""

from __future__ import annotations

import argparse
import collections
import csv
import datetime
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from supervisor.audit.admin import admin_record, local_principal
from supervisor.audit.bundle import export_bundle, verify_bundle
from supervisor.audit.capture import CaptureRule, load_capture, save_capture
from supervisor.audit.chain import parse_line
from supervisor.audit.keys import AuditKey, AuditPublicKey
from supervisor.audit.reader import RECORD_TYPES, RecordFilter, iter_entries, parse_time
from supervisor.audit.segments import list_segments
from supervisor.audit.verify import AuditTamperedError, verify_log
from supervisor.audit.writer import AuditWriter
from supervisor.cli import audit_checkpoint
from supervisor.cli._common import open_home
from supervisor.errors import ConfigError, InvalidInputError
from supervisor.home import Home

EXIT_TAMPERED = 3
CSV_COLUMNS = (
    "seq",
    "time",
    "type",
    "action",
    "tenant",
    "principal",
    "model",
    "model_version",
    "outcome",
    "status",
    "latency_ms",
    "request_id",
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("audit", help="verify, query and export the audit log")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    verify = actions.add_parser("verify", help="check the log (or a bundle): exit 0 intact, 3 damaged")
    verify.add_argument("--pubkey", type=Path, help="the audit public key (PEM) to trust (default: the home's)")
    verify.add_argument("--bundle", type=Path, help="verify an exported bundle offline instead of the log")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(run=run_verify)

    query = actions.add_parser("query", help="print matching records")
    query.add_argument("--tenant")
    query.add_argument("--model")
    query.add_argument("--principal")
    query.add_argument("--outcome", choices=["allowed", "denied", "failed", "malformed"])
    query.add_argument("--action", help="e.g. predict, tenant.create")
    query.add_argument("--since", help="ISO 8601 time or unix seconds (inclusive)")
    query.add_argument("--until", help="ISO 8601 time or unix seconds (inclusive)")
    query.add_argument("--all-types", action="store_true", help="include checkpoints, repairs and retention")
    query.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    query.set_defaults(run=run_query)

    export = actions.add_parser("export", help="write a bundle a third party verifies offline")
    export.add_argument("--since", required=True, help="ISO 8601 time or unix seconds (inclusive)")
    export.add_argument("--until", required=True, help="ISO 8601 time or unix seconds (inclusive)")
    export.add_argument("--out", required=True, type=Path)
    export.set_defaults(run=run_export)

    tail = actions.add_parser("tail", help="print the last records")
    tail.add_argument("-n", type=int, default=10, help="how many (default 10)")
    tail.add_argument("--all-types", action="store_true", help="include checkpoints, repairs and retention")
    tail.add_argument("--follow", "-f", action="store_true", help="keep printing new records")
    tail.set_defaults(run=run_tail)

    pubkey = actions.add_parser("pubkey", help="print the audit public key (PEM) for auditors")
    pubkey.set_defaults(run=run_pubkey)

    prune = actions.add_parser("prune", help="remove segments past audit.retention_days, with a signed record")
    prune.set_defaults(run=run_prune)
    audit_checkpoint.register(actions)

    capture = actions.add_parser("capture", help="show or set per-tenant payload capture (off by default)")
    capture.add_argument("--tenant", help="the tenant to change; omit to show every rule")
    state = capture.add_mutually_exclusive_group()
    state.add_argument("--on", dest="enabled", action="store_true", default=None)
    state.add_argument("--off", dest="enabled", action="store_false")
    capture.add_argument("--redact", action="append", default=[], help="tensor name never captured (repeatable)")
    capture.add_argument("--max-bytes", type=int, help="bytes kept per tensor (default audit.capture_max_bytes)")
    capture.set_defaults(run=run_capture)


def _time_arg(value: str | None, name: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise InvalidInputError(f"{name}: {exc}") from exc


def _public_key(args: argparse.Namespace, home: Home | None) -> AuditPublicKey:
    if args.pubkey is not None:
        return AuditPublicKey.load(args.pubkey)
    if home is None:
        raise ConfigError("--pubkey PEM is needed to verify a bundle outside an IRE home")
    return AuditKey.load(home.audit_key_path).public


def run_verify(args: argparse.Namespace) -> int:
    if args.bundle is not None:
        home = None
        if args.pubkey is None:
            home = open_home(args)
        public = _public_key(args, home)
        try:
            bundle = json.loads(args.bundle.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read bundle {str(args.bundle)!r}: {exc}") from exc
        if not isinstance(bundle, dict):
            raise InvalidInputError(f"bundle {str(args.bundle)!r} is not a JSON object")
        try:
            report = verify_bundle(bundle, public)
        except AuditTamperedError as exc:
            return _tampered(args, exc)
        _emit(
            args,
            {"ok": True, **report.__dict__, "key_id": public.key_id},
            f"bundle ok: seq {report.first_seq}..{report.last_seq} ({report.entries} entries) match checkpoint "
            f"{report.checkpoint_size} signed by key {public.key_id}"
            + (f"; consistent with checkpoint {report.latest_size}" if report.consistency_checked else ""),
        )
        return 0
    home = open_home(args)
    public = _public_key(args, home)
    try:
        log_report = verify_log(home.audit_dir, public)
    except AuditTamperedError as exc:
        return _tampered(args, exc)
    summary = {k: v for k, v in log_report.__dict__.items() if k != "roots"}
    _emit(args, {"ok": True, **summary, "unsigned_tail": log_report.unsigned_tail}, f"ok: {log_report.summary()}")
    return 0


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, sort_keys=True) if args.json else text)


def _tampered(args: argparse.Namespace, exc: AuditTamperedError) -> int:
    d = exc.damage
    if args.json:
        print(json.dumps({"ok": False, "kind": str(d.kind), "seq": d.seq, "segment": d.segment, "detail": d.detail}))
    print(f"ire: audit log verification FAILED: {d}", file=sys.stderr)
    return EXIT_TAMPERED


def _csv_row(body: dict[str, Any]) -> list[str]:
    row = []
    for column in CSV_COLUMNS:
        value = body.get(column, "")
        if column == "time" and isinstance(value, int | float):
            value = datetime.datetime.fromtimestamp(value, datetime.UTC).isoformat()
        row.append("" if value is None else str(value))
    return row


def run_query(args: argparse.Namespace) -> int:
    home = open_home(args)
    selection = RecordFilter(
        tenant=args.tenant,
        model=args.model,
        principal=args.principal,
        outcome=args.outcome,
        action=args.action,
        since=_time_arg(args.since, "--since"),
        until=_time_arg(args.until, "--until"),
        types=frozenset({"call", "admin", "checkpoint", "repair", "retention"}) if args.all_types else RECORD_TYPES,
    )
    writer = csv.writer(sys.stdout) if args.format == "csv" else None
    if writer is not None:
        writer.writerow(CSV_COLUMNS)
    for entry in iter_entries(home.audit_dir):
        if selection.matches(entry.body):
            if writer is not None:
                writer.writerow(_csv_row(entry.body))
            else:
                print(json.dumps(entry.body, ensure_ascii=False, sort_keys=True))
    return 0


def run_export(args: argparse.Namespace) -> int:
    home = open_home(args)
    since, until = _time_arg(args.since, "--since"), _time_arg(args.until, "--until")
    assert since is not None and until is not None  # required arguments
    if since > until:
        raise InvalidInputError(f"--since {args.since} is after --until {args.until}")
    key = AuditKey.load(home.audit_key_path)
    # The export is itself recorded, then checkpointed, so the range is covered by a signature.
    writer = AuditWriter(home.audit_dir, key, home.settings().audit)
    try:
        writer.append(
            admin_record("audit.export", local_principal(), since=since, until=until, out=str(args.out.resolve()))
        )
        writer.checkpoint("export")
    finally:
        writer.close(strict=True)
    try:
        verify_log(home.audit_dir, key.public)
    except AuditTamperedError as exc:
        print(f"ire: refusing to export a damaged log: {exc.damage}", file=sys.stderr)
        return EXIT_TAMPERED
    partial = args.out.with_name(args.out.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            summary = export_bundle(home.audit_dir, key.public, since, until, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, args.out)
    print(
        f"exported seq {summary['first_seq']}..{summary['last_seq']} ({summary['entries']} entries) to {args.out}, "
        f"proved by checkpoint {summary['checkpoint']}; verify with: "
        f"ire audit verify --bundle {args.out} --pubkey audit.pub"
    )
    return 0


def run_tail(args: argparse.Namespace) -> int:
    home = open_home(args)
    types = None if args.all_types else RECORD_TYPES
    last: collections.deque[dict[str, Any]] = collections.deque(maxlen=max(args.n, 0))
    for entry in iter_entries(home.audit_dir):
        if types is None or entry.type in types:
            last.append(entry.body)
    for body in last:
        print(json.dumps(body, ensure_ascii=False, sort_keys=True), flush=True)
    if not args.follow:
        return 0
    segments = list_segments(home.audit_dir)
    current = segments[-1][1] if segments else None
    offset = current.stat().st_size if current is not None else 0
    while True:
        time.sleep(0.5)
        paths = [path for _, path in list_segments(home.audit_dir)]
        if current is None:
            if not paths:
                continue
            current, offset = paths[0], 0
        offset = _print_new(current, offset, types)
        # The writer seals a segment before starting the next: move on once it is drained.
        if current in paths and paths.index(current) < len(paths) - 1 and current.stat().st_size == offset:
            current, offset = paths[paths.index(current) + 1], 0


def _print_new(path: Path, offset: int, types: frozenset[str] | None) -> int:
    """Print the complete lines of ``path`` after ``offset``; the new offset."""
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read()
    end = data.rfind(b"\n")
    for line in data[: end + 1].split(b"\n")[:-1]:
        entry = parse_line(line)
        if types is None or entry.type in types:
            print(json.dumps(entry.body, ensure_ascii=False, sort_keys=True), flush=True)
    return offset + end + 1


def run_pubkey(args: argparse.Namespace) -> int:
    home = open_home(args)
    sys.stdout.write(AuditKey.load(home.audit_key_path).public.pem().decode("ascii"))
    return 0


def run_prune(args: argparse.Namespace) -> int:
    home = open_home(args)
    writer = AuditWriter.for_home(home)
    try:
        removed = writer.prune()
    finally:
        writer.close(strict=True)
    print(f"removed {len(removed)} segments: {', '.join(removed)}" if removed else "nothing past retention")
    return 0


def run_capture(args: argparse.Namespace) -> int:
    home = open_home(args)
    rules = load_capture(home)
    if args.tenant is None:
        if args.enabled is not None or args.redact or args.max_bytes is not None:
            raise InvalidInputError("--on/--off/--redact/--max-bytes need --tenant")
        for name, rule in sorted(rules.items()):
            print(json.dumps({"tenant": name, **rule.to_dict()}, sort_keys=True))
        return 0
    home.registry().get_tenant(args.tenant)
    old = rules.get(args.tenant, CaptureRule())
    new = CaptureRule(
        enabled=old.enabled if args.enabled is None else args.enabled,
        redact=tuple(sorted(set(args.redact))) if args.redact else old.redact,
        max_bytes=args.max_bytes if args.max_bytes is not None else old.max_bytes,
    )
    save_capture(home, args.tenant, new, previous=old, principal=local_principal())
    print(f"capture for {args.tenant}: {json.dumps(new.to_dict(), sort_keys=True)}")
    return 0
