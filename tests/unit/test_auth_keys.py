"""API keys: configuration (TOML and INGESTD_API_KEYS), lookup by digest, header forms."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import msgspec
import pytest

from ingestd.api.auth import Keyring, Principal, presented_key, tenant_of
from ingestd.config import ApiKeyConfig, load_settings
from ingestd.errors import ConfigError
from ingestd.keys import new_key

SECRET = "k-unit-0123456789abcdef"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("INGESTD_"):
            monkeypatch.delenv(name)


def test_no_key_configured_means_no_keyring() -> None:
    assert not Keyring.from_settings(load_settings()).active  # no key: authentication off


def test_plain_keys_from_the_environment_get_both_scopes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTD_API_KEYS", f"{SECRET}, {SECRET}-2")
    keys = load_settings().api_keys
    assert [(k.id, k.key, k.tenant, k.scopes) for k in keys] == [
        ("env-1", SECRET, "default", ["ingest", "admin"]),
        ("env-2", f"{SECRET}-2", "default", ["ingest", "admin"]),
    ]


def test_toml_keys_and_environment_keys_add_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    digest = hashlib.sha256(SECRET.encode()).hexdigest()
    config = tmp_path / "ingestd.toml"
    config.write_text(
        "[[api_keys]]\n"
        f'id = "shop"\nkey_sha256 = "{digest}"\ntenant = "acme"\nsource = "shop"\n'
        'scopes = ["ingest"]\nrate = 50\nburst = 100\n'
    )
    monkeypatch.setenv("INGESTD_CONFIG", str(config))
    monkeypatch.setenv("INGESTD_API_KEYS", '[{"id": "ops", "key": "k-ops-0123456789abcdef"}]')
    settings = load_settings()
    assert [k.id for k in settings.api_keys] == ["shop", "ops"]
    keyring = Keyring.from_settings(settings)
    assert keyring is not None
    principal = keyring.authenticate({b"authorization": f"Bearer {SECRET}".encode()})
    assert principal == Principal(
        key_id="shop",
        tenant="acme",
        source="shop",
        scopes=frozenset({"ingest"}),
        rate=50.0,
        burst=100,
    )
    assert principal.can_ingest and not principal.is_admin


@pytest.mark.parametrize(
    "entry",
    [
        {"id": "none"},
        {"id": "both", "key": SECRET, "key_sha256": "0" * 64},
        {"id": "short", "key": "tiny"},
        {"id": "scope", "key": SECRET, "scopes": ["root"]},
    ],
)
def test_invalid_keys_are_refused_at_start(
    monkeypatch: pytest.MonkeyPatch, entry: dict[str, object]
) -> None:
    monkeypatch.setenv("INGESTD_API_KEYS", json.dumps([entry]))
    with pytest.raises(ConfigError):
        load_settings()


def test_the_same_key_twice_is_refused() -> None:
    twice = [ApiKeyConfig(id="a", key=SECRET), ApiKeyConfig(id="b", key=SECRET)]
    with pytest.raises(ConfigError, match="'a' and 'b' are the same key"):
        Keyring(twice)


def test_bearer_and_x_api_key_are_read_other_schemes_are_not() -> None:
    key = SECRET.encode()
    assert presented_key({b"authorization": b"Bearer " + key}) == key
    assert presented_key({b"authorization": b"bearer  " + key}) == key
    assert presented_key({b"x-api-key": key}) == key
    assert presented_key({b"authorization": b"Basic eDp5"}) is None
    assert presented_key({b"authorization": b"Bearer "}) is None
    assert presented_key({}) is None


def test_only_a_configured_key_authenticates() -> None:
    keyring = Keyring([ApiKeyConfig(id="a", key=SECRET, scopes=["ingest", "admin"])])
    ok = keyring.authenticate({b"x-api-key": SECRET.encode()})
    assert ok is not None and ok.key_id == "a" and ok.is_admin
    assert keyring.authenticate({b"x-api-key": SECRET.encode() + b"x"}) is None
    assert keyring.authenticate({b"x-api-key": SECRET.upper().encode()}) is None
    assert keyring.authenticate({}) is None


def test_routes_read_the_tenant_from_the_scope() -> None:
    principal = Principal(key_id="a", tenant="acme", source=None, scopes=frozenset())
    assert tenant_of({"ingestd.principal": principal}) == "acme"
    assert tenant_of({}) == "default"


def test_stored_keys_turn_authentication_on_and_are_refused_once_revoked_or_expired() -> None:
    keyring = Keyring()
    assert not keyring.active
    plain, key = new_key(tenant_id="acme", scopes=["read"], now=1000.0)
    _, brief = new_key(tenant_id="acme", scopes=["ingest"], expires_at=2e9, now=1000.0)
    keyring.load([key, brief])
    assert keyring.active
    principal = keyring.authenticate({b"authorization": f"Bearer {plain}".encode()})
    assert principal is not None and principal.tenant == "acme" and principal.can_read
    assert not principal.can_ingest and keyring.find(key.id) is not None
    assert set(keyring.take_used()) == {key.id} and keyring.take_used() == {}
    revoked = msgspec.structs.replace(key, revoked_at=1500.0)
    keyring.load([revoked, brief])
    assert keyring.authenticate({b"x-api-key": plain.encode()}) is None
    assert keyring.find(key.id) is None
    assert keyring.active  # a revoked key keeps authentication on
    expired = msgspec.structs.replace(key, expires_at=1001.0)
    keyring.load([expired])
    assert keyring.authenticate({b"x-api-key": plain.encode()}) is None
    assert hashlib.sha256(plain.encode()).digest() == key.digest
