"""Standard Webhooks signatures, checked with the `standardwebhooks` package."""

from __future__ import annotations

import base64

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from ingestd.destinations.signing import Signer
from ingestd.errors import ConfigError

OLD = "whsec_" + base64.b64encode(b"o" * 32).decode()
NEW = "whsec_" + base64.b64encode(b"n" * 24).decode()
OTHER = "whsec_" + base64.b64encode(b"x" * 32).decode()


def headers(signature: str, msg_id: str, ts: int) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": signature}


def test_one_signature_per_secret_each_verifies() -> None:
    import time

    ts = int(time.time())
    body = b'{"type":"page.viewed","data":{"a":1}}'
    signature = Signer([OLD, NEW]).sign("msg_1", ts, body)
    assert [s.split(",")[0] for s in signature.split(" ")] == ["v1", "v1"]
    for secret in (OLD, NEW):
        assert Webhook(secret).verify(body, headers(signature, "msg_1", ts)) == {
            "type": "page.viewed",
            "data": {"a": 1},
        }
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER).verify(body, headers(signature, "msg_1", ts))


def test_signature_covers_id_timestamp_and_body() -> None:
    signer = Signer([OLD])
    assert signer.sign("msg_1", 1, b"{}") != signer.sign("msg_2", 1, b"{}")
    assert signer.sign("msg_1", 1, b"{}") != signer.sign("msg_1", 2, b"{}")
    assert signer.sign("msg_1", 1, b"{}") != signer.sign("msg_1", 1, b"[]")
    assert signer.sign("msg_1", 1, b"{}") == signer.sign("msg_1", 1, b"{}")


def test_no_secret_means_unsigned_and_bad_secrets_are_config_errors() -> None:
    assert not Signer([])
    with pytest.raises(ConfigError):
        Signer(["whsec_not base64!"])
    with pytest.raises(ConfigError):
        Signer(["whsec_" + base64.b64encode(b"short").decode()])
