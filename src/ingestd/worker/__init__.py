"""The worker: claim with a lease, deliver, decide, record."""

from ingestd.worker.engine import Gate, Worker
from ingestd.worker.retry import RetryPolicy

__all__ = ["Gate", "RetryPolicy", "Worker"]
