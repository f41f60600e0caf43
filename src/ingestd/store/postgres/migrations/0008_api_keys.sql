-- API keys made by `ingestd keys create` or POST /keys, next to the TOML/environment keys.
-- Only the key's SHA-256 is kept. Revoked keys stay (revoked_at) so `keys list` shows them
-- and so that revoking the last key never turns authentication off. `api_key_catalog`
-- moves on every change: each API process polls it and reloads its keys within a second.
CREATE TABLE api_keys (
    id           text COLLATE "C" PRIMARY KEY,
    prefix       text COLLATE "C" NOT NULL,
    digest       bytea NOT NULL UNIQUE,
    tenant_id    text COLLATE "C" NOT NULL,
    scopes       text[] NOT NULL,
    source       text COLLATE "C",
    rate         double precision,
    burst        integer,
    name         text,
    created_at   double precision NOT NULL,
    expires_at   double precision,
    revoked_at   double precision,
    last_used_at double precision
);
CREATE TABLE api_key_catalog (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO api_key_catalog (id, version) VALUES (1, 0);
