"""The SSRF guard: refuse to connect to internal addresses, checked at connect time.

Every resolved address (and every IP literal) is checked right before a socket is made
for it: webhooks connect through http1.Http1Client._connect, which calls `refusal`;
SendGrid's aiohttp session gets `guarded_socket_factory` for its connector. Checking
there covers DNS names, literals and DNS rebinding alike, and no packet leaves for a
refused address. Through a proxy the guard judges the destination, not the proxy: its
name is resolved here and every address must pass before the proxy is asked (the proxy
resolves it again, so a rebinding in between is the proxy's to refuse); the proxy's own
address is connected to because the operator named it.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any

import yarl

from ingestd.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
REFUSED = "refused by the SSRF guard"


class AddressRefused(OSError):
    """The webhook's address is internal and not in INGESTD_WEBHOOK_ALLOW_NETS."""


def parse_nets(nets: Iterable[str]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(n, strict=False) for n in nets)
    except ValueError as exc:
        raise ConfigError(f"INGESTD_WEBHOOK_ALLOW_NETS: {exc}") from exc


def refusal(address: Address, allow: tuple[Network, ...]) -> str | None:
    """Why `address` may not be connected to, or None if it may."""
    if any(address.version == net.version and address in net for net in allow):
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return "an IPv4-mapped IPv6 address"
        for form, embedded in embedded_ipv4(address):
            # As for the IPv4-mapped form, allowing the IPv4 net does not allow this one.
            why = refusal(embedded, ())
            if why is not None:  # refused like the IPv4 address it carries
                return f"a {form} address carrying {embedded} ({why})"
    checks = (
        (address in METADATA, "a cloud metadata address"),
        (address.is_loopback, "loopback"),
        (address.is_unspecified, "unspecified"),
        (address.is_link_local, "link-local"),
        (address.is_multicast, "multicast"),
        (isinstance(address, ipaddress.IPv4Address) and address in CGNAT, "carrier-grade NAT"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "not globally routable"),
    )
    for hit, why in checks:
        if hit:
            return why
    return None


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 transition form carries: 6to4 (2002::/16), Teredo
    (2001::/32: server and client), NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48)
    and the deprecated IPv4-compatible ::a.b.c.d."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found += [("Teredo", server), ("Teredo", client)]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in NAT64):
        found.append(("NAT64", low32))
    elif int(address) >> 32 == 0 and int(address) > 0xFFFF:
        found.append(("IPv4-compatible", low32))
    return found


def literal_refusal(name: str, url: str, allow: tuple[Network, ...], what: str = "url") -> None:
    """Refuse at configuration time a URL whose host is an internal IP literal (a name is
    checked at connect time, each address it resolves to)."""
    host = yarl.URL(url).host or ""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return
    why = refusal(address, allow)
    if why is not None:
        where = "" if what == "url" else f"{what}: "
        raise ConfigError(f"destination {name!r}: {where}{REFUSED}: {address} is {why}")


SocketFactory = Callable[[Any], socket.socket]


def guarded_socket_factory(
    allow: tuple[Network, ...], connect_hook: Callable[[Address], None] | None = None
) -> SocketFactory:
    """A socket factory for aiohttp's TCPConnector that refuses internal addresses."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _canon, sockaddr = addr_info
        address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
        why = refusal(address, allow)
        if why is not None:
            raise AddressRefused(errno.EACCES, f"{REFUSED}: {address} is {why}")
        if connect_hook is not None:
            connect_hook(address)
        return _new_socket(family, type_, proto)

    return factory


def open_socket_factory(connect_hook: Callable[[Address], None] | None = None) -> SocketFactory:
    """For a session whose every connection goes to a proxy the operator named: no
    address is refused here (the destination was judged before the request)."""

    def factory(addr_info: Any) -> socket.socket:
        family, type_, proto, _canon, sockaddr = addr_info
        if connect_hook is not None:
            connect_hook(ipaddress.ip_address(sockaddr[0].split("%", 1)[0]))
        return _new_socket(family, type_, proto)

    return factory


def _new_socket(family: int, type_: int, proto: int) -> socket.socket:
    sock = socket.socket(family=family, type=type_, proto=proto)
    sock.setblocking(False)
    if family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
