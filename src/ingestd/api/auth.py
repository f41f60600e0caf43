"""API keys: who is calling (tenant, pinned source, scopes), checked without timing leaks.

Keys are kept as SHA-256 digests; a request's key is hashed once and looked up in a dict,
then compared with `hmac.compare_digest`. With no key configured there is no Keyring and
every request is the `default` tenant, as before authentication existed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import Counter

from ingestd.config import ApiKeyConfig, Settings
from ingestd.errors import ConfigError
from ingestd.keys import StoredKey
from ingestd.model import DEFAULT_TENANT as DEFAULT_TENANT
from ingestd.obs.metrics import REGISTRY

PRINCIPAL_KEY = "ingestd.principal"
"""Where the app puts the caller's Principal in the ASGI scope for the routes."""

AUTH_FAILURES = Counter(
    "ingestd_auth_failures",
    "Requests refused by authentication or authorization, by reason",
    ["reason"],
    registry=REGISTRY,
)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    key_id: str
    tenant: str
    source: str | None
    """The pinned source: events get it, and may not claim another."""
    scopes: frozenset[str]
    rate: float | None = None
    burst: int | None = None

    @property
    def can_ingest(self) -> bool:
        return "ingest" in self.scopes

    @property
    def is_admin(self) -> bool:
        return "admin" in self.scopes

    @property
    def can_read(self) -> bool:
        """Look without acting (admin includes it)."""
        return "read" in self.scopes or "admin" in self.scopes


def digest_of(config: ApiKeyConfig) -> bytes:
    if config.key_sha256 is not None:
        return bytes.fromhex(config.key_sha256)
    assert config.key is not None  # the config validator demands one of the two
    return hashlib.sha256(config.key.encode()).digest()


def presented_key(headers: Mapping[bytes, bytes]) -> bytes | None:
    """The key of `Authorization: Bearer <key>`, else of `X-API-Key`."""
    raw = headers.get(b"authorization")
    if raw is not None:
        scheme, _, token = raw.partition(b" ")
        return (token.strip() or None) if scheme.lower() == b"bearer" else None
    return headers.get(b"x-api-key") or None


