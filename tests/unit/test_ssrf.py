"""The SSRF guard refuses internal addresses before any connection is attempted.

No test here sends a packet anywhere: refused addresses never get a socket, and the one
allowed connection goes to a loopback receiver.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.http import HttpPool
from ingestd.destinations.ssrf import parse_nets, refusal
from ingestd.destinations.webhook import WebhookDestination
from ingestd.errors import ConfigError
from ingestd.model import Event, Job
from receivers import Receiver

NONE = parse_nets([])
LOOPBACK = parse_nets(["127.0.0.0/8"])


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "a cloud metadata address"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::ffff:10.0.0.1", "an IPv4-mapped IPv6 address"),
        ("fc00::1", "private"),
    ],
)
def test_internal_addresses_are_refused(address: str, why: str) -> None:
    assert refusal(ipaddress.ip_address(address), NONE) == why


def test_public_addresses_pass_and_allow_nets_open_exceptions() -> None:
    assert refusal(ipaddress.ip_address("93.184.216.34"), NONE) is None
    assert refusal(ipaddress.ip_address("2606:4700::1111"), NONE) is None
    assert refusal(ipaddress.ip_address("127.0.0.1"), LOOPBACK) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), LOOPBACK) == "private"
    # Allowing 127/8 does not allow its IPv4-mapped IPv6 form.
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), LOOPBACK) is not None


class MapsToPrivate(AbstractResolver):
    """A resolver that says every name is 10.0.0.1 (DNS pointing at the inside)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host, host="10.0.0.1", port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None


def job() -> Job:
    event = Event(id="e1", source="s", type="t", occurred_at="2026-01-01T00:00:00Z", data={})
    return Job(id=1, delivery_id="msg_1", destination="d", attempt=1, event=event)


def webhook(url: str, pool: HttpPool) -> WebhookDestination:
    settings = Settings(webhook_allow_nets=["127.0.0.0/8"])
    destination = WebhookDestination(DestinationConfig(name="d", kind="webhook", url=url), settings)
    destination._pool = pool
    return destination


async def test_a_name_resolving_inside_is_refused_before_connect() -> None:
    connects: list[Any] = []
    pool = HttpPool(LOOPBACK, resolver=MapsToPrivate(), connect_hook=connects.append)
    try:
        attempt = await webhook("http://hooks.example.test/in", pool).deliver(job())
    finally:
        await pool.close()
    assert not attempt.ok
    assert attempt.permanent
    assert "SSRF guard" in (attempt.error or "")
    assert "10.0.0.1" in (attempt.error or "")
    assert connects == []  # no socket was ever made for it


async def test_the_same_guard_lets_an_allowed_loopback_receiver_through() -> None:
    receiver = await Receiver().start()
    connects: list[Any] = []
    pool = HttpPool(LOOPBACK, connect_hook=connects.append)
    try:
        attempt = await webhook(receiver.url(), pool).deliver(job())
    finally:
        await pool.close()
        await receiver.stop()
    assert attempt.ok, attempt.error
    assert connects == [ipaddress.ip_address("127.0.0.1")]


def test_an_internal_ip_literal_is_refused_when_configured() -> None:
    settings = Settings(webhook_allow_nets=["127.0.0.0/8"])
    for url in ("http://10.0.0.1/x", "http://[::ffff:10.0.0.1]/x", "http://169.254.169.254/"):
        with pytest.raises(ConfigError, match="SSRF guard"):
            WebhookDestination(DestinationConfig(name="d", kind="webhook", url=url), settings)


# -- IPv6 transition forms carry an IPv4 address: refused like it (issue 14 item 12) ------

TRANSITION = [
    ("2002:7f00:1::", "6to4", "127.0.0.1"),
    ("2002:a00:1::1", "6to4", "10.0.0.1"),
    ("2002:a9fe:a9fe::", "6to4", "169.254.169.254"),
    # Teredo: server 65.54.227.120 (public), client obfuscated to 127.0.0.1
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo", "127.0.0.1"),
    ("2001:0:a00:1::", "Teredo", "10.0.0.1"),  # the server half
    ("64:ff9b::7f00:1", "NAT64", "127.0.0.1"),
    ("64:ff9b:1::a00:1", "NAT64", "10.0.0.1"),
    ("::7f00:1", "IPv4-compatible", "127.0.0.1"),
]


@pytest.mark.parametrize(("address", "form", "carried"), TRANSITION)
def test_transition_forms_are_refused_like_the_ipv4_they_carry(
    address: str, form: str, carried: str
) -> None:
    why = refusal(ipaddress.ip_address(address), NONE)
    assert why is not None and why.startswith(f"a {form} address carrying {carried}")
    # Allowing the IPv4 net does not allow its IPv6 disguise (as for ::ffff:a.b.c.d).
    assert refusal(ipaddress.ip_address(address), parse_nets(["127.0.0.0/8", "10.0.0.0/8"]))


def test_transition_forms_of_public_addresses_are_not_refused_for_what_they_carry() -> None:
    why = refusal(ipaddress.ip_address("2002:5db8:d822::1"), NONE)  # 6to4 of 93.184.216.34
    assert why is None or "carrying" not in why


@pytest.mark.parametrize(
    "url", ["http://[2002:7f00:1::]/", "http://[64:ff9b::a00:1]/x", "https://[2002:a00:1::]:8443/"]
)
def test_a_transition_literal_is_refused_when_configured(url: str) -> None:
    with pytest.raises(ConfigError, match="SSRF guard"):
        WebhookDestination(DestinationConfig(name="d", kind="webhook", url=url), Settings())


class MapsTo6to4Loopback(AbstractResolver):
    """DNS answering with only the 6to4 form of 127.0.0.1."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="2002:7f00:1::",
                port=port,
                family=socket.AF_INET6,
                proto=0,
                flags=0,
            )
        ]

    async def close(self) -> None:
        return None


async def test_a_name_resolving_to_a_transition_form_gets_no_socket() -> None:
    connects: list[Any] = []
    pool = HttpPool(LOOPBACK, resolver=MapsTo6to4Loopback(), connect_hook=connects.append)
    try:
        attempt = await webhook("http://hooks.example.test/in", pool).deliver(job())
    finally:
        await pool.close()
    assert not attempt.ok and attempt.permanent
    assert "6to4" in (attempt.error or "") and connects == []


@pytest.mark.parametrize(
    "base", ["http://127.0.0.1:9", "http://[2002:7f00:1::]/", "https://169.254.169.254"]
)
def test_sendgrid_base_url_literal_is_refused_when_configured(base: str) -> None:
    from ingestd.destinations.email import SendGridDestination

    config = DestinationConfig(
        name="mail", kind="sendgrid", api_key="SG.x", base_url=base,
        **{"from": "a@example.com", "to": "b@example.com", "subject": "s"},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="base_url: refused by the SSRF guard"):
        SendGridDestination(config, Settings())
