"""Webhooks and SendGrid through a real forward proxy (tinyproxy on 127.0.0.3) to loopback
receivers on 127.0.0.1, over HTTP and HTTPS (CONNECT) with a test CA made here.

Only 127.0.0.1/32 is allowed to the SSRF guard: the proxy's own address is reachable
because it is named as the proxy, and 127.0.0.2 stands for an internal destination.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook

from ingestd.config import DestinationConfig, Settings
from ingestd.destinations.base import Attempt
from ingestd.destinations.email import SendGridDestination
from ingestd.destinations.http import HttpPool
from ingestd.destinations.proxy import proxy_rules
from ingestd.destinations.ssrf import parse_nets
from ingestd.destinations.webhook import WebhookDestination
from ingestd.errors import ConfigError
from ingestd.model import Event, Job
from ingestd.obs import otel
from proxies import Tinyproxy
from receivers import Receiver, start_ingestd
from support import wait_for
from tls_ca import TestCA

SECRET = "whsec_" + base64.b64encode(b"p" * 32).decode()
ALLOW = ["127.0.0.1/32"]
PASSWORD = "pr0xy-s3cret"


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Tinyproxy]:
    p = Tinyproxy(tmp_path, user="ingestd", password=PASSWORD).start()
    yield p
    p.stop()


@pytest.fixture
def ca(tmp_path: Path) -> TestCA:
    return TestCA(tmp_path / "ca")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def tls_receiver(ca: TestCA) -> AsyncIterator[Receiver]:
    r = await Receiver(tls=ca.server_context("127.0.0.1", "localhost")).start()
    yield r
    await r.stop()


def job(n: int = 1) -> Job:
    event = Event(
        id=f"evt_{n}", source="s", type="t", occurred_at="2026-01-01T00:00:00Z", data={"n": n}
    )
    return Job(id=n, delivery_id=f"msg_{n}", destination="d", attempt=1, event=event)


def settings(proxy: Tinyproxy, ca: TestCA | None = None, **more: Any) -> Settings:
    return Settings(
        webhook_allow_nets=ALLOW,
        outbound_proxy=proxy.url(),
        ca_bundle=ca.pem if ca else None,
        **more,
    )


def webhook(url: str, s: Settings) -> WebhookDestination:
    config = DestinationConfig(name="d", kind="webhook", url=url, secrets=[SECRET])
    return WebhookDestination(config, s)


async def deliver_resolving(url: str, s: Settings, resolver: AbstractResolver) -> Attempt:
    """One delivery whose pool resolves names with `resolver` (a stand-in for DNS)."""
    rules = proxy_rules(s.outbound_proxy, "", resolves=s.outbound_proxy_resolves)
    pool = HttpPool(parse_nets(ALLOW), resolver=resolver, proxies=rules)
    destination = webhook(url, s)
    await destination.close()  # its own pool: the test's takes its place
    destination._pool = pool
    try:
        return await destination.deliver(job())
    finally:
        await pool.close()


def verified(r: Receiver) -> list[dict[str, Any]]:
    return [Webhook(SECRET).verify(got.body, got.headers) for got in r.received()]


async def test_plain_http_goes_to_the_proxy_in_absolute_form(
    proxy: Tinyproxy, receiver: Receiver
) -> None:
    destination = webhook(receiver.url("/hook?x=1"), settings(proxy))
    try:
        attempts = [await destination.deliver(job(n)) for n in (1, 2)]
    finally:
        await destination.close()
    assert all(a.ok for a in attempts), attempts
    assert [v["id"] for v in verified(receiver)] == ["evt_1", "evt_2"]
    target = f"http://127.0.0.1:{receiver.port}/hook?x=1"
    assert proxy.requests() == [("POST", target), ("POST", target)]


async def test_https_is_tunnelled_with_connect_and_the_tunnel_is_kept(
    proxy: Tinyproxy, tls_receiver: Receiver, ca: TestCA
) -> None:
    destination = webhook(tls_receiver.url(), settings(proxy, ca))
    try:
        attempts = [await destination.deliver(job(n)) for n in (1, 2, 3)]
    finally:
        await destination.close()
    assert all(a.ok for a in attempts), attempts
    assert [v["data"] for v in verified(tls_receiver)] == [{"n": 1}, {"n": 2}, {"n": 3}]
    # One CONNECT: the three POSTs went over one kept-alive TLS connection in the tunnel.
    assert proxy.requests() == [("CONNECT", f"127.0.0.1:{tls_receiver.port}")]


async def test_wrong_proxy_credentials_are_a_clear_error_that_does_not_show_them(
    tmp_path: Path, proxy: Tinyproxy, tls_receiver: Receiver, receiver: Receiver, ca: TestCA
) -> None:
    wrong = f"http://ingestd:not-{PASSWORD}@{proxy.host}:{proxy.port}"
    s = Settings(webhook_allow_nets=ALLOW, outbound_proxy=wrong, ca_bundle=ca.pem)
    tunnelled, forwarded = webhook(tls_receiver.url(), s), webhook(receiver.url(), s)
    try:
        over_tls, plain = await tunnelled.deliver(job()), await forwarded.deliver(job(2))
    finally:
        await tunnelled.close()
        await forwarded.close()
    assert not over_tls.ok and not over_tls.permanent
    assert "refused the credentials" in (over_tls.error or ""), over_tls.error
    assert not plain.ok and plain.status_code == 401  # tinyproxy's answer to wrong ones
    for attempt in (over_tls, plain):
        assert PASSWORD not in (attempt.error or "")
    assert tls_receiver.received() == [] and receiver.received() == []


async def test_a_proxy_asking_for_credentials_is_named_not_taken_for_the_receiver(
    proxy: Tinyproxy, receiver: Receiver
) -> None:
    s = Settings(webhook_allow_nets=ALLOW, outbound_proxy=proxy.url(credentials=False))
    destination = webhook(receiver.url(), s)
    try:
        attempt = await destination.deliver(job())
    finally:
        await destination.close()
    assert not attempt.ok and attempt.status_code == 407
    assert (
        attempt.error
        == f"proxy {proxy.url(credentials=False)} answered 407: it refused the credentials"
    )
    assert receiver.received() == []


async def test_a_refused_destination_is_refused_before_the_proxy_is_asked(
    proxy: Tinyproxy,
) -> None:
    inside = await Receiver(host="127.0.0.2").start()  # an "internal" service
    # A literal is refused when the destination is configured...
    with pytest.raises(ConfigError, match="SSRF guard"):
        webhook(inside.url(), settings(proxy))
    # ... and so is the proxy's own address: it is allowed as the proxy, not as a target.
    with pytest.raises(ConfigError, match="SSRF guard"):
        webhook(f"http://{proxy.host}:{proxy.port}/", settings(proxy))
    # A name is resolved and judged here; the proxy would resolve it again.
    for url in ("https://hooks.example.test/in", "http://hooks.example.test/in"):
        attempt = await deliver_resolving(url, settings(proxy), MapsTo("127.0.0.2"))
        assert not attempt.ok and attempt.permanent, attempt
        assert "SSRF guard" in (attempt.error or "") and "127.0.0.2" in (attempt.error or "")
    await inside.stop()
    assert inside.received() == []
    assert proxy.connections() == 0 and proxy.requests() == []


@pytest.mark.parametrize("resolves", [False, True])
async def test_a_name_only_the_proxy_resolves_goes_to_it_only_when_allowed(
    proxy: Tinyproxy, receiver: Receiver, resolves: bool
) -> None:
    url = f"http://localhost:{receiver.port}/hook"  # tinyproxy finds it in /etc/hosts
    s = settings(proxy, outbound_proxy_resolves=resolves)
    attempt = await deliver_resolving(url, s, NoDns())
    if resolves:
        assert attempt.ok, attempt.error
        assert proxy.requests() == [("POST", url)]
        assert len(verified(receiver)) == 1
    else:
        assert not attempt.ok and not attempt.permanent
        assert "localhost does not resolve here" in (attempt.error or "")
        assert "INGESTD_OUTBOUND_PROXY_RESOLVES" in (attempt.error or "")
        assert proxy.connections() == 0


async def test_no_proxy_bypasses_it(proxy: Tinyproxy, receiver: Receiver) -> None:
    destination = webhook(receiver.url(), settings(proxy, outbound_no_proxy="127.0.0.1"))
    try:
        attempt = await destination.deliver(job())
    finally:
        await destination.close()
    assert attempt.ok, attempt.error
    assert len(receiver.received()) == 1
    assert proxy.connections() == 0


async def test_a_proxy_that_is_down_is_named_in_the_error(
    tmp_path: Path, receiver: Receiver, tls_receiver: Receiver
) -> None:
    down = Tinyproxy(tmp_path, user="ingestd", password=PASSWORD)  # never started
    for url in (receiver.url(), tls_receiver.url()):
        destination = webhook(url, settings(down))
        try:
            attempt = await destination.deliver(job())
        finally:
            await destination.close()
        assert not attempt.ok and not attempt.permanent
        assert f"proxy http://{down.host}:{down.port} unreachable" in (attempt.error or "")
        assert PASSWORD not in (attempt.error or "")


async def test_a_certificate_the_ca_bundle_does_not_cover_fails_once_per_attempt(
    tmp_path: Path, proxy: Tinyproxy, tls_receiver: Receiver
) -> None:
    other = TestCA(tmp_path / "other", name="some other CA")
    destination = webhook(tls_receiver.url(), settings(proxy, other))
    try:
        attempts = [await destination.deliver(job(n)) for n in (1, 2)]
    finally:
        await destination.close()
    for attempt in attempts:
        assert not attempt.ok
        assert not attempt.permanent  # retried on the schedule: see certificate_error
        assert "TLS certificate of 127.0.0.1 not accepted" in (attempt.error or "")
        assert "INGESTD_CA_BUNDLE" in (attempt.error or "")
    assert tls_receiver.received() == []
    # One tunnel per attempt: the client does not try again by itself.
    assert proxy.requests() == [("CONNECT", f"127.0.0.1:{tls_receiver.port}")] * 2


async def test_sendgrid_goes_through_the_proxy_with_connect(
    proxy: Tinyproxy, tls_receiver: Receiver, ca: TestCA
) -> None:
    tls_receiver.behave("/v3/mail/send", status=202)
    config = DestinationConfig(
        name="mail",
        kind="sendgrid",
        api_key="SG.key",
        base_url=f"https://127.0.0.1:{tls_receiver.port}",
        **{"from": "ops@example.com"},
        to="{{ data.to }}",
        subject="hi",
        text="hello",
    )
    destination = SendGridDestination(config, settings(proxy, ca))
    event = Event(
        id="e", source="s", type="t", occurred_at="2026-01-01T00:00:00Z", data={"to": "a@b.c"}
    )
    try:
        attempt = await destination.deliver(
            Job(id=1, delivery_id="msg_1", destination="mail", attempt=1, event=event)
        )
    finally:
        await destination.close()
    assert attempt.ok, attempt.error
    (got,) = tls_receiver.received("/v3/mail/send")
    assert got.headers["Authorization"] == "Bearer SG.key"
    assert b"a@b.c" in got.body
    assert proxy.requests() == [("CONNECT", f"127.0.0.1:{tls_receiver.port}")]


async def test_sendgrid_at_a_refused_address_is_refused_before_the_proxy(
    proxy: Tinyproxy,
) -> None:
    """A name resolving inside (a literal is refused when configured, see test_ssrf)."""
    config = DestinationConfig(
        name="mail",
        kind="sendgrid",
        api_key="SG.key",
        base_url="https://api.sendgrid.test",
        **{"from": "ops@example.com"},
        to="a@b.c",
        subject="hi",
    )
    destination = SendGridDestination(config, settings(proxy))
    await destination.close()  # its own pool: the test's takes its place
    pool = HttpPool(
        parse_nets(ALLOW), resolver=MapsTo("127.0.0.2"), proxies=proxy_rules(proxy.url(), "")
    )
    destination._pool = pool
    try:
        attempt = await destination.deliver(job())
    finally:
        await pool.close()
    assert not attempt.ok and attempt.permanent, attempt
    assert "SSRF guard" in (attempt.error or "") and "127.0.0.2" in (attempt.error or "")
    assert proxy.connections() == 0


async def test_a_server_delivers_through_the_proxy_and_records_a_certificate_error(
    tmp_path: Path, proxy: Tinyproxy, tls_receiver: Receiver
) -> None:
    """The whole thing as an operator runs it: environment variables, a real process."""
    ca = TestCA(tmp_path / "operator")
    good = await Receiver(tls=ca.server_context("127.0.0.1")).start()
    server = await start_ingestd(
        tmp_path,
        f"""
