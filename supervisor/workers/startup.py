"""Starting the launcher for ``ire serve``: confinement is required unless explicitly waived."""

from __future__ import annotations

import structlog

from supervisor.errors import ConfigError
from supervisor.quota.limits import effective_limits
from supervisor.registry import Registry
from supervisor.settings import SandboxSettings
from supervisor.workers.launcher import LauncherClient
from supervisor.workers.tenant import TenantInfo, WorkerTenant

log = structlog.get_logger(__name__)


def start_launcher(settings: SandboxSettings, *, unsafe_no_sandbox: bool) -> LauncherClient:
    """Start the launcher; refuse to go on when workers cannot be confined, unless told to."""
    launcher = LauncherClient.start(cgroup_parent=settings.cgroup_parent)
    ready = launcher.ready
    log.info(
        "launcher ready",
        pid=launcher.pid,
        onnxruntime=ready.onnxruntime_version,
        cgroup_version=ready.cgroup_version,
        unavailable=list(ready.unavailable),
    )
    if unsafe_no_sandbox:
        log.warning(
            "UNSAFE: workers will run without any confinement (--unsafe-no-sandbox); "
            "a crafted model can reach the network, other tenants' data and this host",
            unavailable=list(ready.unavailable),
        )
    elif ready.unavailable:
        launcher.close()
        raise ConfigError(
            "cannot confine tenant workers on this host: "
            + "; ".join(ready.unavailable)
            + ". Run `ire sandbox check`, or pass --unsafe-no-sandbox to serve without confinement"
        )
    return launcher


def registry_tenant_info(registry: Registry) -> TenantInfo:
    """The pool's view of a tenant, read from the registry at each worker start: its number
    and tier, and its effective quota (tier defaults with its overrides), whose memory, CPU
    and pids go to the worker's sandbox profile and whose GPU profile goes to the allocator."""

    def info(tenant: str) -> WorkerTenant:
        record = registry.get_tenant(tenant)
        limits = effective_limits(record.tier, registry.quota_overrides(tenant))
        return WorkerTenant.from_quota(record.number, record.tier, limits)

    return info
