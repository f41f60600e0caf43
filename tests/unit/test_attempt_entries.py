"""Attempt-log entries: secrets cut out, credentials masked, bodies bounded, failures classed."""

from __future__ import annotations

import base64

from ingestd.worker import attempts


def test_option_secrets_finds_every_secret_of_a_destination() -> None:
    options = {
        "url": "https://bob:s3cr3t-pass@example.com/h?sig=tok-123456&x=y",
        "secrets": ["whsec_QUJDREVGR0g="],
        "headers": {"Authorization": "Bearer abcdefgh", "X-Trace": "keep-me"},
        "api_key": "SG.key-0001",
        "timeout": 5,
    }
    found = attempts.option_secrets(options)
    for secret in ("s3cr3t-pass", "tok-123456", "whsec_QUJDREVGR0g=", "QUJDREVGR0g="):
        assert secret in found
    assert "Bearer abcdefgh" in found and "SG.key-0001" in found
    assert base64.b64encode(b"bob:s3cr3t-pass").decode() in found
    assert "keep-me" not in found and "bob" not in found


def test_the_redactor_masks_texts_headers_and_bodies() -> None:
    r = attempts.Redactor(attempts.option_secrets({"secret": "hunter2-long"}))
    assert r.text("bad secret hunter2-long here") == "bad secret *** here"
    assert r.text(None) is None
    headers = r.headers({"set-cookie": "a=b", "x-api-key": "k", "etag": "hunter2-long"})
    assert headers == {"set-cookie": "***", "x-api-key": "***", "etag": "***"}
    assert r.headers({}) is None
    assert r.body(b"hunter2-long and more", 12) == b"***"  # cut to 12 bytes, then masked
    assert r.body(b"abc", 0) is None
    assert r.body(b"", 10) is None


def test_failures_are_classed() -> None:
    assert attempts.error_class(200, None, False) is None
    assert attempts.error_class(503, "HTTP 503", False) == "http"
    assert attempts.error_class(None, "timed out after 15s", False) == "timeout"
    assert attempts.error_class(None, "address 10.0.0.1 refused", True) == "refused"
    assert attempts.error_class(None, "ConnectionRefusedError: [Errno 111]", False) == "unreachable"
    assert attempts.error_class(None, "ValueError: boom", False) == "error"
    tls = "TLS certificate of hooks.example not accepted: unable to get local issuer certificate"
    assert attempts.error_class(None, tls, False) == "tls"
    proxy = "ProxyRefused: proxy http://egress:3128 answered CONNECT x:443 with 403 Forbidden"
    assert attempts.error_class(None, proxy, False) == "proxy"


def test_a_record_is_bounded() -> None:
    entry = attempts.record(
        attempt=1,
        started_at=1.0,
        duration=-0.5,  # a clock step: never negative
        verdict="retry",
        status_code=None,
        error="x" * 10_000,
        body=b"y" * 100,
        body_bytes=10,
    )
    assert entry.duration == 0.0
    assert entry.error is not None and len(entry.error) == attempts.ERROR_TEXT
    assert entry.response_body == b"y" * 10 and entry.error_class == "error"
