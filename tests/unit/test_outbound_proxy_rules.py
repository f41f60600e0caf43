"""Which proxy an outbound call takes: INGESTD_OUTBOUND_PROXY, HTTPS_PROXY / HTTP_PROXY,
NO_PROXY; credentials never shown; the CA bundle checked at start."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import yarl

from ingestd.config import Settings, masked
from ingestd.destinations.http import tls_context
from ingestd.destinations.proxy import Bypass, parse_proxy, proxy_rules
from ingestd.destinations.webhook import request_head
from ingestd.errors import ConfigError
from tls_ca import TestCA


def test_the_explicit_proxy_serves_both_schemes_and_outranks_the_environment() -> None:
    env = {"HTTPS_PROXY": "http://env-proxy:1", "HTTP_PROXY": "http://env-proxy:2"}
    rules = proxy_rules("http://egress.internal:3128", None, env)
    for tls in (False, True):
        proxy = rules.for_target("hooks.example.com", 443, tls)
        assert proxy is not None
        assert (proxy.host, proxy.port) == ("egress.internal", 3128)


def test_the_environment_applies_per_destination_scheme_lower_case_first() -> None:
    rules = proxy_rules(None, None, {"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"})
    https = rules.for_target("example.com", 443, True)
    assert https is not None and https.host == "low"
    assert rules.for_target("example.com", 80, False) is None  # no HTTP_PROXY: direct
    rules = proxy_rules(None, None, {"HTTP_PROXY": "proxy.internal:8080"})  # scheme implied
    http = rules.for_target("example.com", 80, False)
    assert http is not None and (http.host, http.port) == ("proxy.internal", 8080)
    assert not proxy_rules(None, None, {})


def test_direct_ignores_the_environments_proxies() -> None:
    rules = proxy_rules("direct", None, {"HTTPS_PROXY": "http://env-proxy:1"})
    assert not rules
    assert rules.for_target("example.com", 443, True) is None


@pytest.mark.parametrize(
    ("entries", "host", "port", "bypassed"),
    [
        ("*", "anything.example", 443, True),
        ("example.com", "example.com", 443, True),
        ("example.com", "hooks.example.com", 443, True),
        (".example.com", "hooks.example.com", 443, True),
        ("*.example.com", "example.com", 443, True),
        ("example.com", "notexample.com", 443, False),
        ("EXAMPLE.com", "Hooks.Example.COM", 443, True),
        ("example.com:8443", "example.com", 8443, True),
        ("example.com:8443", "example.com", 443, False),
        ("10.0.0.0/8, 192.168.1.7", "10.1.2.3", 80, True),
        ("10.0.0.0/8, 192.168.1.7", "192.168.1.7", 80, True),
        ("10.0.0.0/8, 192.168.1.7", "192.168.1.8", 80, False),
        ("10.0.0.0/8", "ten.example", 80, False),  # names are never resolved
        ("::1, [fd00::1]:8080", "::1", 443, True),
        ("::1, [fd00::1]:8080", "fd00::1", 8080, True),
        ("::1, [fd00::1]:8080", "fd00::1", 443, False),
        ("", "example.com", 443, False),
    ],
)
def test_no_proxy_entries(entries: str, host: str, port: int, bypassed: bool) -> None:
    assert Bypass.parse(entries).covers(host, port) is bypassed


def test_the_ingestd_no_proxy_outranks_the_standard_one() -> None:
    env = {"NO_PROXY": "example.com", "HTTPS_PROXY": "http://p:1"}
    assert proxy_rules(None, None, env).for_target("example.com", 443, True) is None
    assert proxy_rules(None, "other.test", env).for_target("example.com", 443, True) is not None
    explicit = proxy_rules("http://p:1", None, {"no_proxy": "example.com"})
    assert explicit.for_target("example.com", 443, True) is None  # NO_PROXY binds it too


def test_credentials_become_a_header_and_are_shown_nowhere() -> None:
    proxy = parse_proxy("http://al%40ice:s3cr%3At@proxy.internal:3128", "INGESTD_OUTBOUND_PROXY")
    assert proxy.authorization == "Basic " + base64.b64encode(b"al@ice:s3cr:t").decode()
    rules = proxy_rules("http://alice:s3cret@proxy.internal:3128", "example.com", {})
    for shown in (str(proxy), repr(proxy), rules.describe(), repr(rules)):
        assert "s3cr" not in shown and "alice" not in shown and "ice" not in shown, shown
    assert str(proxy) == "http://proxy.internal:3128"
    settings = Settings(outbound_proxy="http://alice:s3cret@proxy.internal:3128")
    printed = masked(settings.model_dump(mode="json"))  # what `ingestd config` prints
    assert printed["outbound_proxy"] == "http://***@proxy.internal:3128"


@pytest.mark.parametrize(
    "url",
    [
        "socks5://alice:s3cret@proxy:1080",
        "https://alice:s3cret@proxy:443",
        "http://alice:s3cret@proxy:3128/path",
        "http://alice:s3cret@:3128",
    ],
)
def test_a_proxy_that_cannot_be_used_is_a_config_error_without_its_password(url: str) -> None:
    with pytest.raises(ConfigError, match="HTTPS_PROXY") as caught:
        proxy_rules(None, None, {"HTTPS_PROXY": url})
    assert "s3cret" not in str(caught.value)


def test_a_forwarded_plain_http_request_names_the_absolute_url_and_the_proxy_credentials() -> None:
    proxy = parse_proxy("http://alice:s3cret@proxy:3128", "INGESTD_OUTBOUND_PROXY")
    url = yarl.URL("http://user:pw@hooks.example.com:8080/in?x=1")
    head = request_head(url, {"user-agent": "t"}, "application/json", proxy).decode()
    lines = head.split("\r\n")
    assert lines[0] == "POST http://hooks.example.com:8080/in?x=1 HTTP/1.1"
    assert "host: hooks.example.com:8080" in lines
    assert f"proxy-authorization: {proxy.authorization}" in lines
    direct = request_head(url, {"user-agent": "t"}, "application/json").decode()
    assert direct.startswith("POST /in?x=1 HTTP/1.1\r\n")
    assert "proxy-authorization" not in direct


def test_the_ca_bundle_adds_the_operators_ca_and_a_bad_one_stops_the_start(
    tmp_path: Path,
) -> None:
    ca = TestCA(tmp_path)
    trusted = serials(tls_context(str(ca.pem)))
    assert ca.cert.serial_number in trusted
    assert serials(ssl.create_default_context()) <= trusted  # added to the system's
    with pytest.raises(ConfigError, match="INGESTD_CA_BUNDLE"):
        tls_context(str(tmp_path / "missing.pem"))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="INGESTD_CA_BUNDLE"):
        tls_context(str(tmp_path / "junk.pem"))


def test_ssl_cert_file_stands_for_the_system_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = TestCA(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.pem))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "none"))
    assert serials(tls_context(None)) == {ca.cert.serial_number}


def serials(context: ssl.SSLContext) -> set[int]:
    return {int(c["serialNumber"], 16) for c in context.get_ca_certs()}
