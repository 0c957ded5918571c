"""The admin gRPC servicer (``ire.admin.v1.AdminService``): converts, delegates, audits.

Calls take the same path as predictions (:class:`~supervisor.transport.calls.CallRunner`):
authenticated, decided by policy (in :class:`~supervisor.admin.AdminService`), mapped
through the one status table, audited before the reply.
"""

from __future__ import annotations

import grpc

from protos import admin_pb2 as pb
from protos import admin_pb2_grpc as pb_grpc
from supervisor.admin import AdminService
from supervisor.audit import AuditRecord
from supervisor.registry import Tenant
from supervisor.service import Caller
from supervisor.transport.calls import CallRunner

__all__ = ["AdminServicer"]


def _tenant(tenant: Tenant) -> pb.Tenant:
    return pb.Tenant(name=tenant.name, tier=tenant.tier, labels=dict(tenant.labels), created_at=tenant.created_at)


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, service: AdminService, calls: CallRunner) -> None:
        self._service = service
        self._calls = calls

    async def CreateTenant(
        self, request: pb.CreateTenantRequest, context: grpc.aio.ServicerContext
    ) -> pb.CreateTenantResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.CreateTenantResponse:
            tenant = await self._service.create_tenant(caller, request.name, request.tier, request.labels, record)
            return pb.CreateTenantResponse(tenant=_tenant(tenant))

        return await self._calls.run(context, "admin.tenant.create", handler)

    async def ListTenants(
        self, request: pb.ListTenantsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListTenantsResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ListTenantsResponse:
            page, token = await self._service.list_tenants(caller, request.page_size, request.page_token, record)
            return pb.ListTenantsResponse(tenants=[_tenant(t) for t in page], next_page_token=token)

        return await self._calls.run(context, "admin.tenant.list", handler)

    async def ReloadPolicy(
        self, request: pb.ReloadPolicyRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReloadPolicyResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ReloadPolicyResponse:
            result = await self._service.reload_policy(caller, record)
            return pb.ReloadPolicyResponse(
                revision=result.revision,
                previous_revision=result.previous,
                changed=result.changed,
                tests_passed=result.tests,
                compiled=result.compiled,
            )

        return await self._calls.run(context, "admin.policy.reload", handler)
