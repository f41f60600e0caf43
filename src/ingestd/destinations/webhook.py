"""Webhooks signed per Standard Webhooks, posted with aiohttp.

2xx is success; 3xx is a failure (redirects are not followed); 410 disables the
destination; 429/503 honour Retry-After; the SSRF guard refuses internal addresses at
connect time (a permanent failure: dead at once with the reason, replayable once fixed).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import msgspec
import yarl

from ingestd.cloudevents import structured_cloudevent
from ingestd.config import DestinationConfig, Settings
from ingestd.delivery import Attempt
from ingestd.destinations.http import (
    USER_AGENT,
    acquire_pool,
    refused,
    release_pool,
    retry_after,
    snippet,
)
from ingestd.destinations.signing import Signer
from ingestd.destinations.ssrf import REFUSED, Network, parse_nets, refusal
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


def literal_refusal(name: str, url: str, allow: tuple[Network, ...]) -> None:
    """Refuse at configuration time a URL whose host is an internal IP literal."""
    host = yarl.URL(url).host or ""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return  # a name: checked at connect time
    why = refusal(address, allow)
    if why is not None:
        raise ConfigError(f"destination {name!r}: {REFUSED}: {address} is {why}")


class WebhookDestination:
    """POSTs each event to one URL."""

    def __init__(self, config: DestinationConfig, settings: Settings) -> None:
        options = config.options()
        url = options.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"destination {config.name!r}: 'url' must be an http(s) URL")
        self.url = url
        literal_refusal(config.name, url, parse_nets(settings.webhook_allow_nets))
        self._signer = Signer(secrets_of(options))
        extra = options.get("headers", {})
        if not isinstance(extra, dict):
            raise ConfigError(f"destination {config.name!r}: 'headers' is a table of strings")
        self._headers = {str(k).lower(): str(v) for k, v in extra.items()}
        self._headers.setdefault("user-agent", USER_AGENT)
        body_format = options.get("format", "envelope")
        if body_format not in FORMATS:
            raise ConfigError(
                f"destination {config.name!r}: 'format' is one of {sorted(FORMATS)}, "
                f"not {body_format!r}"
            )
        self._payload, self._content_type = FORMATS[body_format]
        self._timeout = aiohttp.ClientTimeout(
            total=float(options.get("timeout", settings.webhook_timeout)),
            sock_connect=float(options.get("connect_timeout", settings.webhook_connect_timeout)),
        )
        self._pool = acquire_pool(settings.webhook_allow_nets)

    async def deliver(self, job: Job) -> Attempt:
        body = self._payload(job.event)
        timestamp = int(time.time())
        headers = {
            **self._headers,
            "content-type": self._content_type,
            "webhook-id": job.delivery_id,
            "webhook-timestamp": str(timestamp),
            **tracing.outgoing_headers(job.event.trace),
        }
        if self._signer:
            headers["webhook-signature"] = self._signer.sign(job.delivery_id, timestamp, body)
        try:
            async with self._pool.session().post(
                self.url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as response:
                return await self._judge(response)
        except TimeoutError:
            return Attempt(ok=False, error=f"timed out after {self._timeout.total:g}s")
        except aiohttp.ClientError as exc:
            if refused(exc):
                return Attempt(ok=False, permanent=True, error=str(exc))
            return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")

    async def _judge(self, response: aiohttp.ClientResponse) -> Attempt:
        status = response.status
        if 200 <= status < 300:
            await response.content.read(65536)
            return Attempt(ok=True, status_code=status)
        text = await snippet(response)
        if status == 410:
            return Attempt(
                ok=False,
                status_code=status,
                disable=True,
                error="HTTP 410 Gone: the receiver asked to stop; destination disabled",
            )
        if 300 <= status < 400:
            location = response.headers.get("location", "?")
            error = f"HTTP {status}: redirects are not followed (location: {location})"
            return Attempt(ok=False, status_code=status, error=error)
        wait = retry_after(response.headers.get("retry-after")) if status in (429, 503) else None
        return Attempt(
            ok=False,
            status_code=status,
            retry_after=wait,
            error=f"HTTP {status}" + (f": {text}" if text else ""),
        )

    async def close(self) -> None:
        await release_pool(self._pool)
