"""Prometheus metrics on a per-app registry, so tests can build several apps in one process."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """The service's counters, histograms and gauges, all on one private ``CollectorRegistry``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "digitrec_http_requests",
            "HTTP requests answered",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "digitrec_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "digitrec_predictions",
            "Predictions made, by model and predicted class",
            ["model", "label"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "digitrec_batch_size",
            "Images per model call (micro-batching)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.spool_depth = Gauge(
            "digitrec_spool_depth",
            "Records waiting in the durable spool for the primary store",
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "digitrec_model_loaded",
            "1 when the model is loaded and warmed up",
            ["model"],
            registry=self.registry,
        )

    def watch_spool(self, depth: Callable[[], float]) -> None:
        """Read the spool depth at scrape time instead of keeping a copy up to date."""
        self.spool_depth.set_function(depth)

    def batch_observer(self, model: str) -> Callable[[int], None]:
        histogram = self.batch_size.labels(model=model)
        return histogram.observe

    def render(self) -> bytes:
        return generate_latest(self.registry)
