"""The worker's port on a real socket: liveness follows the claim loop, readiness the store."""

from __future__ import annotations

from pathlib import Path

import httpx

from ingestd.api.worker_port import WorkerPort
from ingestd.errors import StoreUnavailable
from ingestd.store import store_from_url
from support import free_port


class DownStore:
    """A store whose every read fails as an unreachable database does."""

    async def ping(self) -> None:
        raise StoreUnavailable("connection refused")

    async def depth(self) -> None:
        raise StoreUnavailable("connection refused")


async def test_health_reports_a_dead_claim_loop_and_ready_the_store(tmp_path: Path) -> None:
    store = store_from_url(f"sqlite:///{tmp_path}/db")
    await store.open()
    reason: list[str] = []
    port = WorkerPort(store, lambda: reason[0] if reason else None, port=free_port())
    await port.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port.port}") as client:
            assert (await client.get("/health")).status_code == 200
            assert (await client.get("/ready")).json() == {"status": "ready"}
            metrics = await client.get("/metrics")
            assert metrics.headers["content-type"].startswith("text/plain")
            assert "ingestd_deliveries_waiting" in metrics.text
            reason.append("the claim loop ended: RuntimeError('boom')")
            dead = await client.get("/health")
            assert dead.status_code == 503
            assert dead.headers["content-type"] == "application/problem+json"
            assert "RuntimeError('boom')" in dead.json()["detail"]
            assert (await client.get("/nothing")).status_code == 404
    finally:
        await port.stop()
        await store.close()


async def test_ready_and_metrics_when_the_store_is_down() -> None:
    port = WorkerPort(DownStore(), lambda: None, port=free_port())  # type: ignore[arg-type]
    await port.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port.port}") as client:
            ready = await client.get("/ready")
            assert ready.status_code == 503 and ready.headers["retry-after"] == "1"
            assert "connection refused" in ready.json()["detail"]
            assert (await client.get("/health")).status_code == 200
            # Metrics still answer (the process's own series), the failure counted.
            text = (await client.get("/metrics")).text
            assert 'ingestd_store_errors_total{operation="scrape"}' in text
    finally:
        await port.stop()
