"""Stored API keys on every backend: kept by digest (never the plaintext), listed, revoked
once, their version moving on each change, last use recorded forward only."""

from __future__ import annotations

import hashlib

from test_store import T

from ingestd.keys import new_key
from ingestd.store import Store


async def test_keys_are_made_listed_and_revoked(store: Store) -> None:
    assert await store.api_keys() == []
    start = await store.api_key_version()
    plain, key = new_key(tenant_id="acme", scopes=["ingest", "read"], source="shop", now=T)
    _, other = new_key(tenant_id="default", scopes=["admin"], expires_at=T + 60, now=T + 1)
    await store.create_api_key(key)
    await store.create_api_key(other)
    assert await store.api_key_version() == start + 2
    listed = await store.api_keys()
    assert listed == [key, other]
    assert listed[0].digest == hashlib.sha256(plain.encode()).digest()
    assert listed[0].scopes == ("ingest", "read") and listed[0].source == "shop"
    assert await store.api_keys("acme") == [key]

    assert not await store.revoke_api_key(key.id, T + 5, tenant_id="default")  # not its tenant
    assert await store.revoke_api_key(key.id, T + 5, tenant_id="acme")
    assert not await store.revoke_api_key(key.id, T + 6)  # once
    assert not await store.revoke_api_key("key_unknown", T + 6)
    assert await store.api_key_version() == start + 3
    (revoked,) = await store.api_keys("acme")
    assert revoked.revoked_at == T + 5 and revoked.state(T + 6) == "revoked"
    assert other.state(T + 30) == "active" and other.state(T + 61) == "expired"

    await store.touch_api_keys({other.id: T + 10})
    await store.touch_api_keys({other.id: T + 8})  # an older report does not move it back
    (seen,) = await store.api_keys("default")
    assert seen.last_used_at == T + 10
    assert await store.api_key_version() == start + 3  # use is not a change of the keys
