"""Webhooks signed per Standard Webhooks, posted with the lean client of http1.py.

2xx is success; 3xx is a failure (redirects are not followed); 410 disables the
destination; 429/503 honour Retry-After; the SSRF guard refuses internal addresses at
connect time (a permanent failure: dead at once with the reason, replayable once fixed);
a certificate that does not verify is retried (see certificate_error).
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from typing import Any

import msgspec
import yarl

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Attempt
from ingestd.destinations.cloudevents import structured_cloudevent
from ingestd.destinations.http import (
    USER_AGENT,
    acquire_pool,
    certificate_error,
    release_pool,
    retry_after,
)
from ingestd.destinations.http1 import Reply
from ingestd.destinations.options import timeout
from ingestd.destinations.proxy import Proxy
from ingestd.destinations.signing import Signer
from ingestd.destinations.ssrf import AddressRefused, literal_refusal, parse_nets
from ingestd.errors import ConfigError
from ingestd.model import Event, Job
from ingestd.obs import tracing

_encode = msgspec.json.encode


def payload(event: Event) -> bytes:
    """The webhook body: the event as stored."""
    return _encode(
        {
            "id": event.id,
            "type": event.type,
            "source": event.source,
            "occurred_at": event.occurred_at,
            "received_at": event.received_at,
            "actor_id": event.actor_id,
            "subject": event.subject,
            "data": event.data,
        }
    )


FORMATS: dict[str, tuple[Callable[[Event], bytes], str]] = {
    "envelope": (payload, "application/json"),
    "cloudevents": (structured_cloudevent, "application/cloudevents+json"),
}
"""The body a destination's `format` option selects, and its content type."""


def secrets_of(options: dict[str, Any]) -> list[str]:
    secrets = options.get("secrets", [])
    if isinstance(secrets, str):
        secrets = [secrets]
    if "secret" in options:
        secrets = [options["secret"], *secrets]
    if not isinstance(secrets, list) or not all(isinstance(s, str) for s in secrets):
        raise ConfigError("'secrets' is a list of 'whsec_...' strings")
    return secrets


