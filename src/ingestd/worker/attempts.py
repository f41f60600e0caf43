"""The attempt log's entries: what one delivery attempt did, made safe to keep.

The worker turns each attempt (its timing, the destination's `Attempt`, the verdict) into
an `AttemptRecord` that the store writes in the same transaction as the outcome. Nothing
secret is kept: headers that carry credentials are masked, the destination's own secrets
(signing secrets, passwords, API keys, URL credentials) are cut out of every text, and
only the first `INGESTD_ATTEMPT_BODY_BYTES` of a response body are kept.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ingestd.model import AttemptRecord

MASK = "***"
SECRET_HEADER = re.compile(r"cookie|auth|token|secret|key|password|session|signature", re.I)
"""Response headers whose value is never kept (set-cookie, www-authenticate, x-api-key …)."""
SECRET_OPTION = ("secret", "password", "api_key", "token", "key", "auth")
"""Option names (at any depth, e.g. `headers.authorization`) whose values are secrets."""
ERROR_TEXT = 2000
"""Characters of an error message kept."""
HEADERS_KEPT = 64


def option_secrets(options: Mapping[str, Any]) -> tuple[str, ...]:
    """Every secret-looking value of a destination's options (and its URL's credentials)."""
    found: list[str] = []

    def walk(key: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(str(k), v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(key, v)
        elif isinstance(value, str) and value and any(w in key.lower() for w in SECRET_OPTION):
            found.append(value)
            if value.startswith("whsec_"):
                found.append(value.removeprefix("whsec_"))

    for key, value in options.items():
        walk(str(key), value)
        if key == "url" and isinstance(value, str):
            parts = urlsplit(value)
            if parts.password:  # and as the Basic credentials a receiver may echo
                found.append(parts.password)
                pair = f"{unquote(parts.username or '')}:{unquote(parts.password)}"
                found.append(base64.b64encode(pair.encode()).decode())
            # Tokens in query strings (…?token=…): every value, and the whole query.
            found += [v for _, v in parse_qsl(parts.query)] + [parts.query]
    # Longest first, so a secret containing another is cut whole; short ones are noise.
    return tuple(sorted({s for s in found if len(s) >= 4}, key=len, reverse=True))


@functools.lru_cache(maxsize=4096)
def secret_header(name: str) -> bool:
    """Whether a response header's value is withheld (cached: names repeat, the regex is
    the costliest step of an entry)."""
    return SECRET_HEADER.search(name) is not None


class Redactor:
    """Cuts one destination's secrets out of what an attempt brought back."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = tuple(secrets)
        self._encoded = tuple(s.encode() for s in self._secrets)

    def text(self, value: str | None) -> str | None:
        if value is None:
            return None
        for secret in self._secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value[:ERROR_TEXT]

    def headers(self, headers: Mapping[str, str] | None) -> dict[str, str] | None:
        if not headers:
            return None
        kept: dict[str, str] = {}
        for name, value in list(headers.items())[:HEADERS_KEPT]:
            kept[name] = MASK if secret_header(name) else (self.text(value) or "")
        return kept

    def body(self, body: bytes | None, limit: int) -> bytes | None:
        if not body or limit <= 0:
            return None
        head = body[:limit]
        for encoded in self._encoded:
            if encoded in head:
                head = head.replace(encoded, MASK.encode())
        return head


def error_class(status_code: int | None, error: str | None, permanent: bool) -> str | None:
    """A coarse, stable class of a failure, for filtering: `http` (the receiver answered
    non-2xx; SMTP codes too), `timeout`, `refused` (permanent before any answer, e.g. an
    address the SSRF guard refuses), `tls` (the receiver's certificate did not verify),
    `proxy` (the outbound proxy could not be reached or refused the tunnel),
    `unreachable`, or `error` (anything else)."""
    if error is None and (status_code is None or status_code < 300):
        return None
    if status_code is not None:
        return "http"
    text = (error or "").lower()
    if "timed out" in text or "timeout" in text:
        return "timeout"
    if "tls certificate of" in text:  # http.certificate_error's wording
        return "tls"
    if text.startswith("proxyrefused"):  # tunnel.ProxyRefused, as webhook.py names it
        return "proxy"
    if permanent:
        return "refused"
    if "unreachable" in text or "connect" in text or "errno" in text:
        return "unreachable"
    return "error"


def record(
    *,
    attempt: int,
    started_at: float,
    duration: float,
    verdict: str,
    status_code: int | None,
    error: str | None,
    permanent: bool = False,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    body_bytes: int = 4096,
    redactor: Redactor | None = None,
) -> AttemptRecord:
    r = redactor or Redactor()
    return AttemptRecord(
        attempt=attempt,
        started_at=started_at,
        duration=max(0.0, duration),
        verdict=verdict,
        status_code=status_code,
        error_class=error_class(status_code, error, permanent),
        error=r.text(error),
        response_headers=r.headers(headers),
        response_body=r.body(body, body_bytes),
    )
