-- Every row carries tenant_id from the first migration, so isolation needs no data migration.
CREATE TABLE events (
    seq         INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    id          TEXT NOT NULL,
    source      TEXT NOT NULL,
    type        TEXT,
    occurred_at TEXT NOT NULL,
    received_at REAL NOT NULL,
    actor_id    TEXT,
    subject     TEXT,
    data        BLOB NOT NULL
);
-- Only the unique id index: each index costs the ingest path a b-tree insert per event.
-- Listing filters walk seq order (newest pages are cheap); pruning walks from the oldest seq.
CREATE UNIQUE INDEX events_id ON events (tenant_id, id);

CREATE TABLE idempotency_keys (
    tenant_id   TEXT NOT NULL,
    scope       TEXT NOT NULL,
    key         TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    event_id    TEXT NOT NULL,
    expires_at  REAL NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);

CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    event_seq   INTEGER NOT NULL,
    delivery_id TEXT NOT NULL,
    destination TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'pending',
    attempts    INTEGER NOT NULL DEFAULT 0,
    run_at      REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    last_error  TEXT,
    last_status INTEGER,
    created_at  REAL NOT NULL,
    updated_at  REAL NOT NULL,
    finished_at REAL
);
CREATE INDEX deliveries_ready ON deliveries (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'running';
CREATE INDEX deliveries_event ON deliveries (event_seq);
CREATE INDEX deliveries_dead ON deliveries (destination, updated_at) WHERE state = 'dead';
CREATE INDEX deliveries_finished ON deliveries (finished_at) WHERE state = 'succeeded';