def request_head(
    url: yarl.URL, headers: dict[str, str], content_type: str, proxy: Proxy | None = None
) -> bytes:
    """The constant start of every request to `url`: request line, host, fixed headers.
    Through a forward proxy (plain HTTP) the target is the absolute URL, without its
    user and password, and the proxy's credentials go in Proxy-Authorization."""
    host = url.raw_host or ""
    if ":" in host:
        host = f"[{host}]"
    if url.explicit_port is not None and not url.is_default_port():
        host = f"{host}:{url.explicit_port}"
    target = url.raw_path_qs or "/"
    if proxy is not None:
        target = f"{url.scheme}://{host}{target}"
    lines = [f"POST {target} HTTP/1.1", f"host: {host}"]
    if proxy is not None and proxy.authorization is not None:
        lines.append(f"proxy-authorization: {proxy.authorization}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    lines.append(f"content-type: {content_type}")
    return ("\r\n".join(lines) + "\r\n").encode()


class WebhookDestination:
    """POSTs each event to one URL."""

    runs_operator_code = False
    OPTIONS = frozenset(
        {"url", "secret", "secrets", "headers", "format", "timeout", "connect_timeout"}
    )

    def __init__(self, config: DestinationConfig, settings: Settings) -> None:
        options = config.options()
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"destination {config.name!r}: 'url' must be an http(s) URL")
        self.url = url
        target = yarl.URL(url)
        literal_refusal(config.name, url, parse_nets(settings.webhook_allow_nets))
        self._signer = Signer(secrets_of(options))
        extra = options.get("headers", {})
        if not isinstance(extra, dict):
            raise ConfigError(f"destination {config.name!r}: 'headers' is a table of strings")
        headers = {str(k).lower(): str(v) for k, v in extra.items()}
        headers.setdefault("user-agent", USER_AGENT)
        if target.user is not None:
            credentials = f"{target.user}:{target.password or ''}".encode()
            headers.setdefault("authorization", "Basic " + base64.b64encode(credentials).decode())
        for name, value in headers.items():
            if any(c in name + value for c in "\r\n\0") or not name.strip() or ":" in name:
                raise ConfigError(
                    f"destination {config.name!r}: header {name!r} has a line break, NUL "
                    "or colon where it cannot"
                )
        reserved = {"host", "content-length", "content-type", "transfer-encoding"}
        reserved |= {"webhook-id", "webhook-timestamp", "webhook-signature"}
        for name in reserved & headers.keys():
            raise ConfigError(f"destination {config.name!r}: header {name!r} is set by ingestd")
        body_format = options.get("format", "envelope")
        if body_format not in FORMATS:
            raise ConfigError(
                f"destination {config.name!r}: 'format' is one of {sorted(FORMATS)}, "
                f"not {body_format!r}"
            )
        self._payload, content_type = FORMATS[body_format]
        self._key = (target.raw_host or "", target.port or 80, target.scheme == "https")
        self._total = timeout(options, "timeout", settings.webhook_timeout, config.name)
        self._connect = timeout(
            options, "connect_timeout", settings.webhook_connect_timeout, config.name
        )
        self._pool = acquire_pool(settings)
        proxy = self._pool.client.proxy_for(self._key)
        self._forward = proxy if proxy is not None and target.scheme == "http" else None
        self._head = request_head(target, headers, content_type, self._forward)

    async def deliver(self, job: Job) -> Attempt:
        body = self._payload(job.event)
        timestamp = int(time.time())
        signature = "".join(
            f"{k}: {v}\r\n" for k, v in tracing.outgoing_headers(job.event.trace).items()
        )
        if self._signer:
            signed = self._signer.sign(job.delivery_id, timestamp, body)
            signature += f"webhook-signature: {signed}\r\n"
        tail = (
            f"webhook-id: {job.delivery_id}\r\nwebhook-timestamp: {timestamp}\r\n"
            f"{signature}content-length: {len(body)}\r\n\r\n"
        )
        request = b"".join((self._head, tail.encode(), body))
        try:
            reply = await self._pool.client.post(self._key, request, self._total, self._connect)
        except TimeoutError as exc:
            return Attempt(ok=False, error=str(exc) or f"timed out after {self._total:g}s")
        except AddressRefused as exc:
            return Attempt(ok=False, permanent=True, error=exc.strerror or str(exc))
        except ssl.SSLCertVerificationError as exc:
            return Attempt(ok=False, error=certificate_error(self._key[0], exc))
        except OSError as exc:
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
        if reply.status == 407 and self._forward is not None:  # the proxy's, not the receiver's
            error = f"proxy {self._forward} answered 407: it refused the credentials"
            return Attempt(ok=False, status_code=407, error=error)
        return judge(reply)

    async def close(self) -> None:
        await release_pool(self._pool)


def judge(reply: Reply) -> Attempt:
    """A receiver's answer as an attempt's outcome (its headers and body's start kept for
    the attempt log)."""
    status = reply.status
    seen = reply.headers, reply.body
    if 200 <= status < 300:
        return Attempt(ok=True, status_code=status, headers=seen[0], body=seen[1])
    text = reply.body[:200].decode("utf-8", "replace").strip()
    if status == 410:
        return Attempt(
            ok=False,
            status_code=status,
            disable=True,
            error="HTTP 410 Gone: the receiver asked to stop; destination disabled",
            headers=seen[0],
            body=seen[1],
        )
    if 300 <= status < 400:
        location = reply.headers.get("location", "?")
        error = f"HTTP {status}: redirects are not followed (location: {location})"
        return Attempt(ok=False, status_code=status, error=error, headers=seen[0], body=seen[1])
    wait = retry_after(reply.headers.get("retry-after")) if status in (429, 503) else None
    return Attempt(
        ok=False,
        status_code=status,
        retry_after=wait,
        error=f"HTTP {status}" + (f": {text}" if text else ""),
        headers=seen[0],
        body=seen[1],
    )
