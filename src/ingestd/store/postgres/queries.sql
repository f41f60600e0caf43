-- Queries of the PostgreSQL backend (psycopg named parameters). Ids are (day << 32) + n.

-- name: accept
-- One round of group commit: keys, then event ids, events and deliveries, in one statement.
-- The rows come as one JSON document (encoding arrays element by element costs more).
-- Rows are inserted in key order so concurrent groups lock in the same order (no deadlock).
-- A `folded` row's key is its own `source:id`: its event_ids row holds it, with the
-- fingerprint (migration 0013), and no idempotency_keys row is written.
WITH input AS (
    SELECT * FROM json_to_recordset(%(rows)s::json) AS t(
        ord int, tenant_id text, scope text, key text, fingerprint text, own_key bool,
        folded bool, id text, source text, type text, occurred_at text, actor_id text,
        subject text, data text, trace text
    )
),
new_keys AS (
    INSERT INTO idempotency_keys (tenant_id, scope, key, fingerprint, event_id, expires_at)
    SELECT tenant_id, scope, key, decode(fingerprint, 'hex'), id, %(expires_at)s FROM input
    WHERE key IS NOT NULL AND NOT own_key AND NOT folded
    ORDER BY tenant_id, scope, key
    ON CONFLICT DO NOTHING
    RETURNING tenant_id, scope, key
),
admitted AS (
    SELECT i.* FROM input i
    WHERE i.key IS NULL OR i.own_key OR i.folded OR EXISTS (
        SELECT 1 FROM new_keys k
        WHERE k.tenant_id = i.tenant_id AND k.scope = i.scope AND k.key = i.key
    )
),
numbered AS (
    SELECT a.*, %(base)s::bigint + nextval('event_counter') AS seq
    FROM (SELECT * FROM admitted ORDER BY ord) a
),
new_ids AS (
    INSERT INTO event_ids (tenant_id, id, seq, fingerprint)
    SELECT tenant_id, id, seq, CASE WHEN folded THEN decode(fingerprint, 'hex') END
    FROM numbered ORDER BY tenant_id, id
    ON CONFLICT DO NOTHING
    RETURNING seq
),
new_events AS (
    INSERT INTO events (seq, tenant_id, id, source, type, occurred_at, received_at, actor_id,
                        subject, data, trace)
    SELECT n.seq, n.tenant_id, n.id, n.source, n.type, n.occurred_at, %(now)s, n.actor_id,
           n.subject, n.data::json, n.trace
    FROM numbered n WHERE n.seq IN (SELECT seq FROM new_ids)
),
new_deliveries AS (
    INSERT INTO deliveries (id, tenant_id, event_seq, delivery_id, destination, run_at,
                            created_at, updated_at)
    SELECT %(base)s::bigint + nextval('delivery_counter'), n.tenant_id, n.seq, d.delivery_id,
           d.destination, %(now)s, %(now)s, %(now)s
    FROM json_to_recordset(%(deliveries)s::json) AS d(ord int, destination text, delivery_id text)
    JOIN numbered n ON n.ord = d.ord
    WHERE n.seq IN (SELECT seq FROM new_ids)
    RETURNING id, event_seq, destination
)
SELECT n.ord, CASE WHEN n.seq IN (SELECT seq FROM new_ids) THEN n.seq END, NULL::bigint,
       NULL::text
FROM numbered n
UNION ALL
SELECT NULL, event_seq, id, destination FROM new_deliveries

-- name: key_lookup
-- Keys that were taken: renew the expired ones for this group, report the others.
WITH wanted AS (
    SELECT * FROM unnest(
        %(ord)s::int[], %(tenant_id)s::text[], %(scope)s::text[], %(key)s::text[],
        %(fingerprint)s::bytea[], %(id)s::text[]
    ) AS t(ord, tenant_id, scope, key, fingerprint, id)
),
renewed AS (
    UPDATE idempotency_keys k
    SET fingerprint = w.fingerprint, event_id = w.id, expires_at = %(expires_at)s
    FROM wanted w
    WHERE k.tenant_id = w.tenant_id AND k.scope = w.scope AND k.key = w.key
      AND k.expires_at < %(now)s
    RETURNING w.ord
)
SELECT w.ord, k.fingerprint, k.event_id, k.expires_at, w.ord IN (SELECT ord FROM renewed)
FROM wanted w
LEFT JOIN idempotency_keys k
       ON k.tenant_id = w.tenant_id AND k.scope = w.scope AND k.key = w.key

