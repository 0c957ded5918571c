"""The audit log: one record per call and per admin action."""

from supervisor.audit.record import AuditRecord, Outcome
from supervisor.audit.writer import AuditWriter

__all__ = ["AuditRecord", "AuditWriter", "Outcome"]
