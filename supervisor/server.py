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
from supervisor.policy.runtime import start_policy
from supervisor.quota.admission import Quotas, open_store
from supervisor.service import Authenticator, InferenceService
from supervisor.transport.calls import CallRunner
from supervisor.transport.grpc_admin import AdminServicer
from supervisor.transport.grpc_inference import InferenceServicer
from supervisor.workers import WorkerPool
from supervisor.workers.reaper import Reaper
from supervisor.workers.startup import registry_tenant_info, start_launcher

log = structlog.get_logger(__name__)

OIP_SERVICE = oip.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
ADMIN_SERVICE = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name


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
    calls = CallRunner(Authenticator(verifier, registry), audit)
    service = InferenceService(settings, registry, home.store(), pool, policy.authorizer, quotas)
    servicer = InferenceServicer(service, calls, ire_version())
    admin_servicer = AdminServicer(AdminService(registry, policy.authorizer, policy), calls)

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
        port = server.add_insecure_port(listen)
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
    for name in ("", OIP_SERVICE):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving", listen=listen, port=port)
    if on_ready is not None:
        on_ready(port)
    try:
        await stop.wait()
    finally:
        log.info("stopping", grace_seconds=settings.server.grace_seconds)
        servicer.ready = False
        await health_servicer.enter_graceful_shutdown()
        await server.stop(settings.server.grace_seconds)
        await policy.close()
        await pool.close()
        await quotas.close()
        reaper.stop()
        audit.close()
        registry.close()
        log.info("stopped")