-- name: id_lookup
-- Folded submissions whose id was taken: a `source:id` key row from before keys were folded
-- (it decides while unexpired), and the holder's own key (fingerprint, source, received_at).
SELECT w.ord, k.fingerprint, k.event_id, k.expires_at, i.seq, i.fingerprint, e.source,
       e.received_at
FROM unnest(
    %(ord)s::int[], %(tenant_id)s::text[], %(scope)s::text[], %(key)s::text[], %(id)s::text[]
) AS w(ord, tenant_id, scope, key, id)
LEFT JOIN idempotency_keys k
       ON k.tenant_id = w.tenant_id AND k.scope = w.scope AND k.key = w.key
LEFT JOIN event_ids i ON i.tenant_id = w.tenant_id AND i.id = w.id
LEFT JOIN events e ON e.seq = i.seq

-- name: drop_keys
DELETE FROM idempotency_keys k
USING unnest(%(tenant_id)s::text[], %(scope)s::text[], %(key)s::text[]) AS w(tenant_id, scope, key)
WHERE k.tenant_id = w.tenant_id AND k.scope = w.scope AND k.key = w.key

-- name: claim_due
-- Expired leases first (rescued in place), then due jobs by run_at; locked rows are skipped.
-- Every lease/3 seconds per process (store/leases.py); claim_fresh otherwise.
WITH expired AS (
    SELECT id FROM deliveries
    WHERE state = 'running' AND lease_until < %(now)s
      AND destination <> ALL(%(exclude)s::text[])
    ORDER BY lease_until
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
due AS (
    SELECT id FROM deliveries
    WHERE state IN ('pending', 'failed') AND run_at <= %(now)s
      AND destination <> ALL(%(exclude)s::text[])
    ORDER BY run_at
    LIMIT (SELECT %(limit)s - count(*) FROM expired)
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    -- An expired lease ended without an outcome: `interrupted` counts it (see sqlite.sql).
    UPDATE deliveries d
    SET state = 'running', attempts = d.attempts + 1, lease_owner = %(worker)s,
        lease_until = %(until)s, updated_at = %(now)s,
        interrupted = d.interrupted + (d.state = 'running')::int
    WHERE d.id IN (SELECT id FROM expired UNION ALL SELECT id FROM due)
    RETURNING d.id, d.event_seq, d.delivery_id, d.destination, d.attempts, d.interrupted
),
rescued AS (
    UPDATE deliveries d
    SET state = CASE WHEN d.attempts > 0 THEN 'failed' ELSE 'pending' END,
        lease_owner = NULL, lease_until = NULL, updated_at = %(now)s,
        interrupted = d.interrupted + 1
    WHERE d.id IN (
        SELECT id FROM deliveries WHERE state = 'running' AND lease_until < %(now)s
        FOR UPDATE SKIP LOCKED
    ) AND d.id NOT IN (SELECT id FROM expired)
)
SELECT c.id, c.delivery_id, c.destination, c.attempts, e.seq, e.tenant_id, e.id, e.source,
       e.type, e.occurred_at, e.received_at, e.actor_id, e.subject, e.data::text, e.trace,
       c.interrupted
FROM claimed c JOIN events e ON e.seq = c.event_seq

-- name: claim_fresh
-- claim_due without the expired leases: the store sweeps them every lease/3 seconds
-- (store/leases.py), not on every claim.
WITH due AS (
    SELECT id FROM deliveries
    WHERE state IN ('pending', 'failed') AND run_at <= %(now)s
      AND destination <> ALL(%(exclude)s::text[])
    ORDER BY run_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE deliveries d
    SET state = 'running', attempts = d.attempts + 1, lease_owner = %(worker)s,
        lease_until = %(until)s, updated_at = %(now)s
    WHERE d.id IN (SELECT id FROM due)
    RETURNING d.id, d.event_seq, d.delivery_id, d.destination, d.attempts, d.interrupted
)
SELECT c.id, c.delivery_id, c.destination, c.attempts, e.seq, e.tenant_id, e.id, e.source,
       e.type, e.occurred_at, e.received_at, e.actor_id, e.subject, e.data::text, e.trace,
       c.interrupted
FROM claimed c JOIN events e ON e.seq = c.event_seq

-- name: claim_ids
WITH picked AS (
    SELECT id FROM deliveries
    WHERE id = ANY(%(ids)s::bigint[])
      AND (state IN ('pending', 'failed') OR (state = 'running' AND lease_until < %(now)s))
    FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE deliveries d
    SET state = 'running', attempts = d.attempts + 1, lease_owner = %(worker)s,
        lease_until = %(until)s, updated_at = %(now)s,
        interrupted = d.interrupted + (d.state = 'running')::int
    WHERE d.id IN (SELECT id FROM picked)
    RETURNING d.id, d.event_seq, d.delivery_id, d.destination, d.attempts, d.interrupted
)
SELECT c.id, c.delivery_id, c.destination, c.attempts, e.seq, e.tenant_id, e.id, e.source,
       e.type, e.occurred_at, e.received_at, e.actor_id, e.subject, e.data::text, e.trace,
       c.interrupted
FROM claimed c JOIN events e ON e.seq = c.event_seq

-- name: extend
UPDATE deliveries SET lease_until = %(until)s
WHERE id = ANY(%(ids)s::bigint[]) AND lease_owner = %(worker)s AND state = 'running'

-- name: finish
-- Owner-checked: a worker whose lease was taken over matches no row, and logs no attempt.
-- The attempt log's rows and the wake-ups (NOTIFY) go in with the outcome, in the same
-- statement, run outside a transaction block: the server commits it without waiting for the
-- worker, so a worker stopped right after sending it (SIGSTOP, a paused VM) leaves no
-- transaction open holding these rows locked, out of every other claim's reach.
WITH done AS (
UPDATE deliveries d
SET state = CASE r.verdict
        WHEN 'succeeded' THEN 'succeeded'
        WHEN 'retry' THEN 'failed'
        WHEN 'dead' THEN 'dead'
        ELSE CASE WHEN d.attempts > 1 THEN 'failed' ELSE 'pending' END
    END,
    attempts = d.attempts - CASE WHEN r.verdict = 'defer' THEN 1 ELSE 0 END,
    lease_owner = NULL, lease_until = NULL, updated_at = %(now)s,
    finished_at = CASE WHEN r.verdict IN ('succeeded', 'dead') THEN %(now)s END,
    run_at = CASE WHEN r.verdict IN ('retry', 'defer') THEN coalesce(r.run_at, %(now)s)
                  ELSE d.run_at END,
    last_error = CASE r.verdict
        WHEN 'succeeded' THEN NULL
        WHEN 'defer' THEN coalesce(r.error, d.last_error)
        ELSE r.error
    END,
    last_status = CASE WHEN r.verdict = 'defer' THEN coalesce(r.status_code, d.last_status)
                       ELSE r.status_code END
FROM unnest(%(job_id)s::bigint[], %(verdict)s::text[], %(run_at)s::float8[],
            %(error)s::text[], %(status_code)s::int[]) AS r(job_id, verdict, run_at, error,
                                                           status_code)
WHERE d.id = r.job_id AND d.lease_owner = %(worker)s AND d.state = 'running'
RETURNING d.id
),
logged AS (
    INSERT INTO delivery_attempts (delivery, attempt, started_at, duration, verdict,
                                   status_code, error_class, error, headers, body)
    SELECT a.* FROM unnest(
        %(a_delivery)s::bigint[], %(a_attempt)s::int[], %(a_started_at)s::float8[],
        %(a_duration)s::float8[], %(a_verdict)s::text[], %(a_status_code)s::int[],
        %(a_error_class)s::text[], %(a_error)s::text[], %(a_headers)s::jsonb[],
        %(a_body)s::bytea[]
    ) AS a(delivery, attempt, started_at, duration, verdict, status_code, error_class, error,
           headers, body)
    WHERE a.delivery IN (SELECT id FROM done)
),
notified AS (
    SELECT pg_notify(%(channel)s, n.payload) FROM unnest(%(notify)s::text[]) AS n(payload)
    WHERE EXISTS (SELECT 1 FROM done)
)
SELECT (SELECT count(*) FROM done), (SELECT count(*) FROM notified)

-- name: event_by_id
SELECT e.seq, e.tenant_id, e.id, e.source, e.type, e.occurred_at, e.received_at, e.actor_id,
       e.subject, e.data::text, e.trace
FROM event_ids i JOIN events e ON e.seq = i.seq
WHERE i.tenant_id = %(tenant_id)s AND i.id = %(id)s

-- name: event_deliveries
SELECT id, delivery_id, destination, state, attempts, last_error, last_status, run_at,
       created_at, updated_at, finished_at
FROM deliveries
WHERE event_seq = %(seq)s AND id >= (%(seq)s::bigint >> 32) << 32
  AND id < ((%(seq)s::bigint >> 32) + 1) << 32
ORDER BY id

-- name: depth
SELECT
    (SELECT count(*) FROM deliveries WHERE state = 'pending'),
    (SELECT count(*) FROM deliveries WHERE state = 'running'),
    (SELECT count(*) FROM deliveries WHERE state = 'failed'),
    (SELECT count(*) FROM deliveries WHERE state = 'dead')

-- name: ensure_partitions
SELECT ingestd_ensure_partitions(%(first)s, %(last)s)

-- name: partition_days
SELECT substring(c.relname FROM '^events_p(\d+)$')::int AS day
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'events'::regclass
ORDER BY 1

-- name: event_id_days
-- The distinct days in event_ids, by a loose index scan (a few probes, not a scan).
WITH RECURSIVE days AS (
    (SELECT seq >> 32 AS day FROM event_ids ORDER BY seq LIMIT 1)
    UNION ALL
    SELECT (SELECT seq >> 32 FROM event_ids WHERE seq >= (d.day + 1) << 32 ORDER BY seq LIMIT 1)
    FROM days d WHERE d.day IS NOT NULL
)
SELECT day FROM days WHERE day IS NOT NULL

-- name: prune_event_ids_range
DELETE FROM event_ids WHERE seq IN (
    SELECT seq FROM event_ids WHERE seq >= %(lo)s AND seq < %(hi)s LIMIT %(limit)s
)

-- name: prune_keys
DELETE FROM idempotency_keys WHERE expires_at < %(now)s

-- name: expire_id_keys
-- Folded keys of events received before the cutoff: acceptance already reads them as
-- expired; dropping the fingerprint makes the count and idempotency_key_of agree. Such an
-- event's seq is below the next day's base (event_ids_seq), received_at by events_received.
UPDATE event_ids i SET fingerprint = NULL
FROM events e
WHERE i.seq < %(below)s AND i.fingerprint IS NOT NULL
  AND e.seq = i.seq AND e.received_at < %(cutoff)s

-- name: prune_dead
WITH gone AS (
    DELETE FROM deliveries WHERE state = 'dead' AND updated_at < %(cutoff)s RETURNING id
),
gone_attempts AS (
    DELETE FROM delivery_attempts WHERE delivery IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone

-- name: prune_events
-- Events past the retention whose deliveries all succeeded (dead ones are pruned first).
WITH doomed AS (
    SELECT e.seq FROM events e
    WHERE e.received_at < %(cutoff)s
      AND NOT EXISTS (
          SELECT 1 FROM deliveries d WHERE d.event_seq = e.seq AND d.state <> 'succeeded'
      )
    LIMIT %(limit)s
),
gone_deliveries AS (
    DELETE FROM deliveries WHERE event_seq IN (SELECT seq FROM doomed) RETURNING id
),
gone_attempts AS (
    DELETE FROM delivery_attempts WHERE delivery IN (SELECT id FROM gone_deliveries)
),
gone_ids AS (
    DELETE FROM event_ids WHERE seq IN (SELECT seq FROM doomed)
)
DELETE FROM events WHERE seq IN (SELECT seq FROM doomed)

-- Delivery administration (store/delivery_admin.py, shared with SQLite: the same names
-- and named parameters): destinations, breaker state, dead letters, inbox.

-- name: list_destinations
SELECT tenant_id, name, config::text, enabled, disabled_reason, breaker_state, breaker_until,
       failing_since, created_at, updated_at, disabled_at
FROM destinations WHERE tenant_id = %(tenant_id)s ORDER BY name

-- name: get_destination
SELECT tenant_id, name, config::text, enabled, disabled_reason, breaker_state, breaker_until,
       failing_since, created_at, updated_at, disabled_at
FROM destinations WHERE tenant_id = %(tenant_id)s AND name = %(name)s

-- name: catalog_version
SELECT version FROM destination_catalog WHERE id = 1

-- name: bump_catalog
UPDATE destination_catalog SET version = version + 1 WHERE id = 1

-- name: insert_destination
INSERT INTO destinations (tenant_id, name, config, seed, created_at, updated_at)
VALUES (%(tenant_id)s, %(name)s, %(config)s::jsonb, %(seed)s::jsonb, %(now)s, %(now)s)
ON CONFLICT DO NOTHING

-- name: reseed_destination
-- Re-apply a file entry whose text changed since it was last seeded.
UPDATE destinations SET config = %(config)s::jsonb, seed = %(config)s::jsonb, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND name = %(name)s
  AND seed IS DISTINCT FROM %(config)s::jsonb

-- name: seeded_destinations
SELECT name FROM destinations WHERE tenant_id = %(tenant_id)s AND seed IS NOT NULL

-- name: update_destination
UPDATE destinations SET config = %(config)s::jsonb, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND name = %(name)s

-- name: enable_destination
UPDATE destinations
SET enabled = true, disabled_reason = NULL, disabled_at = NULL, breaker_state = 'closed',
    breaker_until = NULL, failing_since = NULL, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND NOT enabled

-- name: disable_destination
UPDATE destinations
SET enabled = false, disabled_reason = %(reason)s, disabled_at = %(now)s, updated_at = %(now)s
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND enabled

-- name: delete_destination
DELETE FROM destinations WHERE tenant_id = %(tenant_id)s AND name = %(name)s

-- name: dead_letter_orphans
-- The default tenant's destinations are the operator's: one catalog routes every tenant's
-- events to them, so their orphans are every tenant's deliveries.
UPDATE deliveries
SET state = 'dead', lease_owner = NULL, lease_until = NULL, updated_at = %(now)s,
    finished_at = %(now)s, last_error = %(reason)s
WHERE (tenant_id = %(tenant_id)s OR %(tenant_id)s::text = 'default') AND destination = %(name)s
  AND state IN ('pending', 'failed', 'running')

-- name: trip_breaker
UPDATE destinations
SET breaker_state = 'open', breaker_until = %(until)s,
    failing_since = coalesce(failing_since, %(now)s)
WHERE tenant_id = %(tenant_id)s AND name = %(name)s

-- name: take_probe
UPDATE destinations SET breaker_state = 'half_open', breaker_until = %(until)s
WHERE tenant_id = %(tenant_id)s AND name = %(name)s AND breaker_state IN ('open', 'half_open')
  AND breaker_until <= %(now)s

-- name: close_breaker
UPDATE destinations SET breaker_state = 'closed', breaker_until = NULL, failing_since = NULL
WHERE tenant_id = %(tenant_id)s AND name = %(name)s

-- name: mark_failing
UPDATE destinations SET failing_since = coalesce(failing_since, %(now)s)
WHERE tenant_id = %(tenant_id)s AND name = %(name)s
RETURNING failing_since

-- name: dead_letter_ids
-- The dead deliveries a DeadLetterQuery selects (NULL parameters filter nothing).
SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.state = 'dead' AND d.tenant_id = %(tenant_id)s AND d.id > %(after)s
  AND (%(destination)s::text IS NULL OR d.destination = %(destination)s::text)
  AND (%(event_type)s::text IS NULL OR e.type = %(event_type)s::text)
  AND (%(since)s::float8 IS NULL OR d.finished_at >= %(since)s::float8)
  AND (%(until)s::float8 IS NULL OR d.finished_at < %(until)s::float8)
  AND (%(ids)s::text[] IS NULL OR d.delivery_id = ANY(%(ids)s::text[]))
ORDER BY d.id
LIMIT %(limit)s

-- name: dead_letters
SELECT d.id, d.delivery_id, d.destination, d.state, d.attempts, d.last_error, d.last_status,
       d.run_at, d.created_at, d.updated_at, d.finished_at,
       e.seq, e.tenant_id, e.id, e.source, e.type, e.occurred_at, e.received_at, e.actor_id,
       e.subject, e.data::text
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.id IN ({dead_letter_ids})
ORDER BY d.id

-- name: replay_dead
-- Same row, same delivery id: receivers dedup a replay like a retry.
UPDATE deliveries
SET state = 'pending', attempts = 0, run_at = %(now)s, lease_owner = NULL, lease_until = NULL,
    updated_at = %(now)s, finished_at = NULL
WHERE id IN ({dead_letter_ids}) AND state = 'dead'

-- name: purge_dead
DELETE FROM deliveries WHERE id IN ({dead_letter_ids}) AND state = 'dead'

-- name: purge_dead_attempts
-- The attempts of what purge_dead deletes (same parameters), deleted first.
DELETE FROM delivery_attempts WHERE delivery IN ({dead_letter_ids})

-- name: inbox_lease
WITH picked AS (
    SELECT id FROM deliveries
    WHERE tenant_id = %(tenant_id)s AND destination = %(destination)s
      AND ((state IN ('pending', 'failed') AND run_at <= %(now)s)
           OR (state = 'running' AND lease_until < %(now)s))
    ORDER BY id LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
),
leased AS (
    UPDATE deliveries d
    SET state = 'running', attempts = d.attempts + 1, lease_owner = %(owner)s,
        lease_until = %(until)s, updated_at = %(now)s
    WHERE d.id IN (SELECT id FROM picked)
    RETURNING d.id, d.event_seq, d.delivery_id, d.destination, d.attempts
),
logged AS (  -- a lease is an inbox's attempt
    INSERT INTO delivery_attempts (delivery, attempt, started_at, duration, verdict)
    SELECT id, attempts, %(now)s, 0, 'leased' FROM leased
)
SELECT l.id, l.delivery_id, l.destination, l.attempts, e.seq, e.tenant_id, e.id, e.source,
       e.type, e.occurred_at, e.received_at, e.actor_id, e.subject, e.data::text
FROM leased l JOIN events e ON e.seq = l.event_seq
ORDER BY l.id

-- name: inbox_ack
UPDATE deliveries
SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, updated_at = %(now)s,
    finished_at = %(now)s, last_error = NULL
WHERE tenant_id = %(tenant_id)s AND destination = %(destination)s
  AND delivery_id = ANY(%(ids)s::text[]) AND state IN ('pending', 'failed', 'running')
RETURNING id, attempts

-- Migrations (store/migrate.py), under the advisory lock of the migration transaction.

-- name: schema_table
CREATE TABLE IF NOT EXISTS ingestd_schema (
    version    integer PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    applied_at timestamptz NOT NULL DEFAULT now()
)

-- name: schema_versions
SELECT version FROM ingestd_schema

-- name: record_version
INSERT INTO ingestd_schema (version, name) VALUES (%(version)s, %(name)s)

-- name: running_xids
-- For GET /events: the next transaction id, then this database's running transactions
-- (32-bit ids; the caller widens them). backend_xid is shown for every role's sessions,
-- privileged or not (checked on PostgreSQL 15 with an unprivileged role).
SELECT pg_snapshot_xmax(pg_current_snapshot())::text,
       coalesce(array_agg(backend_xid::text::bigint)
                FILTER (WHERE backend_xid IS NOT NULL), '{}')
FROM pg_stat_activity WHERE datname = current_database()

-- Console reads: each walks an existing index.

-- name: destination_backlog
SELECT destination, state, count(*), min(run_at), min(created_at) FROM deliveries
WHERE state IN ('pending', 'failed', 'running') {tenant}
GROUP BY destination, state

-- name: dead_by_destination
SELECT destination, count(*) FROM deliveries WHERE state = 'dead' {tenant} GROUP BY destination

-- name: dead_of_destination
-- One destination's dead letters, counted up to a bound on the dead-letter index.
SELECT count(*) FROM (
    SELECT 1 FROM deliveries
    WHERE state = 'dead' AND destination = %(destination)s {tenant} LIMIT %(cap)s
) AS counted

-- name: inbox_peek
SELECT d.id, d.delivery_id, d.destination, d.state, d.attempts, d.last_error, d.last_status,
       d.run_at, d.created_at, d.updated_at, d.finished_at,
       e.seq, e.tenant_id, e.id, e.source, e.type, e.occurred_at, e.received_at, e.actor_id,
       e.subject, e.data::text
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.destination = %(destination)s AND d.state IN ('pending', 'failed', 'running')
  AND d.tenant_id = %(tenant_id)s
ORDER BY d.id
LIMIT %(limit)s

-- name: key_of_event
-- A `source:id` key the event holds itself (its event_ids row), then the same key as a row
-- of idempotency_keys from before keys were folded (the primary key), else a key whose
-- expiry falls where this event's would (the expiry index): no scan of a table either way.
(SELECT %(key)s::text FROM event_ids i JOIN events e ON e.seq = i.seq
 WHERE i.tenant_id = %(tenant_id)s AND i.id = %(event_id)s AND i.fingerprint IS NOT NULL
   AND e.source = %(scope)s)
UNION ALL
(SELECT key FROM idempotency_keys
 WHERE tenant_id = %(tenant_id)s AND scope = %(scope)s AND key = %(key)s
   AND event_id = %(event_id)s)
UNION ALL
(SELECT key FROM idempotency_keys
 WHERE expires_at >= %(low)s AND expires_at <= %(high)s AND tenant_id = %(tenant_id)s
   AND event_id = %(event_id)s
 LIMIT 1)
LIMIT 1

-- The attempt log (migration 0007).

-- name: insert_attempt
INSERT INTO delivery_attempts (delivery, attempt, started_at, duration, verdict, status_code,
                               error_class, error, headers, body)
VALUES (%(delivery)s, %(attempt)s, %(started_at)s, %(duration)s, %(verdict)s,
        %(status_code)s, %(error_class)s, %(error)s, %(headers)s::jsonb, %(body)s)

-- name: attempts_of
SELECT delivery, attempt, started_at, duration, verdict, status_code, error_class, error,
       headers::text, body
FROM delivery_attempts WHERE delivery = ANY(%(ids)s::bigint[]) ORDER BY delivery, seq

-- name: delivery_by_id
SELECT id, delivery_id, destination, state, attempts, last_error, last_status, run_at,
       created_at, updated_at, finished_at, event_seq
FROM deliveries WHERE tenant_id = %(tenant_id)s AND delivery_id = %(delivery_id)s

-- name: event_by_seq
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject,
       data::text, trace
FROM events WHERE seq = %(seq)s

-- API keys (migration 0008).

-- name: insert_api_key
INSERT INTO api_keys (id, prefix, digest, tenant_id, scopes, source, rate, burst, name,
                      created_at, expires_at, revoked_at, last_used_at)
VALUES (%(id)s, %(prefix)s, %(digest)s, %(tenant_id)s, %(scopes)s, %(source)s, %(rate)s,
        %(burst)s, %(name)s, %(created_at)s, %(expires_at)s, %(revoked_at)s, %(last_used_at)s)

-- name: api_keys
SELECT id, prefix, digest, tenant_id, scopes, source, rate, burst, name, created_at,
       expires_at, revoked_at, last_used_at
FROM api_keys WHERE (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = %(now)s
WHERE id = %(id)s AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s::text)
  AND revoked_at IS NULL

-- name: touch_api_key
UPDATE api_keys SET last_used_at = greatest(coalesce(last_used_at, 0), %(at)s) WHERE id = %(id)s

-- name: api_key_version
SELECT version FROM api_key_catalog WHERE id = 1

-- name: bump_api_keys
UPDATE api_key_catalog SET version = version + 1 WHERE id = 1
