"""``ire serve``: assemble the runtime from a home and serve it until told to stop.

Start-up order matters: the launcher (fork server) starts before the gRPC server creates
its threads. Shutdown is graceful: readiness goes to NOT_SERVING, calls in flight get
``server.grace_seconds`` to finish, then workers and the launcher stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos import admin_pb2, admin_pb2_grpc
from protos.inference import grpc_predict_v2_pb2 as oip
from protos.inference import grpc_predict_v2_pb2_grpc as oip_grpc
from supervisor.admin import AdminService
from supervisor.audit import AuditWriter
from supervisor.auth.cache import CachingVerifier
from supervisor.errors import ConfigError
from supervisor.gpu.factory import open_allocator
from supervisor.home import Home
from supervisor.metrics import Metrics
from supervisor.metrics_sampler import Sampler
from supervisor.policy.runtime import start_policy
from supervisor.quota.admission import Quotas, open_store
from supervisor.service import Authenticator, InferenceService
from supervisor.settings import Settings
from supervisor.tls import is_loopback, server_credentials
from supervisor.transport.calls import CallRunner
from supervisor.transport.grpc_admin import AdminServicer
from supervisor.transport.grpc_inference import InferenceServicer
from supervisor.workers import WorkerPool
from supervisor.workers.reaper import Reaper
from supervisor.workers.startup import registry_tenant_info, start_launcher

log = structlog.get_logger(__name__)

OIP_SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


# How often an unsafe plain-text listener is logged again while it serves.
UNSAFE_PLAINTEXT_REMINDER_SECONDS = 600.0


def _add_port(server: grpc.aio.Server, settings: Settings, root: Path, listen: str) -> int:
    """Bind ``listen`` with TLS when [tls] is set; plain text only on loopback, or when unsafe."""
    if settings.tls.cert_file or settings.tls.key_file:
        mtls = bool(settings.tls.client_ca_file)
        port: int = server.add_secure_port(listen, server_credentials(settings.tls, root))
        log.info("listening with TLS", listen=listen, client_certificates="required" if mtls else "not asked")
        return port
    if settings.tls.client_ca_file:
        raise ConfigError("tls.client_ca_file is set but tls.cert_file and tls.key_file are not")
    if not is_loopback(listen):
        if not settings.server.unsafe_plaintext:
            # Tokens are bearer credentials: in plain text, anyone on the path can replay them.
            raise ConfigError(
                f"refusing plain text on {listen}, which is not loopback: set [tls] cert_file and key_file "
                "(or, UNSAFE, server.unsafe_plaintext = true)"
            )
        log.warning("UNSAFE: serving plain text outside loopback (server.unsafe_plaintext)", listen=listen)
    insecure: int = server.add_insecure_port(listen)
    return insecure


async def _remind_unsafe(listen: str) -> None:
    while True:
        await asyncio.sleep(UNSAFE_PLAINTEXT_REMINDER_SECONDS)
        log.warning("UNSAFE: still serving plain text outside loopback (server.unsafe_plaintext)", listen=listen)


def _start_metrics(settings: Settings, metrics: Metrics) -> None:
    host, _, port = settings.metrics.listen.rpartition(":")
    try:
        bound = metrics.serve(host.strip("[]") or "0.0.0.0", int(port))  # noqa: S104 - the operator's choice
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot serve metrics on {settings.metrics.listen}: {exc}") from exc
    log.info("metrics endpoint", listen=settings.metrics.listen, port=bound.server_port)


def ire_version() -> str:
    try:
        return version("ire")
    except PackageNotFoundError:
        return "0+unknown"


async def serve(
    home: Home,
    listen: str | None = None,
    *,
    on_ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
    unsafe_no_sandbox: bool = False,
) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set).

    Workers are confined (sandbox/); without confinement on this host, serving is refused
    unless ``unsafe_no_sandbox``.
    """
    settings = home.settings()
    listen = listen or settings.server.listen
    # Verified tokens are cached until their exp: a client reusing its token skips the
    # signature check (supervisor/auth/cache.py).
    verifier = CachingVerifier(home.verifier(settings), settings.auth.leeway_seconds)
    registry = home.registry()
    audit = AuditWriter.for_home(home, settings.audit)
    # Before the launcher, so that a bad gpu.* setting fails before anything starts.
    gpu = open_allocator(settings.gpu, home.root)
    launcher = start_launcher(settings.sandbox, unsafe_no_sandbox=unsafe_no_sandbox)
    loop = asyncio.get_running_loop()
    reaper = Reaper({launcher.pid})
    reaper.start(loop)
    pool = WorkerPool(launcher, settings, registry_tenant_info(registry), unsafe_no_sandbox=unsafe_no_sandbox, gpu=gpu)
    pool.attach(loop)
    quotas = Quotas(open_store(settings.quota, home.root), registry, settings.quota)
    try:
        # No usable policy set, no service (docs/policies.md).
        policy = await start_policy(home, settings, audit, usage=quotas)
    except ConfigError:
        await pool.close()
        await quotas.close()
        reaper.stop()
        raise
    metrics = Metrics()
    calls = CallRunner(Authenticator(verifier, registry), audit, metrics)
    service = InferenceService(settings, registry, home.store(), pool, policy.authorizer, quotas)
    servicer = InferenceServicer(service, calls, ire_version())
    admin_service = AdminService(home, registry, policy.authorizer, policy, quotas, audit)
    admin_servicer = AdminServicer(admin_service, calls)

    # gRPC's own bound is above ours so that an oversized request reaches the handler and
    # gets INVALID_ARGUMENT with the limit named; it still caps what the server buffers.
    wire_limit = settings.server.max_request_bytes * 2 + 1024 * 1024
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", wire_limit),
            ("grpc.max_send_message_length", wire_limit),
            # Likewise for headers: an oversized token reaches the verifier and is refused
            # as UNAUTHENTICATED; headers beyond this are dropped by gRPC itself.
            ("grpc.max_metadata_size", settings.auth.max_token_bytes * 4 + 8192),
        ]
    )
    oip_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
    admin_pb2_grpc.add_AdminServiceServicer_to_server(admin_servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [
            OIP_SERVICE,
            ADMIN_SERVICE,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    try:
        port = _add_port(server, settings, home.root, listen)
        if settings.metrics.listen:
            _start_metrics(settings, metrics)
    except ConfigError:
        await pool.close()
        await policy.close()
        await quotas.close()
        raise
    except RuntimeError as exc:
        await pool.close()
        await policy.close()
        await quotas.close()
        raise ConfigError(f"cannot listen on {listen}: {exc}") from exc
    if port == 0:
        await pool.close()
        await policy.close()
        await quotas.close()
        raise ConfigError(f"cannot listen on {listen}")
    stop = stop or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Outside the main thread there are no signal handlers: the caller sets `stop`.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    await server.start()
    background: list[asyncio.Task[None]] = []
    if settings.server.unsafe_plaintext and not is_loopback(listen):
        background.append(asyncio.create_task(_remind_unsafe(listen)))
    if settings.metrics.listen:
        sampler = Sampler(metrics, pool, lambda: [t.name for t in registry.list_tenants()], audit)
        background.append(asyncio.create_task(sampler.run(settings.metrics.sample_seconds)))
    for name in ("", OIP_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", listen=listen, port=port)
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        log.info("stopping", grace_seconds=settings.server.grace_seconds)
        for task in background:
            task.cancel()
        servicer.ready = False
        # Readiness first, so that balancers stop sending; then refuse what still arrives
        # (cleanly, before it starts) while calls in flight finish within the grace.
        await health_servicer.enter_graceful_shutdown()
        deadline = loop.time() + settings.server.grace_seconds
        if not await calls.drain(settings.server.grace_seconds):
            log.warning("calls still in flight after the grace period; cancelling them")
        await server.stop(max(1.0, deadline - loop.time()))
        await policy.close()
        await pool.close()
        await quotas.close()
        reaper.stop()
        audit.close()
        registry.close()
        log.info("stopped")
