"""Observability: Prometheus metrics, W3C/OpenTelemetry tracing, log format and setup."""
