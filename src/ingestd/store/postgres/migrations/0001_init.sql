-- The PostgreSQL schema. Every row carries tenant_id from the first migration.
--
-- events and deliveries are range-partitioned by day on their bigint ids: an id is
-- (day number << 32) + a 32-bit counter, so the id alone names its partition (lookups
-- by id prune to one partition, ids stay below 2^53 for JSON clients) and retention
-- drops whole days instead of deleting rows. Partitions are made ahead of time by
-- ingestd_ensure_partitions(); the global uniqueness of a client's event id (which a
-- partitioned table cannot enforce) lives in the narrow event_ids table.
-- Text compares bytewise (COLLATE "C"), as SQLite does, and cheaply.
-- Times are epoch seconds (double precision): the Store protocol's clock is the caller's.

CREATE SEQUENCE event_counter AS bigint MINVALUE 1 MAXVALUE 4294967295 CYCLE;
CREATE SEQUENCE delivery_counter AS bigint MINVALUE 1 MAXVALUE 4294967295 CYCLE;

CREATE TABLE events (
    seq         bigint NOT NULL,
    tenant_id   text COLLATE "C" NOT NULL,
    id          text COLLATE "C" NOT NULL,
    source      text COLLATE "C" NOT NULL,
    type        text COLLATE "C",
    occurred_at text COLLATE "C" NOT NULL,
    received_at double precision NOT NULL,
    actor_id    text COLLATE "C",
    subject     text COLLATE "C",
    data        json NOT NULL,
    PRIMARY KEY (seq)
) PARTITION BY RANGE (seq);
CREATE INDEX events_tenant ON events (tenant_id, seq);
CREATE INDEX events_source ON events (tenant_id, source, seq);
CREATE INDEX events_type ON events (tenant_id, type, seq);
CREATE INDEX events_received ON events USING brin (received_at);

CREATE TABLE event_ids (
    tenant_id text COLLATE "C" NOT NULL,
    id        text COLLATE "C" NOT NULL,
    seq       bigint NOT NULL,
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX event_ids_seq ON event_ids (seq);

CREATE TABLE idempotency_keys (
    tenant_id   text COLLATE "C" NOT NULL,
    scope       text COLLATE "C" NOT NULL,
    key         text COLLATE "C" NOT NULL,
    fingerprint bytea NOT NULL,
    event_id    text COLLATE "C" NOT NULL,
    expires_at  double precision NOT NULL,
    PRIMARY KEY (tenant_id, scope, key)
);
CREATE INDEX idempotency_expiry ON idempotency_keys (expires_at);

CREATE TABLE deliveries (
    id          bigint NOT NULL,
    tenant_id   text COLLATE "C" NOT NULL,
    event_seq   bigint NOT NULL,
    delivery_id text COLLATE "C" NOT NULL,
    destination text COLLATE "C" NOT NULL,
    state       text COLLATE "C" NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'failed', 'succeeded', 'dead')),
    attempts    integer NOT NULL DEFAULT 0,
    run_at      double precision NOT NULL,
    lease_owner text COLLATE "C",
    lease_until double precision,
    last_error  text COLLATE "C",
    last_status integer,
    created_at  double precision NOT NULL,
    updated_at  double precision NOT NULL,
    finished_at double precision,
    PRIMARY KEY (id)
) PARTITION BY RANGE (id);
CREATE INDEX deliveries_ready ON deliveries (run_at) WHERE state IN ('pending', 'failed');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE state = 'running';
CREATE INDEX deliveries_event ON deliveries (event_seq);
CREATE INDEX deliveries_dead ON deliveries (destination, updated_at) WHERE state = 'dead';

-- Create the day partitions first_day..last_day of both tables that do not exist yet.
CREATE FUNCTION ingestd_ensure_partitions(first_day integer, last_day integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d integer;
    made integer := 0;
    parent text;
BEGIN
    PERFORM pg_advisory_xact_lock(7262353400002);
    FOR d IN first_day..last_day LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries'] LOOP
            IF to_regclass(format('%I', parent || '_p' || d)) IS NULL THEN
                EXECUTE format(
                    'CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
                    parent || '_p' || d, parent, d::bigint << 32, (d::bigint + 1) << 32
                );
                made := made + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN made;
END
$$;
