"""HTTP for threads: one keep-alive `http.client` connection (asyncio: `aio_transport`).

Both transports turn every failure to get an answer into TransportError and every answer
into a Reply; what an answer means is decided in `policy`, not here.
"""

from __future__ import annotations

import http.client
import ssl
import threading
from urllib.parse import urlsplit

from ingestd_client._version import __version__
from ingestd_client.policy import Reply

USER_AGENT = f"ingestd-python/{__version__}"


class TransportError(Exception):
    """The request got no answer (connection refused or reset, timeout, TLS failure)."""


def base_headers(api_key: str | None) -> dict[str, str]:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


def describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Endpoint:
    """Where the server is: scheme, host, port and the path prefix of `url`."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.secure = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.secure else 80)
        self.prefix = parts.path.rstrip("/")


class SyncTransport:
    """One persistent HTTP/1.1 connection, reopened after any failure; thread-safe."""

    def __init__(self, endpoint: Endpoint, headers: dict[str, str], timeout: float) -> None:
        self._endpoint = endpoint
        self._headers = headers
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        ep = self._endpoint
        if ep.secure:
            return http.client.HTTPSConnection(
                ep.host, ep.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(ep.host, ep.port, timeout=timeout)

    def post(self, path: str, body: bytes, timeout: float | None = None) -> Reply:
        """POST body; the answer, or TransportError after at most `timeout` seconds."""
        timeout = self._timeout if timeout is None else max(0.05, min(timeout, self._timeout))
        with self._lock:
            # A kept-alive connection the server has since closed fails at once; one fresh
            # try is safe because every event carries its id.
            for fresh in (self._conn is None, True):
                try:
                    return self._exchange(path, body, timeout)
                except STALE as exc:
                    self._drop()
                    if fresh:
                        raise TransportError(describe(exc)) from exc
                except (OSError, http.client.HTTPException) as exc:
                    self._drop()
                    raise TransportError(describe(exc)) from exc
            raise AssertionError("unreachable")

    def _exchange(self, path: str, body: bytes, timeout: float) -> Reply:
        conn = self._conn or self._connect(timeout)
        self._conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        conn.request("POST", self._endpoint.prefix + path, body, self._headers)
        resp = conn.getresponse()
        data = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
        if resp.will_close:
            self._drop()
        return Reply(resp.status, headers, data)

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        with self._lock:
            self._drop()
