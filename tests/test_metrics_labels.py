"""Metric label sets stay bounded whatever callers send."""

from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from supervisor.metrics import OTHER, Metrics


def test_label_values_are_bounded() -> None:
    metrics = Metrics(max_tenants=3, max_models=5)
    for i in range(100):
        metrics.observe_call(f"tenant-{i}", f"model-{i}", "predict", "OK", 0.001)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(metrics.registry).decode())}
    tenants = {s.labels["tenant"] for s in families["ire_calls"].samples}
    models = {s.labels["model"] for s in families["ire_calls"].samples}
    assert len(tenants) == 4 and OTHER in tenants
    assert len(models) <= 6 and OTHER in models


def test_known_values_keep_their_own_series() -> None:
    metrics = Metrics(max_tenants=1)
    metrics.observe_call("acme", "mlp", "predict", "OK", 0.001)
    metrics.observe_call("globex", "mlp", "predict", "OK", 0.001)
    metrics.observe_call("acme", "mlp", "predict", "OK", 0.001)
    text = generate_latest(metrics.registry).decode()
    assert 'ire_calls_total{action="predict",model="acme/mlp",status="OK",tenant="acme"} 2.0' in text


def test_cached_series_keep_counting_and_queue_series_appear_only_when_calls_queue() -> None:
    metrics = Metrics()
    for _ in range(3):
        metrics.observe_call("acme", "mlp", "model_ready", "OK", 0.001)
    metrics.observe_call("acme", "mlp", "predict", "OK", 0.002, 0.0005)
    metrics.observe_call("acme", "mlp", "predict", "OK", 0.002, 0.0005)
    text = generate_latest(metrics.registry).decode()
    assert 'ire_calls_total{action="model_ready",model="acme/mlp",status="OK",tenant="acme"} 3.0' in text
    assert 'ire_queue_seconds_count{model="acme/mlp",tenant="acme"} 2.0' in text
    assert 'ire_call_latency_seconds_count{action="predict",model="acme/mlp",tenant="acme"} 2.0' in text
