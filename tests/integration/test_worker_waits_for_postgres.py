"""`ingestd worker` started while PostgreSQL is still starting waits for it (retrying with
backoff, logged) instead of exiting with status 2, and gives up after --store-wait.

The shared server is not restarted: a loopback stand-in answers every connection the way a
starting PostgreSQL does (FATAL 57P03 "the database system is starting up"), then, once
told, forwards connections to the real server, so the worker meets the real protocol both
times."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
import subprocess
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from ingestd.bench.process import ingestd_command
from support import free_port, wait_for

pytestmark = pytest.mark.postgres

SSL_REQUEST, GSS_REQUEST = 80877103, 80877104


def error_response(code: str, message: str) -> bytes:
    fields = {b"S": "FATAL", b"V": "FATAL", b"C": code, b"M": message}
    body = b"".join(k + v.encode() + b"\0" for k, v in fields.items()) + b"\0"
    return b"E" + struct.pack("!I", len(body) + 4) + body


class StartingPostgres:
    """Loopback stand-in: "starting up" until `ready` is set, then a TCP forwarder."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.ready = False
        self.refused = 0
        self.port = free_port()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> StartingPostgres:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self.ready:
                await self._forward(reader, writer)
                return
            while True:  # SSL/GSS requests are declined; the startup message is refused
                length = struct.unpack("!I", await reader.readexactly(4))[0]
                packet = await reader.readexactly(length - 4)
                if struct.unpack("!I", packet[:4])[0] in (SSL_REQUEST, GSS_REQUEST):
                    writer.write(b"N")
                    continue
                self.refused += 1
                writer.write(error_response("57P03", "the database system is starting up"))
                await writer.drain()
                return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await src.read(65536):
                    dst.write(chunk)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


def through(pg_url: str, port: int) -> str:
    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) > 1 else host))


def worker(url: str, log: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INGESTD_DATABASE_URL": url, "INGESTD_LOG_LEVEL": "info"}
    return subprocess.Popen(
        [*ingestd_command(), "worker", "--metrics-port", "0", *args],
        env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip


async def test_the_worker_waits_for_postgres_to_finish_starting(
    pg_url: str, tmp_path: Path
) -> None:
    upstream = urlsplit(pg_url)
    async with StartingPostgres((upstream.hostname or "127.0.0.1", upstream.port or 5432)) as pg:
        log = tmp_path / "worker.log"
        proc = worker(through(pg_url, pg.port), log)
        try:

            async def refused_twice() -> bool:
                return pg.refused >= 2

            async def running() -> bool:
                return " running" in log.read_text()

            await wait_for(refused_twice, timeout=20)
            assert proc.poll() is None, log.read_text()  # still waiting, not exited with 2
            pg.ready = True
            await wait_for(running, timeout=30)
            assert proc.poll() is None, log.read_text()
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
    text = log.read_text()
    assert "is not available yet" in text and "starting up" in text, text
    assert "the store is available after" in text, text
    assert proc.returncode == 0, text


async def test_the_worker_gives_up_after_store_wait(pg_url: str, tmp_path: Path) -> None:
    upstream = urlsplit(pg_url)
    async with StartingPostgres((upstream.hostname or "127.0.0.1", upstream.port or 5432)) as pg:
        log = tmp_path / "worker.log"
        proc = worker(through(pg_url, pg.port), log, "--store-wait", "1")
        code = await asyncio.to_thread(proc.wait, 30)
    text = log.read_text()
    assert code == 2, text
    assert "still unavailable after 1 s" in text, text
