"""The embedded engine: regorus in process, one engine per thread that evaluates.

Each revision is compiled once (by :func:`~supervisor.policy.compiler.compile_policy`).
A thread loads the compiled program, or parses the set for the interpreter, the first time
it evaluates that revision, and keeps that engine in a ``threading.local``: regorus engines
must be used and dropped on the thread that made them. In a server that thread is the
event loop's: decisions are evaluated inline.

Why inline, and how evaluation time is bounded: regorus holds the GIL for a whole
evaluation (measured: a 1.3 s evaluation in a worker thread stalled the main thread for
1.3 s), so no thread can preempt it and a hand-off to a pool only adds latency (~60 µs
here). Work is bounded instead by the RVM's instruction limit (a runaway evaluation stops
with an error), by the probes every candidate set must decide within the deadline before
it is accepted (see :mod:`.compiler`), and by the deadline itself: a decision that comes
back late is discarded and the call refused ("timeout").

The input is projected onto the paths the revision can read, and decisions may be served
from a :class:`~supervisor.policy.cache.DecisionCache`; see :mod:`.cache`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from supervisor.policy._regorus import Interpreter, Vm, error_text
from supervisor.policy.cache import DecisionCache, encode, projector
from supervisor.policy.compiler import CompiledPolicy
from supervisor.policy.engine import Evaluation, Query
from supervisor.policy.errors import PolicyEngineError, PolicySetError

__all__ = ["EmbeddedEngine"]

# How the RVM reports a runaway evaluation.
_RVM_LIMIT = "instruction limit"


class _ThreadEngine(threading.local):
    """What one thread holds: an engine for the revision it last evaluated."""

    def __init__(self) -> None:
        self.revision = ""
        self.engine: Interpreter | Vm | None = None

    def get(self, compiled: CompiledPolicy) -> Interpreter | Vm:
        if self.revision != compiled.revision or self.engine is None:
            self.engine = None  # dropped here, on its own thread
            self.engine = (
                Vm(compiled.program) if compiled.program is not None else Interpreter(compiled.policy_set.modules)
            )
            self.revision = compiled.revision
        return self.engine

    def reset(self) -> None:
        """After a failure the engine may be in any state: the next call builds a new one."""
        self.engine = None
        self.revision = ""


Projector = Callable[[Mapping[str, Any]], dict[str, Any]]
# Parts of the input that change from call to call for the same caller, model and request.
_VOLATILE = frozenset({"usage", "time", "resource"})


def _serving(compiled: CompiledPolicy, cached: bool) -> tuple[CompiledPolicy, Projector | None, bool]:
    """The revision, its input projection, and whether its decisions may be reused."""
    reads = compiled.reads
    stable = cached and reads is not None and not any(path[0] in _VOLATILE for path in reads)
    return compiled, (projector(reads) if reads is not None else None), stable


class EmbeddedEngine:
    name = "embedded"

    def __init__(self, compiled: CompiledPolicy, *, timeout_seconds: float, cache: DecisionCache | None = None) -> None:
        # The revision and its input projection, swapped together as one value.
        self._serving = _serving(compiled, cache is not None)
        self._timeout = timeout_seconds
        self._cache = cache
        self._local = _ThreadEngine()

    @property
    def revision(self) -> str:
        return self._serving[0].revision

    @property
    def compiled(self) -> CompiledPolicy:
        return self._serving[0]

    @property
    def cache(self) -> DecisionCache | None:
        return self._cache

    def activate(self, compiled: CompiledPolicy) -> None:
        """Serve ``compiled`` from now on. Only a validated set can get here.

        This thread's engine is built first, so a set that fails to load is refused here
        (the old one stays) rather than on the next call.
        """
        try:
            self._local.get(compiled)
        except Exception as exc:
            self._local.reset()
            raise PolicySetError(f"revision {compiled.policy_set.short} does not load: {error_text(exc)}") from exc
        self._serving = _serving(compiled, self._cache is not None)
        if self._cache is not None:
            self._cache.clear()  # keys carry the revision; this only frees the memory

    def decide(self, query: Query, document: Mapping[str, Any]) -> Evaluation:
        """Evaluate in the calling thread; PolicyEngineError on failure or past the deadline."""
        compiled, project, _ = self._serving
        if query not in compiled.queries:
            raise PolicyEngineError(f"revision {compiled.policy_set.short} defines no {query.rule}", "undefined")
        key = None
        if project is not None:
            # Only what the policy can read: less to encode and parse, and the cache key.
            text = encode(project(document))
            if self._cache is not None:
                tenant = document.get("tenant", {}).get("id", "")
                key = self._cache.key(compiled.revision, query.value, str(tenant), text)
                cached = self._cache.get(key)
                if cached is not None:
                    return Evaluation(cached, compiled.revision)
        else:
            text = encode(document)
        started = 0.0
        try:
            engine = self._local.get(compiled)
            started = time.perf_counter()
            value = engine.eval_json(query.rule, text)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self._local.reset()
            text = error_text(exc)
            cause = "timeout" if _RVM_LIMIT in text else "crash"
            raise PolicyEngineError(f"{type(exc).__name__}: {' '.join(text.split())}"[:1000], cause) from exc
        elapsed = time.perf_counter() - started
        if elapsed > self._timeout:
            raise PolicyEngineError(
                f"the decision took {elapsed:.3f} s, over the {self._timeout} s deadline", "timeout"
            )
        if key is not None and self._cache is not None:
            self._cache.put(key, value)
        return Evaluation(value, compiled.revision)

    async def evaluate(self, query: Query, document: Mapping[str, Any]) -> Evaluation:
        return self.decide(query, document)

    def stable_revision(self, query: Query) -> str | None:
        """The revision, when the decision cache is on and the revision reads none of
        ``usage``, ``time`` and ``resource`` (and every path it reads is known)."""
        compiled, _, stable = self._serving
        return compiled.revision if stable and query in compiled.queries else None

    async def close(self) -> None:
        self._local.reset()
