"""Validate a candidate policy set in a child process: ``python -m supervisor.policy.validate``.

A running server validates reloads here rather than in itself. regorus holds the GIL for
as long as it parses or evaluates, so in-process validation would stall every call and
could not be stopped; a child can be killed at the reload deadline, and a set that makes
the parser crash takes down only the child. The child prints one JSON document: the
validated set (its files, so the server serves exactly the bytes that were tested) or
the reason it was refused.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import faulthandler
import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from supervisor.children import owned
from supervisor.logs import configure
from supervisor.policy.compiler import CompiledPolicy, compile_policy
from supervisor.policy.engine import Query
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import MAX_TOTAL_BYTES, PolicySet, load_policy_set

log = structlog.get_logger(__name__)

__all__ = ["compiled_from_json", "compiled_to_json", "validate_in_child"]

# The child's answer holds the set's text and its compiled program: bound what is read.
_MAX_ANSWER_BYTES = 4 * MAX_TOTAL_BYTES
# What is kept of the child's stderr (its log, or a crash report) to say why it failed.
_STDERR_TAIL_BYTES = 16384


def compiled_to_json(compiled: CompiledPolicy) -> dict[str, Any]:
    return {
        "revision": compiled.revision,
        "files": {f.path: f.text for f in compiled.policy_set.files},
        "queries": sorted(q.value for q in compiled.queries),
        "program": base64.b64encode(compiled.program).decode() if compiled.program is not None else None,
        "vm_note": compiled.vm_note,
        "tests": compiled.tests,
        "reads": [list(p) for p in compiled.reads] if compiled.reads is not None else None,
    }


def compiled_from_json(doc: dict[str, Any]) -> CompiledPolicy:
    policy_set = PolicySet.from_files({str(k): str(v) for k, v in doc["files"].items()})
    if policy_set.revision != doc["revision"]:
        raise PolicySetError(f"validated revision {doc['revision']!r} does not match its files")
    program = doc["program"]
    reads = doc["reads"]
    return CompiledPolicy(
        policy_set=policy_set,
        queries=frozenset(Query(v) for v in doc["queries"]),
        program=base64.b64decode(program) if program is not None else None,
        vm_note=str(doc["vm_note"]),
        tests=int(doc["tests"]),
        reads=tuple(tuple(str(s) for s in p) for p in reads) if reads is not None else None,
    )


async def validate_in_child(
    directory: Path, *, skip_revision: str, use_vm: bool, deadline_seconds: float, timeout_seconds: float
) -> CompiledPolicy | None:
    """The validated set in ``directory``, or None when its revision is ``skip_revision``."""
    argv = [sys.executable, "-m", "supervisor.policy.validate", str(directory), "--skip", skip_revision]
    argv += ["--deadline", str(deadline_seconds)] + ([] if use_vm else ["--no-vm"])
    child = _spawn(argv)
    # The reaper must not take its exit status. Registered as soon as it exists: it cannot
    # have ended yet (Python's start-up alone takes far longer than that).
    with owned(child.pid):
        try:
            answer, errors = await asyncio.to_thread(_collect, child, timeout_seconds)
        finally:
            if child.poll() is None:  # cancelled (the server is stopping): leave nothing running
                child.kill()
                await asyncio.to_thread(child.wait)
    if answer is None:
        raise PolicySetError(f"the set took over {timeout_seconds} s to compile and test")
    if len(answer) > _MAX_ANSWER_BYTES:
        raise PolicySetError(f"the validator answered over {_MAX_ANSWER_BYTES} bytes")
    try:
        doc = json.loads(answer)
    except ValueError as exc:
        lines = [line.strip() for line in errors.decode(errors="replace").splitlines() if line.strip()]
        said = f": {' | '.join(lines[-3:])[-500:]}" if lines else ""
        if lines:
            log.error("policy validator failed", returncode=child.returncode, stderr="\n".join(lines[-40:]))
        raise PolicySetError(f"the validator exited {child.returncode} without an answer{said}") from exc
    if doc.get("error"):
        raise PolicySetError(str(doc["error"]))
    return None if doc.get("unchanged") else compiled_from_json(doc["compiled"])


def _spawn(argv: list[str]) -> subprocess.Popen[bytes]:
    # subprocess, not the event loop's spawn: subprocess starts the child with vfork, which
    # runs no fork handlers. The loop forks, and gRPC's fork handlers in the server then
    # sometimes abort the child before it execs (a failed CHECK, SIGABRT).
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _collect(child: subprocess.Popen[bytes], timeout: float) -> tuple[bytes | None, bytes]:
    """The child's stdout (at most ``_MAX_ANSWER_BYTES`` + 1 bytes kept) and the tail of its
    stderr, once it has closed both and exited; ``(None, tail)`` when it ran past ``timeout``
    (it is killed). Blocking: run in a thread. The pipes stay out of the event loop, which
    would otherwise share their descriptors with the file objects subprocess made."""
    assert child.stdout is not None and child.stderr is not None
    deadline = time.monotonic() + timeout
    answer, errors = bytearray(), bytearray()
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(child.stdout, selectors.EVENT_READ, answer)
            selector.register(child.stderr, selectors.EVENT_READ, errors)
            while selector.get_map():
                left = deadline - time.monotonic()
                if left <= 0:
                    child.kill()
                    child.wait()
                    return None, bytes(errors)
                for key, _ in selector.select(left):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                    elif key.data is errors:
                        errors += chunk
                        del errors[:-_STDERR_TAIL_BYTES]
                    elif len(answer) <= _MAX_ANSWER_BYTES:
                        answer += chunk  # past the bound the rest is read and dropped
        try:
            child.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
            return None, bytes(errors)
    finally:
        child.stdout.close()
        child.stderr.close()
    return bytes(answer), bytes(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m supervisor.policy.validate", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--skip", default="", help="answer 'unchanged' when the set has this revision")
    parser.add_argument("--deadline", type=float, default=0.5)
    parser.add_argument("--no-vm", action="store_true")
    args = parser.parse_args(argv)
    try:
        policy_set = load_policy_set(args.directory)
        if policy_set.revision == args.skip:
            answer: dict[str, Any] = {"unchanged": True}
        else:
            compiled, _ = compile_policy(policy_set, use_vm=not args.no_vm, deadline_seconds=args.deadline)
            answer = {"compiled": compiled_to_json(compiled)}
    except PolicySetError as exc:
        answer = {"error": str(exc)}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    return 0 if "error" not in answer else 1


if __name__ == "__main__":
    faulthandler.enable()  # a crash in the engine prints where it was, for the server's log
    configure("warning")  # to stderr: stdout carries the answer
    sys.exit(main())
