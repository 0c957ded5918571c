"""Prometheus metrics, labelled by tenant and model, with bounded label sets.

Label values come only from the registry (a tenant or model that was found), never from
request text, and each label keeps at most a fixed number of distinct values; the rest
are counted under "other". A client sending random model names cannot grow the series.
"""

from __future__ import annotations

from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

OTHER = "other"
# Label combinations whose metric children are kept for the hot path (past it, looked up).
MAX_CACHED_CHILDREN = 4096
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


class _Bounded:
    """Admits at most ``limit`` distinct values; later ones map to OTHER."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        if len(self._seen) >= self._limit:
            return OTHER
        self._seen.add(value)
        return value


class Metrics:
    def __init__(
        self, registry: CollectorRegistry | None = None, *, max_tenants: int = 500, max_models: int = 2000
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.tenant = _Bounded(max_tenants)
        self.model = _Bounded(max_models)
        self._children: dict[tuple[str, str, str, str], list[Any]] = {}
        r = self.registry
        tm = ["tenant", "model"]
        self.calls = Counter("ire_calls", "Calls by outcome and gRPC status.", [*tm, "action", "status"], registry=r)
        self.latency = Histogram(
            "ire_call_latency_seconds", "Call latency.", [*tm, "action"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.queue_time = Histogram(
            "ire_queue_seconds",
            "Time from admission to the worker's answer minus run.",
            tm,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.policy_denials = Counter(
            "ire_policy_denials", "Calls the policy refused.", ["tenant", "action"], registry=r
        )
        self.quota_rejections = Counter(
            "ire_quota_rejections", "Calls a quota refused.", ["tenant", "limit"], registry=r
        )
        self.worker_starts = Counter("ire_worker_starts", "Workers started.", ["tenant"], registry=r)
        self.worker_crashes = Counter("ire_worker_crashes", "Workers that died unexpectedly.", ["tenant"], registry=r)
        self.worker_ooms = Counter("ire_worker_ooms", "Workers killed for exceeding memory.", ["tenant"], registry=r)
        self.worker_memory = Gauge("ire_worker_memory_bytes", "Worker resident memory.", ["tenant"], registry=r)
        self.worker_cpu = Gauge("ire_worker_cpu_seconds", "Worker CPU time used.", ["tenant"], registry=r)
        self.gpu_memory = Gauge(
            "ire_gpu_slice_memory_used_bytes", "GPU slice memory in use.", ["slice", "tenant"], registry=r
        )
        self.gpu_utilization = Gauge(
            "ire_gpu_slice_utilization_percent", "GPU slice utilisation.", ["slice", "tenant"], registry=r
        )
        self.audit_write = Histogram(
            "ire_audit_write_seconds",
            "Audit append latency on the call path, with the wait for the end of the event-loop turn.",
            buckets=(1e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 1e-3, 1e-2),
            registry=r,
        )
        self.audit_backlog = Gauge(
            "ire_audit_backlog_records", "Audit records written but not yet fsynced.", registry=r
        )

    def labels(self, tenant: str, model: str) -> tuple[str, str]:
        """Bounded label values for a tenant and a model found in the registry."""
        return (self.tenant(tenant) if tenant else "", self.model(f"{tenant}/{model}") if model else "")

    def observe_call(
        self, tenant: str, model: str, action: str, status: str, seconds: float, queued: float = -1.0
    ) -> None:
        """Count a call and its latency, and its queue time when ``queued`` >= 0."""
        key = (tenant, model, action, status)
        children = self._children.get(key)
        if children is None:
            # prometheus-client's .labels() costs a few µs a call: the children are looked
            # up once per label combination and kept (no series is ever removed here).
            t, m = self.labels(tenant, model)
            children = [self.calls.labels(t, m, action, status), self.latency.labels(t, m, action), None]
            if len(self._children) < MAX_CACHED_CHILDREN:
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)
        if queued >= 0:
            if children[2] is None:  # made on first use: a series only where calls queue
                children[2] = self.queue_time.labels(*self.labels(tenant, model))
            children[2].observe(queued)

    def observe_refusal(self, tenant: str, action: str, kind: str, limit: str = "") -> None:
        """Count a policy denial (``kind`` "policy") or a quota rejection ("quota")."""
        t = self.tenant(tenant) if tenant else ""
        if kind == "policy":
            self.policy_denials.labels(t, action).inc()
        elif kind == "quota":
            self.quota_rejections.labels(t, limit).inc()

    def serve(self, address: str, port: int) -> WSGIServer:
        """Expose /metrics on its own port (a daemon thread of prometheus-client)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        return server
