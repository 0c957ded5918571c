"""Assemble the policy engine a server uses, from the home and its settings."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import structlog

from supervisor.audit import AuditWriter, Outcome, admin_record
from supervisor.errors import AuditWriteError, ConfigError
from supervisor.home import Home
from supervisor.policy.authorizer import Authorizer
from supervisor.policy.cache import DecisionCache
from supervisor.policy.document import NO_USAGE, UsageSource
from supervisor.policy.embedded import EmbeddedEngine
from supervisor.policy.engine import PolicyEngine
from supervisor.policy.errors import PolicySetError
from supervisor.policy.reload import PolicyManager, ReloadReport, ReloadResult, load_and_compile
from supervisor.policy.remote import RemoteEngine
from supervisor.settings import PolicySettings, Settings

log = structlog.get_logger(__name__)

__all__ = ["ENGINES", "PolicyRuntime", "start_policy"]

ENGINES = ("embedded", "remote")
#: The principal of reloads nobody asked for over the API: the watcher saw files change.
WATCHER_PRINCIPAL = "system:policy-watcher"


@dataclass
class PolicyRuntime:
    engine: PolicyEngine
    authorizer: Authorizer
    manager: PolicyManager | None  # None for the remote engine: the OPA server owns its policies
    _watcher: asyncio.Task[None] | None = field(default=None, repr=False)

    async def reload(self, trigger: str) -> ReloadResult:
        if self.manager is None:
            raise PolicySetError("policy.engine is 'remote': the OPA server loads the policies, so reload them there")
        return await self.manager.reload(trigger)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        await self.engine.close()


def _remote(home: Home, policy: PolicySettings) -> RemoteEngine:
    token_path = home.root / policy.remote_token_file
    try:
        token = token_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"policy.remote_token_file: cannot read {token_path}: {exc}") from exc
    return RemoteEngine(policy.remote_url, token, str(home.root / policy.remote_ca_file), policy.timeout_seconds)


def _audit_reloads(audit: AuditWriter) -> ReloadReport:
    """Record each reload the watcher attempts, like an admin action."""

    def report(trigger: str, result: ReloadResult | None, error: str) -> None:
        if result is not None:
            record = admin_record(
                "policy.reload",
                WATCHER_PRINCIPAL,
                trigger=trigger,
                revision=result.revision,
                previous=result.previous,
                tests=result.tests,
            )
        else:
            record = admin_record(
                "policy.reload",
                WATCHER_PRINCIPAL,
                outcome=Outcome.FAILED,
                status="REFUSED",
                trigger=trigger,
                error=error,
            )
        try:
            audit.append(record)
        except AuditWriteError as exc:
            log.error("cannot audit a policy reload", error=str(exc))

    return report


async def start_policy(
    home: Home, settings: Settings, audit: AuditWriter | None = None, usage: UsageSource = NO_USAGE
) -> PolicyRuntime:
    """The engine named by ``policy.engine``; for "embedded", the home's set must be valid.

    A server never starts without a working policy: an invalid set is a ConfigError.
    """
    policy = settings.policy
    if policy.engine not in ENGINES:
        raise ConfigError(f"policy.engine: got {policy.engine!r}, expected one of {list(ENGINES)}")
    if policy.engine == "remote":
        engine = _remote(home, policy)
        log.info("policy engine remote", url=policy.remote_url)
        return PolicyRuntime(engine, Authorizer(engine, show_reasons=policy.show_reasons, usage=usage), None)
    try:
        compiled = load_and_compile(home.policies_dir, use_vm=policy.compiled, deadline_seconds=policy.timeout_seconds)
    except PolicySetError as exc:
        raise ConfigError(f"the policy set in {home.policies_dir} is unusable, refusing to start: {exc}") from exc
    cache = DecisionCache(policy.decision_cache_entries) if policy.decision_cache else None
    embedded = EmbeddedEngine(compiled, timeout_seconds=policy.timeout_seconds, cache=cache)
    manager = PolicyManager(
        home.policies_dir,
        embedded,
        use_vm=policy.compiled,
        timeout_seconds=policy.reload_timeout_seconds,
        deadline_seconds=policy.timeout_seconds,
        report=_audit_reloads(audit) if audit is not None else None,
    )
    log.info(
        "policy engine embedded",
        revision=compiled.policy_set.short,
        tests=compiled.tests,
        compiled=compiled.program is not None,
        cached=cache is not None and compiled.reads is not None,
    )
    runtime = PolicyRuntime(embedded, Authorizer(embedded, show_reasons=policy.show_reasons, usage=usage), manager)
    runtime._watcher = asyncio.create_task(manager.watch(policy.reload_poll_seconds), name="ire-policy-watch")
    return runtime
