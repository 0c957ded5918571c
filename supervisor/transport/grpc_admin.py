"""The admin gRPC servicer (``ire.admin.v1.AdminService``): converts, delegates, audits.

Calls take the same path as predictions (:class:`~supervisor.transport.calls.CallRunner`):
authenticated, decided by policy (in :class:`~supervisor.admin.AdminService`), mapped
through the one status table, audited before the reply.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeAlias, TypeVar

import grpc

from protos import admin_pb2 as pb
from protos import admin_pb2_grpc as pb_grpc
from supervisor.admin import AdminService
from supervisor.audit import AuditRecord
from supervisor.service import Caller
from supervisor.transport.admin_convert import model_pb, quota_pb, signer_pb, tenant_pb
from supervisor.transport.calls import CallRunner

__all__ = ["AdminServicer"]

R = TypeVar("R")
Ctx: TypeAlias = grpc.aio.ServicerContext


class AdminServicer(pb_grpc.AdminServiceServicer):
    def __init__(self, service: AdminService, calls: CallRunner) -> None:
        self._service = service
        self._calls = calls

    async def _run(self, context: Ctx, action: str, handler: Callable[[Caller, AuditRecord], Awaitable[R]]) -> R:
        return await self._calls.run(context, action, handler)

    # Tenants

    async def CreateTenant(self, request: pb.CreateTenantRequest, context: Ctx) -> pb.CreateTenantResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.CreateTenantResponse:
            tenant = await self._service.create_tenant(caller, request.name, request.tier, request.labels, record)
            return pb.CreateTenantResponse(tenant=tenant_pb(tenant))

        return await self._run(context, "admin.tenant.create", handler)

    async def ListTenants(self, request: pb.ListTenantsRequest, context: Ctx) -> pb.ListTenantsResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ListTenantsResponse:
            page, token = await self._service.list_tenants(caller, request.page_size, request.page_token, record)
            return pb.ListTenantsResponse(tenants=[tenant_pb(t) for t in page], next_page_token=token)

        return await self._run(context, "admin.tenant.list", handler)

    async def UpdateTenant(self, request: pb.UpdateTenantRequest, context: Ctx) -> pb.UpdateTenantResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.UpdateTenantResponse:
            tenant = await self._service.update_tenant(
                caller, request.name, request.tier, request.labels, request.replace_labels, record
            )
            return pb.UpdateTenantResponse(tenant=tenant_pb(tenant))

        return await self._run(context, "admin.tenant.update", handler)

    async def SuspendTenant(self, request: pb.SuspendTenantRequest, context: Ctx) -> pb.SuspendTenantResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.SuspendTenantResponse:
            tenant = await self._service.suspend_tenant(caller, request.name, request.suspended, record)
            return pb.SuspendTenantResponse(tenant=tenant_pb(tenant))

        return await self._run(context, "admin.tenant.suspend", handler)

    async def DeleteTenant(self, request: pb.DeleteTenantRequest, context: Ctx) -> pb.DeleteTenantResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.DeleteTenantResponse:
            await self._service.delete_tenant(caller, request.name, record)
            return pb.DeleteTenantResponse()

        return await self._run(context, "admin.tenant.delete", handler)

    # Quotas

    async def SetQuota(self, request: pb.SetQuotaRequest, context: Ctx) -> pb.Quota:
        async def handler(caller: Caller, record: AuditRecord) -> pb.Quota:
            view = await self._service.set_quota(caller, request.tenant, request.overrides, request.reset, record)
            return quota_pb(view)

        return await self._run(context, "admin.quota.set", handler)

    async def GetQuota(self, request: pb.GetQuotaRequest, context: Ctx) -> pb.Quota:
        async def handler(caller: Caller, record: AuditRecord) -> pb.Quota:
            return quota_pb(await self._service.get_quota(caller, request.tenant, record))

        return await self._run(context, "admin.quota.get", handler)

    # Tokens

    async def IssueToken(self, request: pb.IssueTokenRequest, context: Ctx) -> pb.IssueTokenResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.IssueTokenResponse:
            issued = await self._service.issue_token(
                caller, request.tenant, request.subject, list(request.scopes), request.ttl_seconds, record
            )
            return pb.IssueTokenResponse(token=issued.token, token_id=issued.token_id, expires_at=issued.expires_at)

        return await self._run(context, "admin.token.issue", handler)

    async def RevokeToken(self, request: pb.RevokeTokenRequest, context: Ctx) -> pb.RevokeTokenResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.RevokeTokenResponse:
            await self._service.revoke_token(caller, request.token_id, request.reason, record)
            return pb.RevokeTokenResponse()

        return await self._run(context, "admin.token.revoke", handler)

    # Signers

    async def AddSigner(self, request: pb.AddSignerRequest, context: Ctx) -> pb.Signer:
        async def handler(caller: Caller, record: AuditRecord) -> pb.Signer:
            signer = await self._service.add_signer(
                caller, request.name, request.tenant, request.public_key_pem, record
            )
            return signer_pb(signer)

        return await self._run(context, "admin.signer.add", handler)

    async def ListSigners(self, request: pb.ListSignersRequest, context: Ctx) -> pb.ListSignersResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ListSignersResponse:
            signers = await self._service.list_signers(caller, record)
            return pb.ListSignersResponse(signers=[signer_pb(s) for s in signers])

        return await self._run(context, "admin.signer.list", handler)

    async def RemoveSigner(self, request: pb.RemoveSignerRequest, context: Ctx) -> pb.RemoveSignerResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.RemoveSignerResponse:
            await self._service.remove_signer(caller, request.name, record)
            return pb.RemoveSignerResponse()

        return await self._run(context, "admin.signer.remove", handler)

    # Models

    async def RegisterModel(self, request: pb.RegisterModelRequest, context: Ctx) -> pb.Model:
        async def handler(caller: Caller, record: AuditRecord) -> pb.Model:
            model = await self._service.register_model(
                caller,
                request.tenant,
                request.name,
                request.version,
                request.onnx,
                request.signature,
                request.filename,
                record,
            )
            return model_pb(model)

        return await self._run(context, "admin.model.register", handler)

    async def ListModels(self, request: pb.ListModelsRequest, context: Ctx) -> pb.ListModelsResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ListModelsResponse:
            models = await self._service.list_models(caller, request.tenant, record)
            return pb.ListModelsResponse(models=[model_pb(m) for m in models])

        return await self._run(context, "admin.model.list", handler)

    async def DeleteModel(self, request: pb.DeleteModelRequest, context: Ctx) -> pb.DeleteModelResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.DeleteModelResponse:
            count = await self._service.delete_model(caller, request.tenant, request.name, request.version, record)
            return pb.DeleteModelResponse(deleted=count)

        return await self._run(context, "admin.model.delete", handler)

    # Policy and audit

    async def ReloadPolicy(self, request: pb.ReloadPolicyRequest, context: Ctx) -> pb.ReloadPolicyResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ReloadPolicyResponse:
            result = await self._service.reload_policy(caller, record)
            return pb.ReloadPolicyResponse(
                revision=result.revision,
                previous_revision=result.previous,
                changed=result.changed,
                tests_passed=result.tests,
                compiled=result.compiled,
            )

        return await self._run(context, "admin.policy.reload", handler)

    async def ExportAuditCheckpoint(
        self, request: pb.ExportAuditCheckpointRequest, context: Ctx
    ) -> pb.ExportAuditCheckpointResponse:
        async def handler(caller: Caller, record: AuditRecord) -> pb.ExportAuditCheckpointResponse:
            size, bundle = await self._service.export_checkpoint(caller, request.since, request.until, record)
            return pb.ExportAuditCheckpointResponse(tree_size=size, bundle=bundle)

        return await self._run(context, "admin.audit.checkpoint", handler)
