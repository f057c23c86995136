"""Prometheus metrics: the product's, each defined once here, and the Temporal SDK's, re-exposed from its buffer
so a worker has one /metrics for both."""

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
)

IMAGES = Counter("album_enhance_images", "Image attempts by tier and outcome", ["tier", "outcome"])
IMAGE_SECONDS = Histogram(
    "album_enhance_image_seconds",
    "Seconds one image attempt took on a worker (read the original, enhance, store the result)",
    ["tier"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
QUEUE_WAIT = Histogram(
    "album_enhance_queue_wait_seconds",
    "Seconds between an image being scheduled and a worker starting it",
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 15, 60, 300, 1800),
)
BATCH_SECONDS = Histogram(
    "album_enhance_batch_seconds",
    "Seconds from a batch's charge to its end, by final status",
    ["status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600),
)
TOKENS_CHARGED = Counter("album_enhance_tokens_charged", "Tokens charged for the batches this API started", ["tier"])
TOKENS_REFUNDED = Counter("album_enhance_tokens_refunded", "Tokens refunded for images that failed or were cancelled")

# Drained often enough (every scrape and every few seconds) that this never fills.
_BUFFER_SIZE = 100_000


@dataclass
class _Series:
    kind: int
    description: str
    values: dict[tuple[tuple[str, str], ...], float] = field(default_factory=dict)
    counts: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)


class TemporalSdkMetrics(Collector):
    """The Temporal SDK's metrics (workflow/activity task latencies, slots, polls, ...) from its metric buffer:
    counters summed, gauges last value, histograms as summaries (count and sum)."""

    def __init__(self, buffer: MetricBuffer) -> None:
        self.buffer = buffer
        self.lock = threading.Lock()
        self.series: dict[str, _Series] = {}

    def drain(self) -> None:
        with self.lock:
            for update in self.buffer.retrieve_updates():
                metric = update.metric
                series = self.series.setdefault(metric.name, _Series(metric.kind, metric.description or metric.name))
                labels = tuple(sorted((k, str(v)) for k, v in update.attributes.items()))
                if metric.kind == BUFFERED_METRIC_KIND_GAUGE:
                    series.values[labels] = float(update.value)
                else:
                    series.values[labels] = series.values.get(labels, 0.0) + float(update.value)
                    series.counts[labels] = series.counts.get(labels, 0) + 1

    def collect(self) -> Iterator[Metric]:
        self.drain()
        with self.lock:
            for name, series in sorted(self.series.items()):
                label_names = sorted({key for labels in series.values for key, _ in labels})
                family: Metric
                if series.kind == BUFFERED_METRIC_KIND_COUNTER:
                    family = CounterMetricFamily(name, series.description, labels=label_names)
                elif series.kind == BUFFERED_METRIC_KIND_GAUGE:
                    family = GaugeMetricFamily(name, series.description, labels=label_names)
                else:
                    family = SummaryMetricFamily(name, series.description, labels=label_names)
                for labels, value in series.values.items():
                    by_name = dict(labels)
                    values = [by_name.get(key, "") for key in label_names]
                    if isinstance(family, SummaryMetricFamily):
                        family.add_metric(values, count_value=series.counts[labels], sum_value=value)
                    else:
                        family.add_metric(values, value)
                yield family


@dataclass(frozen=True)
class WorkerMetrics:
    """The Temporal runtime whose metrics are collected, and the collector (to drain it periodically)."""

    runtime: Runtime
    collector: TemporalSdkMetrics


def serve_worker_metrics(host: str, port: int) -> WorkerMetrics:
    """Serve /metrics (the product's and the Temporal SDK's) on host:port; returns the runtime to connect with."""
    buffer = MetricBuffer(_BUFFER_SIZE, duration_format=MetricBufferDurationFormat.SECONDS)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    collector = TemporalSdkMetrics(buffer)
    REGISTRY.register(collector)
    start_http_server(port, addr=host)
    return WorkerMetrics(runtime, collector)
