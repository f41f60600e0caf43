"""Which forward proxy, if any, an outbound HTTP(S) call goes through.

INGESTD_OUTBOUND_PROXY names one proxy for every scheme (`direct`: none, whatever the
environment says); without it the standard HTTPS_PROXY / HTTP_PROXY (or lower-case) apply
per scheme of the destination, as curl and requests read them. NO_PROXY (or
INGESTD_OUTBOUND_NO_PROXY, which wins) lists the hosts reached directly. A proxy is an
`http://[user:password@]host:port` URL: plain HTTP goes to it in absolute form, HTTPS is
tunnelled with CONNECT. The credentials become a `Proxy-Authorization` header and nothing
else: a Proxy prints as `http://host:port`, so no message, attempt or metric can carry them.
"""

from __future__ import annotations

import base64
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import yarl

from ingestd.errors import ConfigError

DIRECT = frozenset({"direct", "none"})
"""INGESTD_OUTBOUND_PROXY values that mean: no proxy, ignore HTTPS_PROXY and HTTP_PROXY."""


@dataclass(frozen=True)
class Proxy:
    """One forward proxy; str() and repr() never show its credentials."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)
    """The Proxy-Authorization header value, from the URL's user and password."""

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __str__(self) -> str:
        return self.url


def parse_proxy(value: str, source: str) -> Proxy:
    """A proxy URL from `source` (a variable's name, for the error); host:port alone is
    taken as http://, as curl does."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    try:
        url = yarl.URL(text)
        host, port = url.host, url.port
    except ValueError:
        host, port, url = None, None, yarl.URL()
    shown = masked_url(text)
    if url.scheme != "http":
        raise ConfigError(
            f"{source}: {shown!r} is not an http:// proxy (HTTPS destinations are tunnelled "
            "through an http:// proxy with CONNECT; SOCKS and TLS to the proxy are not "
            "supported; INGESTD_OUTBOUND_PROXY=direct ignores the environment's proxies)"
        )
    if not host or port is None or url.path not in ("", "/") or url.query_string:
        raise ConfigError(f"{source}: {shown!r} is not http://[user:password@]host:port")
    authorization = None
    if url.user is not None:
        pair = f"{url.user}:{url.password or ''}".encode()
        authorization = "Basic " + base64.b64encode(pair).decode()
    return Proxy(host.strip("[]").lower(), port, authorization)


def masked_url(text: str) -> str:
    """A URL as it may be shown: any user and password replaced by ***."""
    scheme, sep, rest = text.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rsplit("@", 1)[1]
    return scheme + sep + rest


@dataclass(frozen=True)
class Bypass:
    """NO_PROXY: hosts reached directly. Entries are `*`, domain names (`example.com`
    covers its subdomains; a leading `.` or `*.` is the same), IP addresses and CIDR
    ranges, each optionally with `:port`. Names are matched as written in the
    destination's URL, never resolved."""

    everything: bool = False
    names: tuple[tuple[str, int | None], ...] = ()
    networks: tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None], ...] = ()

    @classmethod
    def parse(cls, value: str) -> Bypass:
        names: list[tuple[str, int | None]] = []
        networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in value.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(everything=True)
            host, port = _split_port(entry)
            try:
                networks.append((ipaddress.ip_network(host, strict=False), port))
            except ValueError:
                names.append((host.removeprefix("*").strip("."), port))
        return cls(False, tuple(names), tuple(networks))

    def covers(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.strip("[]").rstrip(".").lower()
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(
                (host == name or host.endswith("." + name)) and want in (None, port)
                for name, want in self.names
                if name
            )
        return any(
            address.version == net.version and address in net and want in (None, port)
            for net, want in self.networks
        )


def _split_port(entry: str) -> tuple[str, int | None]:
    """`host:port`, `[v6]:port`, or a bare IPv6 address (whose colons are no port)."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port.isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


@dataclass(frozen=True)
class ProxyRules:
    """The proxy for each destination scheme, and the hosts that bypass both."""

    http: Proxy | None = None
    https: Proxy | None = None
    bypass: Bypass = Bypass()
    resolves: bool = False
    """A destination name ingestd cannot resolve goes to the proxy to resolve, unjudged
    (INGESTD_OUTBOUND_PROXY_RESOLVES); otherwise such a name fails before the proxy."""

    def __bool__(self) -> bool:
        return self.http is not None or self.https is not None

    def for_target(self, host: str, port: int, tls: bool) -> Proxy | None:
        """The proxy a request to host:port goes through, or None for a direct one."""
        proxy = self.https if tls else self.http
        if proxy is None or self.bypass.covers(host, port):
            return None
        return proxy

    def describe(self) -> str:
        """For the start-up log: proxies without credentials, and NO_PROXY."""
        parts = [f"{scheme} via {p}" for scheme, p in (("http", self.http), ("https", self.https))]
        shown = [part for part in parts if not part.endswith("None")]
        if self.bypass.everything:
            shown.append("NO_PROXY=*")
        elif self.bypass.names or self.bypass.networks:
            entries = [n for n, _ in self.bypass.names] + [str(n) for n, _ in self.bypass.networks]
            shown.append("direct to " + ", ".join(entries))
        return "; ".join(shown)


def _first(environ: Mapping[str, str], *names: str) -> tuple[str, str] | None:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None


def proxy_rules(
    explicit: str | None,
    no_proxy: str | None,
    environ: Mapping[str, str] | None = None,
    resolves: bool = False,
) -> ProxyRules:
    """The rules from INGESTD_OUTBOUND_PROXY / INGESTD_OUTBOUND_NO_PROXY (the arguments)
    and, where they are unset, the standard variables in `environ`."""
    env = os.environ if environ is None else environ
    if no_proxy is None:
        found = _first(env, "no_proxy", "NO_PROXY")
        no_proxy = found[1] if found else ""
    bypass = Bypass.parse(no_proxy)
    if explicit is not None and explicit.strip():
        if explicit.strip().lower() in DIRECT:
            return ProxyRules()
        proxy = parse_proxy(explicit, "INGESTD_OUTBOUND_PROXY")
        return ProxyRules(proxy, proxy, bypass, resolves)
    # Lower case first, as curl and requests read them.
    http = _first(env, "http_proxy", "HTTP_PROXY")
    https = _first(env, "https_proxy", "HTTPS_PROXY")
    return ProxyRules(
        parse_proxy(http[1], http[0]) if http else None,
        parse_proxy(https[1], https[0]) if https else None,
        bypass,
        resolves,
    )
