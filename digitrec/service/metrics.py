"""Prometheus metrics on a per-app registry, so tests can build several apps in one process.

With worker processes (granian or gunicorn), the master sets ``PROMETHEUS_MULTIPROC_DIR`` to a fresh
directory before any worker starts; prometheus-client then keeps every worker's values in files there, and ``render``
adds them up (counters and histograms summed, "model loaded" the minimum over live workers), so a
scrape answered by any worker shows the whole service.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServiceMetrics:
    """The service's counters, histograms and gauges, all on one private ``CollectorRegistry``."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir if multiprocess_dir is not None else os.environ.get(MULTIPROC_ENV)
        self.registry = CollectorRegistry(auto_describe=True)
        self._answered: dict[tuple[str, str, int], tuple] = {}
        self._predicted: dict[tuple[str, int], Any] = {}
        self._spool = SpoolDepth()
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
        self.readings = Counter(
            "digitrec_readings",
            "Numbers read (POST /api/v1/read), by model and how many digits were read",
            ["model", "digits"],
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "digitrec_batch_size",
            "Images per model call (micro-batching)",
            ["model"],
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.models_loaded = Gauge(
            "digitrec_model_loaded",
            "1 when the model is loaded and warmed up (in every live worker process)",
            ["model"],
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        if not self.multiprocess_dir:
            self.registry.register(self._spool)

        self.model_serving = Gauge(
            "digitrec_model_serving",
            "Worker processes serving this version of the model now (1 without workers; 0: served before)",
            ["model", "version"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.model_swaps = Counter(
            "digitrec_model_swaps",
            "Switches to a newly promoted version (result=ok) and versions that failed to load (result=failed)",
            ["model", "result"],
            registry=self.registry,
        )

    def answered(self, method: str, endpoint: str, status: int, seconds: float) -> None:
        """Count one answered request and its latency. The labelled children are looked up once per
        label combination: ``labels()`` validates and locks on every call."""
        key = (method, endpoint, status)
        children = self._answered.get(key)
        if children is None:
            children = self._answered.setdefault(
                key,
                (
                    self.requests.labels(method=method, endpoint=endpoint, status=str(status)),
                    self.latency.labels(endpoint=endpoint),
                ),
            )
        children[0].inc()
        children[1].observe(seconds)

    def predicted(self, model: str, label: int) -> None:
        """Count one prediction (children cached as in ``answered``)."""
        child = self._predicted.get((model, label))
        if child is None:
            child = self._predicted.setdefault((model, label), self.predictions.labels(model=model, label=str(label)))
        child.inc()

    def serving_changed(self, model: str, previous: str | None, version: str | None) -> None:
        """Called by the model registry when a model starts serving a version, or a swap fails (None)."""
        if version is None:
            self.model_swaps.labels(model=model, result="failed").inc()
            return
        if previous is not None and previous != version:
            self.model_serving.labels(model=model, version=previous).set(0)
            self.model_swaps.labels(model=model, result="ok").inc()
        self.model_serving.labels(model=model, version=version).set(1)

    def watch_spool(self, depth: Callable[[], float]) -> None:
        """Read the spool depth at scrape time instead of keeping a copy up to date (with workers:
        a function that counts the spools of all of them)."""
        self._spool.depth = depth

    def batch_observer(self, model: str) -> Callable[[int], None]:
        histogram = self.batch_size.labels(model=model)
        return histogram.observe

    def render(self) -> bytes:
        if not self.multiprocess_dir:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        forget_dead_processes(self.multiprocess_dir)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)
        registry.register(self._spool)
        return generate_latest(registry)


class SpoolDepth(Collector):
    """``digitrec_spool_depth``, read when scraped."""

    def __init__(self) -> None:
        self.depth: Callable[[], float] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "digitrec_spool_depth", "Records waiting in the durable spool(s) for the primary store", value=self.depth()
        )


_LIVE_FILE = re.compile(r"_live\w*_(\d+)\.db$")


def forget_dead_processes(directory: str) -> None:
    """Drop the live-only gauges of workers that no longer exist. The master reports each exit it handles
    (``mark_process_dead``); a scrape also checks the pids itself, for exits no master hook saw."""
    pids = {int(m.group(1)) for name in os.listdir(directory) if (m := _LIVE_FILE.search(name))}
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            mark_process_dead(pid, directory)
        except PermissionError:  # alive, another user's
            pass


def mark_process_dead(pid: int, directory: str | None = None) -> None:
    """Drop the live-only gauges of a worker that exited (called by the master when it learns of the exit)."""
    directory = directory or os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, directory)
