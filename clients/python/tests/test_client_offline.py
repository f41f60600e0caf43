"""Client and AsyncClient with no server to talk to: nothing raises, nothing vanishes."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

import ingestd_client
from ingestd_client import AsyncClient, Client, ClientClosed, RetryPolicy, SendFailed
from ingestd_client.spool import Spool


@pytest.fixture
def dead_url() -> str:
    """A loopback port nobody listens on: connections are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Drops(list[tuple[dict[str, Any], str]]):
    def __call__(self, event: dict[str, Any], reason: str) -> None:
        self.append((event, reason))

    def codes(self) -> list[str]:
        return [r.split(":", 1)[0] for _, r in self]


FAST = RetryPolicy(max_attempts=2, backoff_base=0.01, backoff_cap=0.02)


def test_exported_members() -> None:
    exported = {
        name
        for name, value in vars(ingestd_client).items()
        if not name.startswith("_")
        and getattr(value, "__module__", "").startswith("ingestd_client")
    }
    exported |= {"DropCallback", "__version__"}  # an alias and a str: no __module__ of their own
    assert set(ingestd_client.__all__) == exported


def test_bad_settings_raise_at_construction() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        Client("http://127.0.0.1:1", batch_size=5000)
    with pytest.raises(ValueError, match="http"):
        Client("ftp://example.com")


def test_emit_never_raises(dead_url: str) -> None:
    drops = Drops()
    client = Client(dead_url, on_drop=drops, retry=FAST)
    client.emit({"source": "t", "data": {}})
    client.emit(42)  # type: ignore[arg-type]
    client.emit({"source": "t", "data": {"x": object()}})
    client.flush(timeout=5)
    client.close()
    client.emit({"source": "t", "data": {}})  # after close
    assert sorted(drops.codes()) == [
        "attempts_exhausted",
        "closed",
        "unserializable",
        "unserializable",
    ]
    assert client.stats.dropped == 4 and client.stats.sent == 0


def test_queue_full_reaches_on_drop(dead_url: str) -> None:
    drops = Drops()
    # batch_size above max_queue and a long linger: nothing leaves the queue meanwhile.
    client = Client(dead_url, on_drop=drops, max_queue=5, batch_size=10, linger=60, retry=FAST)
    for i in range(8):
        client.emit({"source": "t", "data": {"i": i}})
    assert drops.codes() == ["queue_full"] * 3
    assert [e["data"]["i"] for e, _ in drops] == [5, 6, 7]
    assert all(e["id"] for e, _ in drops)
    assert client.stats.queued == 5
    client.close(timeout=0)
    assert client.stats.dropped == 8


def test_flush_says_false_when_nothing_could_be_sent(dead_url: str) -> None:
    client = Client(dead_url, on_drop=Drops(), retry=RetryPolicy(max_attempts=1000))
    client.emit({"source": "t", "data": {}})
    assert client.flush(timeout=0.3) is False
    client.close(timeout=0.1)


def test_close_gives_unsent_events_to_on_drop(dead_url: str) -> None:
    drops = Drops()
    client = Client(dead_url, on_drop=drops, retry=RetryPolicy(max_attempts=1000))
    for i in range(3):
        client.emit({"source": "t", "data": {"i": i}})
    client.close(timeout=0.2)
    assert drops.codes() == ["closed"] * 3
    assert "ConnectionRefusedError" in drops[0][1]


def test_close_spools_what_it_cannot_send(dead_url: str, tmp_path: Path) -> None:
    drops = Drops()
    path = tmp_path / "spool.db"
    client = Client(dead_url, on_drop=drops, spool=path, retry=RetryPolicy(max_attempts=1000))
    for i in range(3):
        client.emit({"source": "t", "data": {"i": i}})
    client.close(timeout=0.2)
    assert not drops
    assert client.stats.spooled == 3
    spool = Spool(path)
    assert len(spool) == 3
    spool.close()


def test_send_raises_when_it_cannot_send(dead_url: str) -> None:
    with Client(dead_url, retry=FAST) as client, pytest.raises(SendFailed, match="Refused"):
        client.send({"source": "t", "data": {}})
    with pytest.raises(ClientClosed):
        client.send({"source": "t", "data": {}})


def test_async_client_created_outside_a_loop(dead_url: str) -> None:
    drops = Drops()
    client = AsyncClient(dead_url, on_drop=drops, retry=FAST)
    client.emit({"source": "t", "data": {}})  # no running loop: it waits in the queue
    assert client.stats.queued == 1


def test_async_client_reports_and_spools(dead_url: str, tmp_path: Path) -> None:
    # asyncio.run rather than an async test: the SDK's tests need nothing but pytest.
    async def scenario() -> None:
        drops = Drops()
        client = AsyncClient(dead_url, on_drop=drops, retry=FAST)
        client.emit({"source": "t", "data": {}})
        client.emit({"source": "t", "data": {"x": object()}})
        assert await client.flush(timeout=5) is True
        assert sorted(drops.codes()) == ["attempts_exhausted", "unserializable"]
        with pytest.raises(SendFailed):
            await client.send({"source": "t", "data": {}})
        await client.aclose()

        spooling = AsyncClient(
            dead_url, spool=tmp_path / "s.db", retry=RetryPolicy(max_attempts=1000)
        )
        spooling.emit({"source": "t", "data": {}})
        await spooling.aclose(timeout=0.2)
        assert spooling.stats.spooled == 1 and spooling.stats.dropped == 0

    asyncio.run(scenario())
