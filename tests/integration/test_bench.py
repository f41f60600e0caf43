"""`ingestd bench` as a user runs it, against a real `ingestd serve`: its counts must match what
the server stored."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import INGESTD, ServerProcess, free_port


async def bench(*args: str, timeout: float = 90.0) -> tuple[str, str]:
    proc = await asyncio.create_subprocess_exec(
        INGESTD,
        "bench",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode == 0, (
        f"bench failed ({proc.returncode}):\n{out.decode()}\n{err.decode()}"
    )
    return out.decode(), err.decode()


async def stored_ids(url: str, source: str) -> list[str]:
    """Every stored event of `source`, paging GET /events by cursor."""
    ids: list[str] = []
    cursor: str | None = None
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while True:
            params: dict[str, Any] = {"source": source, "limit": 1000}
            if cursor:
                params["cursor"] = cursor
            response = await client.get("/events", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            ids += [e["id"] for e in page["events"]]
            cursor = page["next_cursor"]
            if not cursor or not page["events"]:
                return ids


async def test_open_loop_with_duplicates_matches_the_store(
    server: ServerProcess, tmp_path: Path
) -> None:
    out = tmp_path / "open.json"
    png = tmp_path / "open.png"
    table, progress = await bench(
        "--url", server.url, "--rate", "400", "--duration", "2", "--duplicates", "0.1",
        "--source", "bench-open", "--json", str(out), "--plot", str(png),
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["mode"] == "open-loop"
    assert result["requests"] == 800  # 400/s for 2 s, every one answered
    assert result["errors"] == {}
    events = result["events"]
    assert events["sent"] == 800
    assert events["failed"] == events["rejected"] == 0
    assert 20 < events["resent"] < 160
    assert events["duplicate"] == events["resent"]  # every resent id answered "duplicate"
    assert result["statuses"] == {"200": events["duplicate"], "202": events["accepted"]}
    ids = await stored_ids(server.url, "bench-open")
    assert len(ids) == len(set(ids)) == events["accepted"] == 800 - events["resent"]
    assert all(i.startswith(result["run_id"]) for i in ids)
    lat = result["latency_us"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["p99_9"] <= lat["max"]
    assert result["service_time_us"]["count"] == 800
    assert sum(row["requests"] for row in result["timeline"]) == 800
    for word in ("throughput", "P50", "P95", "P99", "P99.9", "max", "202: "):
        assert word in table
    assert "[" in progress and "req/s" in progress  # the progress bar went to stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_closed_loop_batches_match_the_store(server: ServerProcess, tmp_path: Path) -> None:
    out = tmp_path / "batch.json"
    await bench(
        "--url", server.url, "--concurrency", "4", "--requests", "60", "--batch", "25",
        "--duplicates", "0.05", "--source", "bench-batch", "--json", str(out), "--quiet",
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["mode"] == "closed-loop"
    assert result["requests"] == 60
    assert result["statuses"] == {"207": 60}
    events = result["events"]
    assert events["sent"] == 60 * 25
    assert events["accepted"] + events["duplicate"] == events["sent"]
    ids = await stored_ids(server.url, "bench-batch")
    assert len(ids) == len(set(ids)) == events["accepted"]
    assert result["events_per_s"] == pytest.approx(result["throughput_rps"] * 25, rel=0.01)


async def test_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        INGESTD, "bench", "--url", f"http://127.0.0.1:{free_port()}", "--requests", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert b"cannot connect" in err


async def test_compare_async_then_sync_with_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "compare.json"
    table, _ = await bench(
        "--compare", "--e2e", "--rate", "100", "--duration", "1.5", "--e2e-wait", "20",
        "--json", str(out), "--quiet",
    )  # fmt: skip
    doc = json.loads(out.read_text())["compare"]
    assert set(doc) == {"async", "sync"}
    assert doc["async"]["statuses"] == {"202": 150}
    assert doc["sync"]["statuses"] == {"200": 150}
    for result in doc.values():
        e2e = result["e2e"]
        assert e2e["missing"] == 0
        assert e2e["delivered"] == result["events"]["accepted"] == 150
    # Synchronous mode answers after the delivery, so the receiver always had it first.
    assert doc["sync"]["e2e"]["delivered_before_answer"] == 150
    assert "async (before) vs sync (after)" in table
