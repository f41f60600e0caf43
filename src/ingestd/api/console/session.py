"""Console sessions: a signed cookie after signing in with an API key, and CSRF tokens.

The cookie names the key (by id), its expiry and a random nonce, signed with HMAC-SHA256
under a key derived from the API key's own digest (and INGESTD_CONSOLE_SECRET when set).
So every API process can check a session without shared state, and a key that is revoked
or removed ends its sessions at once: the lookup by id fails. The cookie never holds the
API key. A CSRF token is an HMAC of the session's nonce under the same key: a page of
another origin can neither read it nor compute it.

With no API keys configured the console is open on loopback only (the API's rule), and
an anonymous session still carries a nonce so state-changing forms keep their CSRF check.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from ingestd.api.auth import DEFAULT_TENANT, Keyring, Principal

COOKIE = "ingestd_console"
LIFETIME = 30 * 60.0
"""A session lasts 30 minutes from the last page it served (it is re-issued on use)."""
MAX_AGE = 12 * 3600.0
"""No session outlives 12 hours from sign-in, however busy."""
RENEW_BELOW = 20 * 60.0
LOCAL = Principal(key_id="local", tenant=DEFAULT_TENANT, source=None, scopes=frozenset({"admin"}))
"""Who a loopback visitor is when no key is configured: the operator."""


class Claims(msgspec.Struct, frozen=True):
    key_id: str
    issued: float
    expires: float
    nonce: str


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    claims: Claims
    mac_key: bytes

    @property
    def can_act(self) -> bool:
        """Admin controls are shown and accepted (a `read` key only looks)."""
        return self.principal.is_admin

    @property
    def is_operator(self) -> bool:
        """The default tenant's keys see the shared parts: destinations, process metrics."""
        return self.principal.tenant == DEFAULT_TENANT

    @property
    def csrf(self) -> str:
        return token(self.mac_key, "csrf", self.claims.nonce)

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)

    def renewed(self, now: float) -> Claims | None:
        """New claims with a fresh expiry when this one is past a third of its life."""
        if self.claims.expires - now >= RENEW_BELOW:
            return None
        expires = min(now + LIFETIME, self.claims.issued + MAX_AGE)
        return Claims(self.claims.key_id, self.claims.issued, expires, self.claims.nonce)


def token(key: bytes, purpose: str, text: str) -> str:
    mac = hmac.new(key, f"{purpose}:{text}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def is_loopback(client: tuple[str, int] | None) -> bool:
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client[0]).is_loopback
    except ValueError:
        return False


_claims_decoder = msgspec.json.Decoder(Claims)


class Sessions:
    """Issues and checks session cookies against the process's keys."""

    def __init__(self, keyring: Keyring | None, secret: str | None) -> None:
        self.keyring = keyring
        self._secret = (secret or "").encode()
        # Anonymous (no-key) sessions: signed under the configured secret, or one of this
        # process's own (a loopback visitor of another process simply gets a new nonce).
        self._anonymous_key = self._derive(self._secret or secrets.token_bytes(32))

    @property
    def open(self) -> bool:
        """No key is configured: loopback visitors are the operator."""
        return self.keyring is None or not self.keyring.active

    def _derive(self, material: bytes) -> bytes:
        return hmac.new(self._secret or b"ingestd-console", material, hashlib.sha256).digest()

    def _mac_key(self, key_id: str) -> tuple[Principal, bytes] | None:
        if self.keyring is None or not self.keyring.active:
            return (LOCAL, self._anonymous_key) if key_id == LOCAL.key_id else None
        found = self.keyring.find(key_id)
        if found is None:
            return None
        digest, principal = found
        return principal, self._derive(digest)

    def sign_in(self, presented: str, now: float) -> tuple[Principal, str] | None:
        """The principal and its cookie value for a presented API key (None: not valid)."""
        if self.keyring is None or not self.keyring.active:
            return None
        principal = self.keyring.authenticate({b"x-api-key": presented.encode()})
        if principal is None:
            return None
        found = self._mac_key(principal.key_id)
        assert found is not None
        claims = Claims(principal.key_id, now, now + LIFETIME, secrets.token_urlsafe(16))
        return principal, self.cookie_value(claims, found[1])

    def anonymous(self, now: float) -> tuple[Session, str]:
        claims = Claims(LOCAL.key_id, now, now + LIFETIME, secrets.token_urlsafe(16))
        session = Session(LOCAL, claims, self._anonymous_key)
        return session, self.cookie_value(claims, self._anonymous_key)

    @staticmethod
    def cookie_value(claims: Claims, mac_key: bytes) -> str:
        body = base64.urlsafe_b64encode(msgspec.json.encode(claims)).decode().rstrip("=")
        return f"{body}.{token(mac_key, 'session', body)}"

    def check(self, cookies: Mapping[str, str], now: float) -> Session | None:
        """The session a request's cookie proves, or None (absent, forged, expired, revoked)."""
        value = cookies.get(COOKIE)
        if not value or value.count(".") != 1:
            return None
        body, mac = value.split(".")
        try:
            claims = _claims_decoder.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (msgspec.DecodeError, ValueError):
            return None
        found = self._mac_key(claims.key_id)
        if found is None:
            return None
        principal, mac_key = found
        if not hmac.compare_digest(mac, token(mac_key, "session", body)):
            return None
        if now >= claims.expires or now - claims.issued > MAX_AGE:
            return None
        if not principal.can_read:
            return None  # an ingest-only key (it could sign in before its scopes changed)
        return Session(principal, claims, mac_key)


def cookie_header(value: str, *, secure: bool, max_age: float | None = LIFETIME) -> str:
    """Set-Cookie for the session: HttpOnly, SameSite=Strict, Secure under HTTPS."""
    parts = [f"{COOKIE}={value}", "Path=/console", "HttpOnly", "SameSite=Strict"]
    parts.append(f"Max-Age={int(max_age) if max_age is not None else 0}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def expired_cookie(secure: bool) -> str:
    return cookie_header("", secure=secure, max_age=None)


def now() -> float:
    return time.time()
