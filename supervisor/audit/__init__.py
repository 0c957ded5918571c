"""The audit log: one hash-chained, signed-checkpointed record per call and per admin action."""

from supervisor.audit.admin import admin_record, audited_action, local_principal, record_admin_action
from supervisor.audit.keys import AuditKey, AuditPublicKey
from supervisor.audit.reader import read_records
from supervisor.audit.record import AuditRecord, Outcome
from supervisor.audit.writer import AuditWriter

__all__ = [
    "AuditKey",
    "AuditPublicKey",
    "AuditRecord",
    "AuditWriter",
    "Outcome",
    "admin_record",
    "audited_action",
    "local_principal",
    "read_records",
    "record_admin_action",
]
