"""`ire serve` with the CPU time of each step of a prediction counted: for bench.steps only.

Every layer stays on; each step named in ``STEPS`` is wrapped so that the CPU time its
own thread spends in it (``time.thread_time_ns``, which a preemption does not inflate)
is added up. SIGUSR1 starts a measuring window (the counts are zeroed and the event-loop
thread's CPU time is noted); SIGUSR2 ends it and writes the window as JSON to the path
given by ``--out``. Both handlers run on the event-loop thread, so its CPU time over the
window is what the steps are a share of.

    python -m bench._step_server --out steps.json

It listens on loopback only. Timing a step costs two clock reads; ``TIMER``, a timed step
that does nothing, run once per call, measures that so bench.steps can take it off.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from types import FrameType
from typing import Any

# (module, class or "" for a module-level function, attribute, label). Module-level
# functions are wrapped where supervisor.service looks them up.
STEPS: tuple[tuple[str, str, str, str], ...] = (
    ("supervisor.transport.calls", "", "_request_id", "request id"),
    ("supervisor.service", "Authenticator", "authenticate", "token, revocation, tenant"),
    ("supervisor.service", "InferenceService", "_find", "model lookup"),
    ("supervisor.service", "", "declared_batch", "declared batch"),
    ("supervisor.policy.authorizer", "Authorizer", "authorize", "policy (input document, decision)"),
    ("supervisor.service", "", "decode_request", "tensor checks and input digest"),
    ("supervisor.quota.admission", "Quotas", "admit", "quota admission"),
    ("supervisor.quota.admission", "Quotas", "release", "quota release"),
    ("supervisor.workers.connection", "WorkerConnection", "_flush", "worker: send (one write a turn)"),
    ("supervisor.workers.connection", "WorkerConnection", "data_received", "worker: read and parse replies"),
    ("supervisor.service", "", "checked_response", "output checks, digest and response"),
    ("supervisor.audit.record", "AuditRecord", "to_dict", "audit: record to dict"),
    # Calls append at the end of their turn, together (supervisor/audit/turn.py).
    ("supervisor.audit.writer", "AuditWriter", "append_many", AUDIT_WRITE := "audit: chain, hash, write (end of turn)"),
    ("supervisor.metrics", "Metrics", "observe_call", "metrics"),
)
# Measured the same way, around several of the steps above: the call as a whole, and the
# two parts of it that contain others. Their rows include the steps inside them.
WHOLE: tuple[tuple[str, str, str, str], ...] = (
    ("supervisor.transport.calls", "CallRunner", "run", WHOLE_CALL := "the call's coroutine, all of it"),
    ("supervisor.service", "InferenceService", "infer", "the prediction, all of it"),
    ("supervisor.workers.pool", "WorkerPool", "infer", "the pool: request out, reply in"),
)
TIMER = "timer (the cost of measuring one step)"
# The steps each WHOLE row contains (besides the call, which contains every other).
INSIDE = {
    "the prediction, all of it": (
        "model lookup", "declared batch", "policy (input document, decision)", "tensor checks and input digest",
        "quota admission", "quota release", "the pool: request out, reply in", "output checks, digest and response",
    ),
}  # fmt: skip
# Loop callbacks, outside the call's coroutine.
CALLBACKS = ("worker: send (one write a turn)", "worker: read and parse replies", AUDIT_WRITE)

_clock = time.thread_time_ns
_totals: dict[str, list[int]] = {}
_window: dict[str, int] = {}


def _add(label: str, ns: int, *, resumed: bool = False) -> None:
    """Add ``ns`` to ``label``; a step counts once per call, not once per resumption."""
    entry = _totals.get(label)
    if entry is None:
        entry = _totals[label] = [0, 0, 0]
    entry[0] += ns
    entry[2] += 1
    if not resumed:
        entry[1] += 1


class _Timed:
    """Awaits ``coro``, adding up this thread's CPU time while the coroutine runs; the time
    it spends suspended (waiting for a worker, say) is not counted."""

    __slots__ = ("_coro", "_label")

    def __init__(self, label: str, coro: Coroutine[Any, Any, Any]) -> None:
        self._label = label
        self._coro = coro

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, label = self._coro, self._label
        send: Any = None
        error: BaseException | None = None
        while True:
            started = _clock()
            try:
                yielded = coro.send(send) if error is None else coro.throw(error)
            except StopIteration as stop:
                _add(label, _clock() - started)
                return stop.value
            except BaseException:
                _add(label, _clock() - started)
                raise
            _add(label, _clock() - started, resumed=True)
            send, error = None, None
            try:
                send = yield yielded
            except BaseException as exc:  # a cancellation or a future's exception, passed on
                error = exc


def _timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            return await _Timed(label, fn(*args, **kwargs))

        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        started = _clock()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(label, _clock() - started)

    return timed


def _wrap(module_name: str, owner_name: str, attribute: str, label: str) -> None:
    """Wrap one step; a renamed step must not silently drop out of the table."""
    module = importlib.import_module(module_name)
    owner = getattr(module, owner_name) if owner_name else module
    fn = getattr(owner, attribute, None)
    if not callable(fn):
        raise SystemExit(f"bench._step_server: {module_name}.{owner_name}.{attribute} is gone; update STEPS")
    setattr(owner, attribute, _timed(label, fn))


def _nothing() -> None:
    return None


def _count_calls() -> None:
    from supervisor.transport.calls import CallRunner

    run = CallRunner.run
    timer = _timed(TIMER, _nothing)

    @functools.wraps(run)
    async def counted(self: CallRunner, *args: Any, **kwargs: Any) -> Any:
        _window["calls"] = _window.get("calls", 0) + 1
        timer()
        return await run(self, *args, **kwargs)

    CallRunner.run = counted  # type: ignore[method-assign]


def _install_signals(out: Path) -> None:
    def start(signum: int, frame: FrameType | None) -> None:
        _totals.clear()
        _window.update(calls=0, thread_ns=_clock(), wall_ns=time.monotonic_ns())

    def finish(signum: int, frame: FrameType | None) -> None:
        if "thread_ns" not in _window:
            return
        document = {
            "calls": _window["calls"],
            "loop_thread_cpu_ns": _clock() - _window["thread_ns"],
            "wall_ns": time.monotonic_ns() - _window["wall_ns"],
            "steps": {
                label: {"ns": ns, "count": count, "timed": timed} for label, (ns, count, timed) in _totals.items()
            },
            "order": [label for *_, label in STEPS],
            "whole": [label for *_, label in WHOLE],
            "inside": INSIDE,
        }
        out.write_text(json.dumps(document, indent=2) + "\n")

    signal.signal(signal.SIGUSR1, start)
    signal.signal(signal.SIGUSR2, finish)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench._step_server", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where SIGUSR2 writes the window's counts (JSON)")
    args = p.parse_args(argv)
    for step in (*STEPS, *WHOLE):
        _wrap(*step)
    _count_calls()
    _install_signals(Path(args.out))
    print("bench._step_server: every layer on, steps timed for bench.steps", file=sys.stderr)
    from supervisor.cli import main as ire

    return ire(["serve", "--listen", "127.0.0.1:0"])


if __name__ == "__main__":
    sys.exit(main())