[[destinations]]
name = "hooks"
kind = "webhook"
url = "{good.url()}"
secrets = ["{SECRET}"]
event_types = ["good.*"]

[[destinations]]
name = "untrusted"
kind = "webhook"
url = "{tls_receiver.url()}"
secrets = ["{SECRET}"]
event_types = ["bad.*"]
retry_schedule = [0, 3600]
""",
        INGESTD_WEBHOOK_ALLOW_NETS='["127.0.0.1/32"]',
        HTTPS_PROXY=proxy.url(),
        INGESTD_CA_BUNDLE=str(ca.pem),
        INGESTD_LOG_LEVEL="info",
    )
    try:
        async with httpx.AsyncClient(base_url=server.url) as client:
            good_ids = [
                (await client.post("/ingest", json={"source": "s", "type": "good.t"})).json()["id"]
                for _ in range(3)
            ]
            bad_ids = [
                (await client.post("/ingest", json={"source": "s", "type": "bad.t"})).json()["id"]
                for _ in range(3)
            ]
            await wait_for(lambda: _arrived(good, 3))
            assert sorted(v["id"] for v in verified(good)) == sorted(good_ids)

            async def recorded() -> list[dict[str, Any]]:
                states = [
                    (await client.get(f"/ingest/{i}/status")).json()["destinations"][0]
                    for i in bad_ids
                ]
                return states if all(s["last_error"] for s in states) else []

            for state in await wait_for(recorded):
                assert state["state"] != "dead" and state["attempts"] == 1  # retried later
                assert "TLS certificate of 127.0.0.1 not accepted" in state["last_error"]
                (logged,) = state["attempt_log"]  # one attempt so far, on the attempt log
                assert logged["error_class"] == "tls" and logged["status_code"] is None
                assert logged["error"] == state["last_error"]
            await asyncio.sleep(0.5)
            metrics = (await client.get("/metrics")).text
        connects = [r for r in proxy.requests() if r[0] == "CONNECT"]
        # No storm: one tunnel per attempt (3 for the bad receiver), one kept for the good.
        bad = [r for r in connects if r[1] == f"127.0.0.1:{tls_receiver.port}"]
        assert len(bad) == 3
        assert ("CONNECT", f"127.0.0.1:{good.port}") in connects
        assert tls_receiver.received() == []
        assert PASSWORD not in server.logs() and PASSWORD not in metrics
        assert f"via http://{proxy.host}:{proxy.port}" in server.logs()
    finally:
        await server.stop()
        await good.stop()


async def test_spans_go_to_the_otlp_collector_through_the_proxy_with_the_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, proxy: Tinyproxy, tls_receiver: Receiver, ca: TestCA
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tls_receiver.url("/v1/traces"))
    provider = otel.provider_with(settings=settings(proxy, ca))

    def export() -> bool:
        with provider.get_tracer("test").start_as_current_span("through the proxy"):
            pass
        flushed = provider.force_flush(10_000)
        provider.shutdown()
        return flushed

    assert await asyncio.to_thread(export)
    (got,) = tls_receiver.received("/v1/traces")
    assert got.headers["Content-Type"] == "application/x-protobuf"
    assert b"through the proxy" in got.body
    assert proxy.requests() == [("CONNECT", f"127.0.0.1:{tls_receiver.port}")]


async def _arrived(r: Receiver, n: int) -> bool:
    return len(r.received()) >= n


class NoDns(AbstractResolver):
    """A resolver for a network where only the proxy has DNS for the outside."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def close(self) -> None:
        return None


class MapsTo(AbstractResolver):
    """A resolver that says every name is one address (DNS pointing at the inside)."""

    def __init__(self, address: str) -> None:
        self.address = address

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        ipaddress.ip_address(self.address)
        return [
            ResolveResult(
                hostname=host, host=self.address, port=port, family=socket.AF_INET, proto=0, flags=0
            )
        ]

    async def close(self) -> None:
        return None
