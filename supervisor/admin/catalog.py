"""Models, the policy set and the audit log, through the admin API."""

from __future__ import annotations

import asyncio
import io
import tempfile
import time
from pathlib import Path

from supervisor.admin._base import AdminBase
from supervisor.audit import AuditRecord
from supervisor.audit.bundle import export_bundle
from supervisor.audit.keys import AuditKey
from supervisor.errors import InvalidInputError
from supervisor.models import register_model_async
from supervisor.policy import ReloadResult
from supervisor.registry import ModelRecord
from supervisor.service import Caller


class CatalogAdmin(AdminBase):
    # Models

    async def register_model(
        self,
        caller: Caller,
        tenant: str,
        name: str,
        version: str,
        onnx: bytes,
        signature: bytes,
        filename: str,
        record: AuditRecord,
    ) -> ModelRecord:
        filename = filename or "model.onnx"
        resource = {"kind": "model", "tenant": tenant, "name": name, "version": version, "bytes": len(onnx)}
        await self._authorize("admin.model.register", caller, record, resource)
        limit = self._settings.limits.max_model_bytes
        if len(onnx) > limit:
            raise InvalidInputError(f"got a model of {len(onnx)} bytes, limit is {limit}")
        # A path separator would write outside the scratch directory.
        if "/" in filename or filename.startswith(".") or not filename.endswith(".onnx"):
            raise InvalidInputError(f"got filename {filename!r}, expected a plain name ending in .onnx")
        with tempfile.TemporaryDirectory(prefix="ire-register-") as scratch:
            model_dir = Path(scratch) / "model"
            model_dir.mkdir()
            (model_dir / filename).write_bytes(onnx)
            sig_path = None
            if signature:
                sig_path = Path(scratch) / "model.sig"
                sig_path.write_bytes(signature)
            model = await register_model_async(
                self._home, self._registry, tenant, name, model_dir, version, sig_path, self._authorizer
            )
        record.detail["model_sha256"] = model.sha256
        return model

    async def list_models(self, caller: Caller, tenant: str, record: AuditRecord) -> list[ModelRecord]:
        await self._authorize("admin.model.list", caller, record, {"kind": "model", "tenant": tenant})
        return self._registry.list_models(tenant or None)

    async def delete_model(self, caller: Caller, tenant: str, name: str, version: str, record: AuditRecord) -> int:
        resource = {"kind": "model", "tenant": tenant, "name": name, "version": version}
        await self._authorize("admin.model.delete", caller, record, resource)
        return self._registry.delete_models(tenant, name, version)

    # Policy and audit

    async def reload_policy(self, caller: Caller, record: AuditRecord) -> ReloadResult:
        await self._authorize("admin.policy.reload", caller, record, {"kind": "policy"})
        result = await self._policy.reload("admin api")
        record.detail["reload"] = {"revision": result.revision, "previous": result.previous, "changed": result.changed}
        return result

    async def export_checkpoint(
        self, caller: Caller, since: float, until: float, record: AuditRecord
    ) -> tuple[int, bytes]:
        """Sign a checkpoint now; the export bundle of ``[since, until]`` it proves."""
        until = until or time.time()
        resource = {"kind": "audit", "since": since, "until": until}
        await self._authorize("admin.audit.checkpoint", caller, record, resource)
        if since > until:
            raise InvalidInputError(f"got since {since} after until {until}")
        size = await asyncio.to_thread(self._audit.checkpoint, "admin api")
        public = AuditKey.load(self._home.audit_key_path).public
        out = io.StringIO()
        await asyncio.to_thread(export_bundle, self._home.audit_dir, public, since, until, out)
        record.detail["tree_size"] = size
        return size, out.getvalue().encode()
