"""Standard Webhooks signatures: `v1,<base64 HMAC-SHA256 of id.timestamp.body>`.

Secrets are `whsec_<base64 key>`; during a rotation a destination has several and each
message carries one signature per secret, space-separated, so receivers verifying with
either the old or the new secret accept it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence

from ingestd.errors import ConfigError

PREFIX = "whsec_"


def secret_key(secret: str) -> bytes:
    """The raw key of a `whsec_...` secret (a bare base64 key is accepted too)."""
    text = secret.removeprefix(PREFIX)
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ConfigError("a webhook secret is 'whsec_' followed by base64") from exc
    if len(key) < 16:
        raise ConfigError("a webhook secret needs at least 16 bytes of key (24 base64 chars)")
    return key


class Signer:
    """Signs messages with every active secret of one destination."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._macs = [hmac.new(secret_key(s), digestmod=hashlib.sha256) for s in secrets]

    def __bool__(self) -> bool:
        return bool(self._macs)

    def sign(self, msg_id: str, timestamp: int, body: bytes) -> str:
        """The `webhook-signature` header value."""
        prefix = f"{msg_id}.{timestamp}.".encode()
        signatures = []
        for base in self._macs:
            mac = base.copy()
            mac.update(prefix)
            mac.update(body)
            signatures.append("v1," + base64.b64encode(mac.digest()).decode())
        return " ".join(signatures)
