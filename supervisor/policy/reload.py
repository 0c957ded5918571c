"""Keep the embedded engine's policy set current: on file change, on request, atomically.

A candidate set is read, compiled and tested in a child process
(:mod:`.validate`), which is killed at ``policy.reload_timeout_seconds``. Only a set that passes
replaces the one in force; a broken one is logged once and the old revision serves on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from supervisor.policy.compiler import CompiledPolicy, compile_policy
from supervisor.policy.embedded import EmbeddedEngine
from supervisor.policy.errors import PolicySetError
from supervisor.policy.policyset import fingerprint, load_policy_set

log = structlog.get_logger(__name__)

__all__ = ["PolicyManager", "ReloadReport", "ReloadResult", "load_and_compile"]


@dataclass(frozen=True)
class ReloadResult:
    revision: str  # in force after the reload
    previous: str
    changed: bool
    tests: int  # tests the revision in force passed
    compiled: bool  # served by the RVM (else the interpreter)


#: Told of every reload the watcher attempts: (trigger, result or None, error or '').
ReloadReport = Callable[[str, "ReloadResult | None", str], None]


def load_and_compile(directory: Path, *, use_vm: bool, deadline_seconds: float) -> CompiledPolicy:
    """Read and validate the set in ``directory``; PolicySetError when it is unusable."""
    compiled, _ = compile_policy(load_policy_set(directory), use_vm=use_vm, deadline_seconds=deadline_seconds)
    return compiled


class PolicyManager:
    def __init__(
        self,
        directory: Path,
        engine: EmbeddedEngine,
        *,
        use_vm: bool,
        timeout_seconds: float,
        deadline_seconds: float,
        report: ReloadReport | None = None,
    ) -> None:
        self._deadline = deadline_seconds
        self._directory = directory
        self._report = report
        self._engine = engine
        self._use_vm = use_vm
        self._timeout = timeout_seconds
        self._lock = asyncio.Lock()
        self._seen = fingerprint(directory)
        self._rejected = ""  # revision most recently refused, so the watcher reports it once

    @property
    def directory(self) -> Path:
        return self._directory

    async def reload(self, trigger: str) -> ReloadResult:
        """Load the directory's set and put it in force if it passes; raise PolicySetError if not."""
        async with self._lock:
            previous = self._engine.compiled
            self._seen = fingerprint(self._directory)
            # Imported here: `python -m supervisor.policy.validate` must not find itself imported.
            from supervisor.policy.validate import validate_in_child

            try:
                candidate = await validate_in_child(
                    self._directory,
                    skip_revision=previous.revision,
                    use_vm=self._use_vm,
                    deadline_seconds=self._deadline,
                    timeout_seconds=self._timeout,
                )
            except PolicySetError as exc:
                raise PolicySetError(f"{exc}; keeping revision {previous.policy_set.short}") from exc
            if candidate is None:
                return ReloadResult(previous.revision, previous.revision, False, previous.tests, bool(previous.program))
            try:
                self._engine.activate(candidate)
            except PolicySetError as exc:
                raise PolicySetError(f"{exc}; keeping revision {previous.policy_set.short}") from exc
            log.info(
                "policy revision in force",
                revision=candidate.policy_set.short,
                previous=previous.policy_set.short,
                trigger=trigger,
                tests=candidate.tests,
                compiled=candidate.program is not None,
            )
            return ReloadResult(candidate.revision, previous.revision, True, candidate.tests, bool(candidate.program))

    async def watch(self, interval_seconds: float) -> None:
        """Poll the directory; reload when it changes. Runs until cancelled; never raises."""
        while True:
            await asyncio.sleep(interval_seconds)
            if fingerprint(self._directory) == self._seen:
                continue
            try:
                result = await self.reload("file change")
            except PolicySetError as exc:
                text = str(exc)
                if text != self._rejected:
                    log.error("policy reload refused", trigger="file change", error=text)
                    self._rejected = text
                    self._tell("file change", None, text)
            except Exception:
                log.exception("policy reload failed", trigger="file change")
            else:
                self._rejected = ""
                if result.changed:
                    self._tell("file change", result, "")

    def _tell(self, trigger: str, result: ReloadResult | None, error: str) -> None:
        if self._report is None:
            return
        try:
            self._report(trigger, result, error)
        except Exception:
            log.exception("policy reload report failed")
