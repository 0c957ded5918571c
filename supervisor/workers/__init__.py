"""Tenant workers as seen from the supervisor: the launcher client, connections, the pool."""

from supervisor.workers.connection import WorkerConnection
from supervisor.workers.launcher import LauncherClient
from supervisor.workers.pool import WorkerPool

__all__ = ["LauncherClient", "WorkerConnection", "WorkerPool"]
