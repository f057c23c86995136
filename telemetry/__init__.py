"""Telemetry: traces (OpenTelemetry, exported over OTLP when configured), Prometheus metrics, structured logs."""