class Keyring:
    """Every key this process accepts, by digest: the configured ones (TOML, environment)
    and the stored ones (`ingestd keys create`, POST /keys), reloaded by a KeyWatcher.

    Authentication is on (`active`) once any key exists, configured or stored; a revoked
    stored key still counts, so revoking the last key never opens the API."""

    def __init__(self, keys: Sequence[ApiKeyConfig] = ()) -> None:
        self._by_digest: dict[bytes, tuple[bytes, Principal]] = {}
        self._by_id: dict[str, tuple[bytes, Principal]] = {}
        for config in keys:
            digest = digest_of(config)
            if digest in self._by_digest:
                first = self._by_digest[digest][1].key_id
                raise ConfigError(
                    f"API keys {first!r} and {config.id!r} are the same key (same SHA-256): "
                    "each key must be unique; remove or replace one of them "
                    "(INGESTD_API_KEYS or [[api_keys]] in the config file)"
                )
            principal = Principal(
                key_id=config.id,
                tenant=config.tenant,
                source=config.source,
                scopes=frozenset(config.scopes),
                rate=config.rate,
                burst=config.burst,
            )
            self._by_digest[digest] = (digest, principal)
            self._by_id[config.id] = (digest, principal)
        self._configured = bool(self._by_digest)
        self._stored: dict[bytes, tuple[StoredKey, Principal]] = {}
        self._stored_by_id: dict[str, tuple[bytes, Principal]] = {}
        self._store_has_keys = False
        self._used: dict[str, float] = {}
        self._decoy = hashlib.sha256(b"ingestd: no such key").digest()

    @classmethod
    def from_settings(cls, settings: Settings) -> Keyring:
        """The configured keys; stored ones arrive with `load` (authentication is off while
        there are none of either)."""
        return cls(settings.api_keys)

    @property
    def active(self) -> bool:
        """Whether requests need a key."""
        return self._configured or self._store_has_keys

    def load(self, stored: Sequence[StoredKey]) -> None:
        """Replace the stored keys (all of them, revoked ones included) at once."""
        by_digest: dict[bytes, tuple[StoredKey, Principal]] = {}
        by_id: dict[str, tuple[bytes, Principal]] = {}
        for key in stored:
            principal = Principal(
                key_id=key.id,
                tenant=key.tenant_id,
                source=key.source,
                scopes=frozenset(key.scopes),
                rate=key.rate,
                burst=key.burst,
            )
            by_digest[key.digest] = (key, principal)
            if key.revoked_at is None:
                by_id[key.id] = (key.digest, principal)
        self._stored, self._stored_by_id = by_digest, by_id
        self._store_has_keys = bool(stored)

    def find(self, key_id: str) -> tuple[bytes, Principal] | None:
        """The digest and principal of a key by its id (the console's session check); a
        revoked or expired stored key is not found."""
        found = self._by_id.get(key_id)
        if found is not None:
            return found
        entry = self._stored_by_id.get(key_id)
        if entry is None:
            return None
        key, _ = self._stored.get(entry[0], (None, None))
        return entry if key is not None and key.valid_at(time.time()) else None

    def authenticate(self, headers: Mapping[bytes, bytes]) -> Principal | None:
        key = presented_key(headers)
        if key is None:
            AUTH_FAILURES.labels("missing").inc()
            return None
        digest = hashlib.sha256(key).digest()
        stored, principal = self._by_digest.get(digest, (self._decoy, None))
        if hmac.compare_digest(digest, stored) and principal is not None:
            return principal
        kept = self._stored.get(digest)
        if kept is not None and hmac.compare_digest(digest, kept[0].digest):
            now = time.time()
            if kept[0].valid_at(now):
                self._used[kept[0].id] = now
                return kept[1]
            AUTH_FAILURES.labels(kept[0].state(now)).inc()  # revoked or expired
            return None
        AUTH_FAILURES.labels("unknown").inc()
        return None

    def take_used(self) -> dict[str, float]:
        """Stored keys used since the last call, with when (for `keys list`'s last used)."""
        used, self._used = self._used, {}
        return used


def challenge(error: str | None = None, scope: str | None = None) -> bytes:
    """The WWW-Authenticate value (RFC 6750)."""
    value = 'Bearer realm="ingestd"'
    if error is not None:
        value += f', error="{error}"'
    if scope is not None:
        value += f', scope="{scope}"'
    return value.encode()


def unauthorized_detail(headers: Mapping[bytes, bytes]) -> str:
    if presented_key(headers) is None:
        return (
            "this ingestd requires an API key: send `Authorization: Bearer <key>` "
            "(or `X-API-Key: <key>`)"
        )
    return "the API key is not valid for this ingestd"


def operator_only(path: str) -> bool:
    """Destinations are shared by every tenant: only the operator's (default) tenant
    manages them."""
    return path == "/destinations" or path.startswith("/destinations/")


READ_ROOTS = frozenset({"events", "dlq", "deliveries", "destinations"})
"""Collections a `read` key may GET (its own tenant's rows; destinations: the operator's)."""


def is_read(scope: Mapping[str, Any]) -> bool:
    """A request that only looks: GET/HEAD of an event's status, events, dead letters,
    deliveries (and their attempts), destinations, or an inbox's waiting events. Leasing
    from an inbox (GET /inbox/{name}) changes state and is not a read."""
    if scope.get("method") not in ("GET", "HEAD"):
        return False
    parts = str(scope.get("path", "")).split("/")
    if len(parts) < 2 or parts[0] != "":
        return False
    if parts[1] in READ_ROOTS:
        return True
    if parts[1] == "ingest":
        return len(parts) == 4 and parts[2] != "" and parts[3] == "status"
    return parts[1] == "inbox" and len(parts) == 4 and parts[2] != "" and parts[3] == "waiting"


def tenant_of(scope: MutableMapping[str, Any]) -> str:
    """The tenant of the request the routes are serving (`default` without keys)."""
    principal = scope.get(PRINCIPAL_KEY)
    return principal.tenant if isinstance(principal, Principal) else DEFAULT_TENANT
