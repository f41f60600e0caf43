"""Email destinations: SendGrid's v3 Mail Send API over HTTP, and SMTP via aiosmtplib.

Both render `from`, `to`, `subject`, `text` (and optional `html`) from the event with
sandboxed templates. SendGrid: 2xx sent; 429/5xx retry (Retry-After honoured);
other 4xx dead at once with the reason; through the outbound proxy when one applies
(CONNECT for https), SendGrid's address judged by the SSRF guard first. SMTP: 4xx retry,
5xx dead at once, connection failures retry until the server is back; it connects
directly (it is not HTTP: no HTTP proxy carries it).
"""

from __future__ import annotations

import email.utils
from email.message import EmailMessage
from typing import Any

import aiohttp
import aiosmtplib
import jinja2
import msgspec
import yarl

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Attempt
from ingestd.destinations.http import (
    acquire_pool,
    certificate_error,
    release_pool,
    retry_after,
    snippet,
)
from ingestd.destinations.options import number, timeout
from ingestd.destinations.ssrf import AddressRefused, literal_refusal, parse_nets
from ingestd.destinations.templates import (
    RenderError,
    addresses,
    compile_template,
    context,
    render,
    render_header,
)
from ingestd.errors import ConfigError
from ingestd.model import Job

MESSAGE_OPTIONS = frozenset({"from", "to", "subject", "text", "html"})


def text_option(options: dict[str, Any], name: str, destination: str) -> str | None:
    value = options.get(name)
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"destination {destination!r}: {name!r} must be a string")
    return value


class Message(msgspec.Struct, frozen=True):
    sender: str
    to: list[str]
    subject: str
    text: str
    html: str | None


class Templates:
    """The compiled templates of one email destination."""

    def __init__(self, config: DestinationConfig) -> None:
        options = config.options()

        def required(key: str) -> str:
            value = options.get(key)
            if not isinstance(value, str) or not value:
                raise ConfigError(f"destination {config.name!r}: {key!r} is required")
            return value

        self.sender = compile_template(required("from"), field="from")
        self.to = compile_template(required("to"), field="to")
        self.subject = compile_template(required("subject"), field="subject")
        self.text = compile_template(options.get("text", ""), field="text")
        html = options.get("html")
        self.html: jinja2.Template | None = (
            compile_template(html, html=True, field="html") if html else None
        )

    def message(self, job: Job) -> Message:
        ctx = context(job.event)
        to = addresses(render_header(self.to, ctx, field="to"))
        if not to:
            raise RenderError("to: no recipient")
        return Message(
            sender=render_header(self.sender, ctx, field="from"),
            to=to,
            subject=render_header(self.subject, ctx, field="subject"),
            text=render(self.text, ctx, field="text"),
            html=render(self.html, ctx, field="html") if self.html else None,
        )


