"""Telemetry of one batch: a single trace from the API's enhance request through the workflow to every activity
(read from an in-memory exporter), the product and Temporal SDK metrics on /metrics of the API and the worker,
and log records that carry the batch, job and user ids."""

import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from activities.batch import BatchActivities
from core.vocabulary import Activity
from storage.local import LocalStorage
from telemetry.logs import JsonFormatter
from telemetry.metrics import serve_worker_metrics
from telemetry.tracing import temporal_interceptors
from telemetry.worker import ProductMetricsInterceptor
from tests.conftest import eventually, temporal_address, temporal_api
from tests.db_helpers import batch_row
from tests.factories import make_album, make_image, make_images, make_user
from tests.reliability.processes import free_port
from worker import running_workers

FINISHED = ("COMPLETED", "FAILED", "CANCELLED")


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process makes from now on (the global provider can be set once per process)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None and span.parent.span_id in by_id:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


async def test_one_batch_traced_measured_and_logged(
    spans: InMemorySpanExporter,
    temporal_env: WorkflowEnvironment,
    primary_db_url: str,
    storage: LocalStorage,
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics_port = free_port()
    worker_metrics = serve_worker_metrics("127.0.0.1", metrics_port)
    client = await Client.connect(
        temporal_address(temporal_env.client),
        namespace=temporal_env.client.namespace,
        runtime=worker_metrics.runtime,
        interceptors=temporal_interceptors(),
    )
    before = {
        "completed": sample("album_enhance_images_total", tier="TIER_1K", outcome="COMPLETED"),
        "failed": sample("album_enhance_images_total", tier="TIER_1K", outcome="FAILED"),
        "seconds": sample("album_enhance_image_seconds_count", tier="TIER_1K"),
        "waits": sample("album_enhance_queue_wait_seconds_count"),
        "batches": sample("album_enhance_batch_seconds_count", status="COMPLETED"),
        "charged": sample("album_enhance_tokens_charged_total", tier="TIER_1K"),
        "refunded": sample("album_enhance_tokens_refunded_total"),
    }
    caplog.set_level(logging.INFO, logger="album_enhance.worker")
    with temporal_api(client, primary_db_url, storage) as h:
        activities = BatchActivities(h.engine, h.storage, h.settings.max_image_pixels, 0.2)
        interceptors = [ProductMetricsInterceptor(h.engine)]
        async with running_workers(client, h.settings, activities, interceptors):
            user = make_user(h.engine)
            album = make_album(h.engine, user)
            make_images(h.engine, h.storage, album, 2)
            make_image(h.engine, h.storage, album, b"not an image at all", sort_order=2)  # fails, refunded
            async with h.async_http() as http:
                response = await http.post(
                    f"/api/albums/{album}/enhance", headers=user.headers, json={"tier": "TIER_1K"}
                )
                assert response.status_code == 200, response.text
                batch_id = response.json()["batchId"]
                await eventually(lambda: batch_row(h.engine, batch_id).status in FINISHED, within=60)
                api_metrics = (await http.get("/metrics")).text

    # One trace: the API's server span is the ancestor of the workflow start, the workflow and every activity.
    finished = spans.get_finished_spans()
    by_id = {span.context.span_id: span for span in finished}
    [api_span] = [s for s in finished if s.kind == SpanKind.SERVER and s.name == "POST /api/albums/{albumId}/enhance"]
    in_trace = [s for s in finished if s.context.trace_id == api_span.context.trace_id]
    names = [s.name for s in in_trace]
    assert "StartWorkflow:BatchEnhanceWorkflow" in names and "RunWorkflow:BatchEnhanceWorkflow" in names
    runs = [s for s in in_trace if s.name.startswith("RunActivity:")]
    assert sum(s.name == f"RunActivity:{Activity.PROCESS_JOB}" for s in runs) == 3
    assert f"RunActivity:{Activity.CLOSE_JOB}" in names and f"RunActivity:{Activity.FINISH_BATCH}" in names
    for span in runs + [s for s in in_trace if s.name == "RunWorkflow:BatchEnhanceWorkflow"]:
        assert api_span in ancestors(span, by_id), f"{span.name} does not descend from the API span"

    # The product metrics moved by exactly this batch (the registry is the process's).
    assert sample("album_enhance_images_total", tier="TIER_1K", outcome="COMPLETED") - before["completed"] == 2
    assert sample("album_enhance_images_total", tier="TIER_1K", outcome="FAILED") - before["failed"] == 1
    assert sample("album_enhance_image_seconds_count", tier="TIER_1K") - before["seconds"] == 3
    assert sample("album_enhance_queue_wait_seconds_count") - before["waits"] == 3
    assert sample("album_enhance_batch_seconds_count", status="COMPLETED") - before["batches"] == 1
    assert sample("album_enhance_tokens_charged_total", tier="TIER_1K") - before["charged"] == 6
    assert sample("album_enhance_tokens_refunded_total") - before["refunded"] == 2
    for name in ("album_enhance_tokens_charged_total", "album_enhance_images_total"):
        assert name in api_metrics
    async with httpx.AsyncClient() as http:
        worker_metrics_text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    for name in (
        "album_enhance_images_total",
        "album_enhance_image_seconds",
        "album_enhance_queue_wait_seconds",
        "album_enhance_batch_seconds",
        "album_enhance_tokens_refunded_total",
        "temporal_activity_execution_latency",  # the Temporal SDK's own
        "temporal_workflow_task_schedule_to_start_latency",
    ):
        assert name in worker_metrics_text, name

    # Each image and the batch's start and end are logged with their ids.
    records = [r for r in caplog.records if r.name == "album_enhance.worker"]
    images = [r for r in records if r.getMessage().startswith("image ")]
    assert len(images) == 3 and all(r.batch_id == batch_id and r.user_id == user.id for r in images)  # type: ignore[attr-defined]
    assert any("finished COMPLETED" in r.getMessage() and r.batch_id == batch_id for r in records)  # type: ignore[attr-defined]
    assert any(r.getMessage() == f"batch {batch_id} started at TIER_1K" for r in records)


def test_json_logs_carry_ids_and_the_trace(spans: InMemorySpanExporter) -> None:
    record = logging.LogRecord("album_enhance.worker", logging.INFO, __file__, 1, "image %s done", ("j1",), None)
    record.batch_id, record.job_id, record.user_id = "b1", "j1", "u1"
    with trace.get_tracer(__name__).start_as_current_span("work") as span:
        line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "image j1 done" and line["level"] == "INFO"
    assert (line["batch_id"], line["job_id"], line["user_id"]) == ("b1", "j1", "u1")
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")
