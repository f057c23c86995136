"""Traces: one trace from POST …/enhance through the workflow to every activity. Spans are made whenever a tracer
provider is installed (the OTLP exporter below, or a test's in-memory one); with none, they cost next to nothing."""

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor


def export_traces(otlp_endpoint: str | None, service_name: str) -> None:
    """Export this process's spans over OTLP/HTTP to the endpoint (e.g. http://collector:4318); None: off."""
    if not otlp_endpoint:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_endpoint.rstrip('/')}/v1/traces")))
    trace.set_tracer_provider(provider)


def temporal_interceptors() -> list[Interceptor]:
    """For Client.connect: traces workflow starts, and (a worker inherits it) workflows and activities."""
    return [TracingInterceptor()]


def instrument(app: FastAPI) -> None:
    """A server span per request; health checks and scrapes are left out."""
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,metrics")
