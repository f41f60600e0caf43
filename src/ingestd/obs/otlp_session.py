"""The HTTP session the OTLP exporter sends spans with: the same egress as webhooks.

The exporter posts with `requests`, which on its own would read HTTPS_PROXY but not
INGESTD_OUTBOUND_PROXY, and trust certifi's CAs but not INGESTD_CA_BUNDLE. This session
takes its proxy from the same ProxyRules and verifies TLS with the same context (the
system's CAs and the bundle; requests adds certifi's, and OTEL_EXPORTER_OTLP_CERTIFICATE
when set). The collector is the operator's own endpoint: the SSRF guard does not apply.
"""

from __future__ import annotations

import os
import ssl
from typing import Any

import requests
import yarl
from requests.adapters import HTTPAdapter

from ingestd.config import Settings
from ingestd.destinations.http import tls_context
from ingestd.destinations.proxy import Proxy, proxy_rules

DEFAULT_ENDPOINT = "http://localhost:4318/v1/traces"


def traces_endpoint(environ: dict[str, str] | None = None) -> str:
    """Where the exporter sends spans, read as it reads the OTEL_* variables."""
    env = os.environ if environ is None else environ
    endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if endpoint:
        return endpoint
    base = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return base.rstrip("/") + "/v1/traces" if base else DEFAULT_ENDPOINT


class _Egress(HTTPAdapter):
    """Our TLS context on every pool; the proxy's credentials as Proxy-Authorization."""

    def __init__(self, context: ssl.SSLContext, proxy: Proxy | None) -> None:
        self._context = context
        self._proxy = proxy
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        kwargs["ssl_context"] = self._context
        return super().proxy_manager_for(proxy, **kwargs)

    def proxy_headers(self, proxy: str) -> dict[str, str]:
        if self._proxy is None or self._proxy.authorization is None:
            return {}
        return {"Proxy-Authorization": self._proxy.authorization}


def otlp_session(settings: Settings, endpoint: str) -> requests.Session:
    """A requests session for `endpoint` through the outbound proxy, if one applies."""
    url = yarl.URL(endpoint)
    tls = url.scheme == "https"
    rules = proxy_rules(settings.outbound_proxy, settings.outbound_no_proxy)
    proxy = rules.for_target(url.host or "", url.port or (443 if tls else 80), tls)
    session = requests.Session()
    session.trust_env = False  # the proxy is ProxyRules', read once like the webhooks'
    adapter = _Egress(tls_context(str(settings.ca_bundle) if settings.ca_bundle else None), proxy)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    if proxy is not None:
        session.proxies = {"http": proxy.url, "https": proxy.url}
    return session
