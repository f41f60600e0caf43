"""Observability: Prometheus metrics, logging setup."""
