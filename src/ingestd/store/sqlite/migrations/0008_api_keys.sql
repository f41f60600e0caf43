-- API keys made by `ingestd keys create` or POST /keys, next to the TOML/environment keys.
-- Only the key's SHA-256 is kept. Revoked keys stay (revoked_at) so `keys list` shows them
-- and so that revoking the last key never turns authentication off. `api_key_catalog`
-- moves on every change: each API process polls it and reloads its keys within a second.
CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    prefix       TEXT NOT NULL,
    digest       BLOB NOT NULL UNIQUE,
    tenant_id    TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    source       TEXT,
    rate         REAL,
    burst        INTEGER,
    name         TEXT,
    created_at   REAL NOT NULL,
    expires_at   REAL,
    revoked_at   REAL,
    last_used_at REAL
);
CREATE TABLE api_key_catalog (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO api_key_catalog (id, version) VALUES (1, 0);
