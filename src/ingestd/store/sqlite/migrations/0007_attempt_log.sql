-- The attempt log: one row per delivery attempt, written in the transaction that records its
-- outcome, deleted with its delivery (prune, purge). `delivery` is deliveries.id; `seq`
-- orders a delivery's attempts (attempt numbers start again after a replay).
CREATE TABLE delivery_attempts (
    seq         INTEGER PRIMARY KEY,
    delivery    INTEGER NOT NULL,
    attempt     INTEGER NOT NULL,
    started_at  REAL NOT NULL,
    duration    REAL NOT NULL,
    verdict     TEXT NOT NULL,
    status_code INTEGER,
    error_class TEXT,
    error       TEXT,
    headers     TEXT,
    body        BLOB
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery, seq);