class SendGridDestination:
    """POST {base_url}/v3/mail/send with a bearer API key."""

    runs_operator_code = False
    OPTIONS = MESSAGE_OPTIONS | {"api_key", "base_url", "timeout", "connect_timeout"}

    def __init__(self, config: DestinationConfig, settings: Settings) -> None:
        options = config.options()
        key = options.get("api_key")
        if not isinstance(key, str) or not key:
            raise ConfigError(f"destination {config.name!r}: 'api_key' is required")
        base = str(options.get("base_url", "https://api.sendgrid.com")).rstrip("/")
        if not base.startswith(("http://", "https://")):
            raise ConfigError(f"destination {config.name!r}: 'base_url' must be http(s)")
        literal_refusal(config.name, base, parse_nets(settings.webhook_allow_nets), "base_url")
        self.url = f"{base}/v3/mail/send"
        target = yarl.URL(self.url)
        self._host = target.raw_host or ""
        self._port = target.port or 443
        self._templates = Templates(config)
        self._auth = f"Bearer {key}"
        self._timeout = aiohttp.ClientTimeout(
            total=timeout(options, "timeout", settings.webhook_timeout, config.name),
            sock_connect=timeout(
                options, "connect_timeout", settings.webhook_connect_timeout, config.name
            ),
        )
        self._pool = acquire_pool(settings)
        self._proxy = self._pool.client.proxy_for(
            (self._host, self._port, target.scheme == "https")
        )

    def body(self, job: Job, message: Message) -> dict[str, Any]:
        content = [{"type": "text/plain", "value": message.text}]
        if message.html is not None:
            content.append({"type": "text/html", "value": message.html})
        return {
            "personalizations": [{"to": [{"email": a} for a in message.to]}],
            "from": {"email": message.sender},
            "subject": message.subject,
            "content": content,
            "custom_args": {"ingestd_delivery_id": job.delivery_id},
        }

    async def deliver(self, job: Job) -> Attempt:
        try:
            message = self._templates.message(job)
        except RenderError as exc:
            return Attempt(ok=False, permanent=True, error=str(exc))
        via: dict[str, Any] = {}
        if self._proxy is not None:  # judge SendGrid's address before the proxy is asked
            try:
                await self._pool.client.check_destination(
                    self._host, self._port, self._timeout.sock_connect or 5.0
                )
            except AddressRefused as exc:
                return Attempt(ok=False, permanent=True, error=str(exc))
            except OSError as exc:  # TimeoutError included
                return Attempt(ok=False, error=f"SendGrid unreachable: {exc}")
            via["proxy"] = self._proxy.url
            if self._proxy.authorization is not None:
                via["proxy_headers"] = {"proxy-authorization": self._proxy.authorization}
        try:
            async with self._pool.session(proxied=bool(via)).post(
                self.url,
                data=msgspec.json.encode(self.body(job, message)),
                headers={"authorization": self._auth, "content-type": "application/json"},
                timeout=self._timeout,
                allow_redirects=False,
                **via,
            ) as response:
                status = response.status
                text = await snippet(response, 500)
                # Kept for the attempt log (which masks credentials).
                seen = {k.lower(): v for k, v in response.headers.items()}, text.encode()
                if 200 <= status < 300:
                    return Attempt(ok=True, status_code=status, headers=seen[0], body=seen[1])
                error = f"SendGrid HTTP {status}" + (f": {text}" if text else "")
                if status == 429 or status >= 500:
                    wait = retry_after(response.headers.get("retry-after"))
                    return Attempt(
                        ok=False,
                        status_code=status,
                        retry_after=wait,
                        error=error,
                        headers=seen[0],
                        body=seen[1],
                    )
                return Attempt(
                    ok=False,
                    status_code=status,
                    permanent=status != 408,
                    error=error,
                    headers=seen[0],
                    body=seen[1],
                )
        except TimeoutError:
            return Attempt(ok=False, error=f"SendGrid timed out after {self._timeout.total:g}s")
        except aiohttp.ClientConnectorCertificateError as exc:
            return Attempt(
                ok=False, error="SendGrid: " + certificate_error(self._host, exc.certificate_error)
            )
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):  # the SSRF guard: no retry mends it
                return Attempt(ok=False, permanent=True, error=str(exc.os_error))
            return Attempt(ok=False, error=f"SendGrid unreachable: {exc}")
        except aiohttp.ClientError as exc:
            return Attempt(ok=False, error=f"SendGrid unreachable: {exc}")

    async def close(self) -> None:
        await release_pool(self._pool)


class SmtpDestination:
    """Sends through an SMTP server."""

    runs_operator_code = False
    OPTIONS = MESSAGE_OPTIONS | {"host", "port", "tls", "username", "password", "timeout"}

    def __init__(self, config: DestinationConfig, settings: Settings) -> None:
        options = config.options()
        host = options.get("host")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"destination {config.name!r}: 'host' is required")
        tls = options.get("tls", "starttls")
        if tls not in ("none", "starttls", "tls"):
            raise ConfigError(f"destination {config.name!r}: tls is none, starttls or tls")
        self._templates = Templates(config)
        self._connection: dict[str, Any] = {
            "hostname": host,
            "port": int(
                number(
                    options,
                    "port",
                    465 if tls == "tls" else 587,
                    low=1,
                    high=65535,
                    integer=True,
                    destination=config.name,
                )
            ),
            "username": text_option(options, "username", config.name),
            "password": text_option(options, "password", config.name),
            "use_tls": tls == "tls",
            "start_tls": None if tls == "starttls" else False,
            "timeout": timeout(options, "timeout", settings.webhook_timeout, config.name),
        }

    def email(self, job: Job, message: Message) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = message.sender
        mail["To"] = ", ".join(message.to)
        mail["Subject"] = message.subject
        mail["Date"] = email.utils.formatdate(usegmt=True)
        mail["Message-ID"] = f"<{job.delivery_id}@ingestd>"
        mail.set_content(message.text)
        if message.html is not None:
            mail.add_alternative(message.html, subtype="html")
        return mail

    async def deliver(self, job: Job) -> Attempt:
        try:
            mail = self.email(job, self._templates.message(job))
        except (RenderError, ValueError) as exc:
            return Attempt(ok=False, permanent=True, error=str(exc))
        try:
            await aiosmtplib.send(mail, **self._connection)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [r.code for r in exc.recipients]
            detail = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in exc.recipients)
            return Attempt(
                ok=False,
                permanent=all(c >= 500 for c in codes),
                status_code=max(codes, default=None),
                error=f"SMTP recipients refused: {detail}",
            )
        except aiosmtplib.SMTPResponseException as exc:
            return Attempt(
                ok=False,
                permanent=exc.code >= 500,
                status_code=exc.code,
                error=f"SMTP {exc.code}: {exc.message}",
            )
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return Attempt(ok=False, error=f"SMTP server unreachable: {type(exc).__name__}: {exc}")
        return Attempt(ok=True, status_code=250)

    async def close(self) -> None:
        return None
