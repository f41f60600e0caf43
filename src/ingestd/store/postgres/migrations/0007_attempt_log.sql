-- The attempt log: one row per delivery attempt, written in the transaction that records its
-- outcome. Range-partitioned on the delivery's id like deliveries, by the same day, so a
-- day's attempts are dropped with that day's deliveries; deleted with their delivery when
-- rows are pruned or purged one by one. `seq` orders a delivery's attempts (attempt numbers
-- start again after a replay).
CREATE SEQUENCE delivery_attempt_seq AS bigint;

CREATE TABLE delivery_attempts (
    delivery    bigint NOT NULL,
    seq         bigint NOT NULL DEFAULT nextval('delivery_attempt_seq'),
    attempt     integer NOT NULL,
    started_at  double precision NOT NULL,
    duration    double precision NOT NULL,
    verdict     text COLLATE "C" NOT NULL,
    status_code integer,
    error_class text COLLATE "C",
    error       text COLLATE "C",
    headers     jsonb,
    body        bytea
) PARTITION BY RANGE (delivery);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery, seq);

-- Every day that has a deliveries partition gets its attempts partition; later days get
-- theirs from ingestd_ensure_partitions, which now makes all three.
DO $$
DECLARE
    d integer;
BEGIN
    FOR d IN
        SELECT substring(c.relname FROM '^deliveries_p(\d+)$')::int
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'deliveries'::regclass
    LOOP
        EXECUTE format(
            'CREATE TABLE %I PARTITION OF delivery_attempts FOR VALUES FROM (%s) TO (%s)',
            'delivery_attempts_p' || d, d::bigint << 32, (d::bigint + 1) << 32
        );
    END LOOP;
END
$$;

CREATE OR REPLACE FUNCTION ingestd_ensure_partitions(first_day integer, last_day integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    d integer;
    made integer := 0;
    parent text;
BEGIN
    PERFORM pg_advisory_xact_lock(7262353400002);
    FOR d IN first_day..last_day LOOP
        FOREACH parent IN ARRAY ARRAY['events', 'deliveries', 'delivery_attempts'] LOOP
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
