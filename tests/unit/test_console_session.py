"""Console sessions: signed, expiring, bound to a key that still exists; CSRF per session."""

from __future__ import annotations

import base64

import msgspec

from ingestd.api.auth import Keyring
from ingestd.api.console.session import (
    COOKIE,
    LIFETIME,
    MAX_AGE,
    Claims,
    Sessions,
    cookie_header,
    is_loopback,
)
from ingestd.config import ApiKeyConfig

ADMIN = ApiKeyConfig(id="ops", key="admin-key-0123456789", scopes=["ingest", "admin"])
INGEST = ApiKeyConfig(id="app", key="ingest-key-0123456789", scopes=["ingest"])
T = 1_800_000_000.0


def sessions(*keys: ApiKeyConfig, secret: str | None = None) -> Sessions:
    return Sessions(Keyring(list(keys) or [ADMIN, INGEST]), secret)


def test_a_signed_in_key_holds_a_session_until_it_expires() -> None:
    s = sessions()
    signed = s.sign_in("admin-key-0123456789", T)
    assert signed is not None
    principal, value = signed
    assert principal.key_id == "ops"
    assert "admin-key" not in value  # the cookie never carries the key
    session = s.check({COOKIE: value}, T + 60)
    assert session is not None and session.can_act and session.is_operator
    assert s.check({COOKIE: value}, T + LIFETIME) is None


def test_wrong_keys_and_tampered_cookies_are_refused() -> None:
    s = sessions()
    assert s.sign_in("not-a-key-at-all-000", T) is None
    signed = s.sign_in("admin-key-0123456789", T)
    assert signed is not None
    body, mac = signed[1].split(".")
    claims = msgspec.json.decode(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    claims["expires"] = T + 10**6
    forged = base64.urlsafe_b64encode(msgspec.json.encode(claims)).decode().rstrip("=")
    assert s.check({COOKIE: f"{forged}.{mac}"}, T) is None
    assert s.check({COOKIE: "garbage"}, T) is None
    assert s.check({COOKIE: "a.b"}, T) is None
    assert s.check({}, T) is None


def test_a_removed_key_ends_its_sessions_and_the_secret_changes_signatures() -> None:
    signed = sessions().sign_in("admin-key-0123456789", T)
    assert signed is not None
    other = ApiKeyConfig(id="else", key="another-key-0123456789", scopes=["admin"])
    assert sessions(other).check({COOKIE: signed[1]}, T) is None
    assert sessions(secret="s3cret").check({COOKIE: signed[1]}, T) is None
    assert sessions().check({COOKIE: signed[1]}, T) is not None


def test_ingest_only_keys_have_no_session() -> None:
    s = sessions()
    signed = s.sign_in("ingest-key-0123456789", T)
    assert signed is not None  # the key is valid...
    assert s.check({COOKIE: signed[1]}, T) is None  # ...but not for the console


def test_csrf_token_is_per_session() -> None:
    s = sessions()
    one = s.sign_in("admin-key-0123456789", T)
    two = s.sign_in("admin-key-0123456789", T)
    assert one is not None and two is not None
    a = s.check({COOKIE: one[1]}, T)
    b = s.check({COOKIE: two[1]}, T)
    assert a is not None and b is not None
    assert a.csrf_ok(a.csrf)
    assert not a.csrf_ok(b.csrf)
    assert not a.csrf_ok(None)
    assert not a.csrf_ok("")


def test_renewal_slides_the_expiry_but_not_past_the_maximum_age() -> None:
    s = sessions()
    signed = s.sign_in("admin-key-0123456789", T)
    assert signed is not None
    session = s.check({COOKIE: signed[1]}, T + 60)
    assert session is not None and session.renewed(T + 60) is None
    late = s.check({COOKIE: signed[1]}, T + LIFETIME - 60)
    assert late is not None
    renewed = late.renewed(T + LIFETIME - 60)
    assert renewed is not None and renewed.expires > T + LIFETIME
    old = Claims("ops", T, T + MAX_AGE + 600, "n")
    stale = late.renewed(T + MAX_AGE - 60)
    assert stale is not None and stale.expires <= T + MAX_AGE
    value = s.cookie_value(old, late.mac_key)
    assert s.check({COOKIE: value}, T + MAX_AGE + 1) is None


def test_cookie_attributes_and_loopback() -> None:
    header = cookie_header("v", secure=True)
    for attribute in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/console"):
        assert attribute in header
    assert "Secure" not in cookie_header("v", secure=False)
    assert is_loopback(("127.0.0.1", 1)) and is_loopback(("::1", 1))
    assert not is_loopback(("10.1.2.3", 1)) and not is_loopback(None)
    assert not is_loopback(("testclient", 1))
