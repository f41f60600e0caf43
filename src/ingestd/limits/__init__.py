"""Adapters for rate-limit buckets shared between processes (Redis)."""
