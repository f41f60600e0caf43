-- Destinations as stored: the TOML file seeds them, the admin API changes them, every
-- process reloads them when `destination_catalog.version` moves.
CREATE TABLE destinations (
    tenant_id       TEXT NOT NULL,
    name            TEXT NOT NULL,
    config          BLOB NOT NULL,
    seed            BLOB,
    enabled         INTEGER NOT NULL DEFAULT 1,
    disabled_reason TEXT,
    breaker_state   TEXT NOT NULL DEFAULT 'closed',
    breaker_until   REAL,
    failing_since   REAL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE destination_catalog (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO destination_catalog (id, version) VALUES (1, 0);
CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id);
CREATE INDEX deliveries_inbox ON deliveries (destination, run_at) WHERE state IN ('pending', 'failed', 'running')
