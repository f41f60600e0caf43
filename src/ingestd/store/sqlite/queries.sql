-- name: insert_key
INSERT INTO idempotency_keys (tenant_id, scope, key, fingerprint, event_id, expires_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING

-- name: get_key
SELECT fingerprint, event_id, expires_at FROM idempotency_keys
WHERE tenant_id = ? AND scope = ? AND key = ?

-- name: renew_key
UPDATE idempotency_keys SET fingerprint = ?, event_id = ?, expires_at = ?
WHERE tenant_id = ? AND scope = ? AND key = ?

-- name: delete_key
DELETE FROM idempotency_keys WHERE tenant_id = ? AND scope = ? AND key = ?

-- name: insert_event
INSERT INTO events (tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data,
                    trace, fingerprint)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING

-- name: insert_deliveries
-- A group's deliveries in one statement: (tenant_id, event_seq, delivery_id, destination) rows
-- as one JSON array, walked inside one sqlite3_step, so the writer thread takes the GIL back
-- once, not once per row (executemany). Array order is id order. run_at, created_at and
-- updated_at are the commit time. (Events stay on executemany: their JSON encoding and
-- SQLite's parse of it cost more CPU than the hand-offs saved; benchmarks/RESULTS.md.)
INSERT INTO deliveries (tenant_id, event_seq, delivery_id, destination, run_at, created_at, updated_at)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, ?2, ?2, ?2
FROM json_each(?1) ORDER BY key

-- name: event_key
-- The key an event holds itself (key_is_id): its source, fingerprint and acceptance time.
SELECT source, fingerprint, received_at FROM events WHERE tenant_id = ? AND id = ?

-- name: insert_delivery
INSERT INTO deliveries (tenant_id, event_seq, delivery_id, destination, run_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: rescue
-- Run by a claim every lease/3 seconds per process (store/leases.py), not by every claim.
-- `interrupted` counts leases that ran out without an outcome: the worker decides what a
-- repeat means (a handler that kills its process twice is dead-lettered).
UPDATE deliveries SET state = CASE WHEN attempts > 0 THEN 'failed' ELSE 'pending' END,
    lease_owner = NULL, lease_until = NULL, updated_at = ?1, interrupted = interrupted + 1
WHERE state = 'running' AND lease_until < ?1

-- name: claim_due
UPDATE deliveries
SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_until = ?2, updated_at = ?3
WHERE id IN (
    SELECT id FROM deliveries
    WHERE state IN ('pending', 'failed') AND run_at <= ?3
      AND destination NOT IN (SELECT value FROM json_each(?5))
    ORDER BY run_at LIMIT ?4
)
RETURNING id, event_seq, delivery_id, destination, attempts, interrupted

-- name: job_events
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data, trace
FROM events WHERE seq IN (SELECT value FROM json_each(?))

-- name: extend
UPDATE deliveries SET lease_until = ?1
WHERE lease_owner = ?2 AND state = 'running' AND id IN (SELECT value FROM json_each(?3))

-- name: finish_succeeded_many
UPDATE deliveries
SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, updated_at = ?1, finished_at = ?1,
    last_error = NULL, last_status = ?2
WHERE id IN (SELECT value FROM json_each(?3)) AND lease_owner = ?4 AND state = 'running'
RETURNING id

-- name: finish_retry
UPDATE deliveries
SET state = 'failed', lease_owner = NULL, lease_until = NULL, updated_at = ?1, run_at = ?2,
    last_error = ?3, last_status = ?4
WHERE id = ?5 AND lease_owner = ?6 AND state = 'running'

-- name: finish_defer
UPDATE deliveries
SET state = CASE WHEN attempts > 1 THEN 'failed' ELSE 'pending' END, attempts = attempts - 1,
    lease_owner = NULL, lease_until = NULL, updated_at = ?1, run_at = ?2,
    last_error = COALESCE(?3, last_error), last_status = COALESCE(?4, last_status)
WHERE id = ?5 AND lease_owner = ?6 AND state = 'running'

-- name: finish_dead
UPDATE deliveries
SET state = 'dead', lease_owner = NULL, lease_until = NULL, updated_at = ?1, finished_at = ?1,
    last_error = ?3, last_status = ?4
WHERE id = ?5 AND lease_owner = ?6 AND state = 'running'

-- name: event_by_id
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data, trace
FROM events WHERE tenant_id = ? AND id = ?

-- name: event_deliveries
SELECT id, delivery_id, destination, state, attempts, last_error, last_status, run_at,
       created_at, updated_at, finished_at
FROM deliveries WHERE event_seq = ? ORDER BY id

-- name: depth
SELECT
    (SELECT count(*) FROM deliveries WHERE state = 'pending'),
    (SELECT count(*) FROM deliveries WHERE state = 'running'),
    (SELECT count(*) FROM deliveries WHERE state = 'failed'),
    (SELECT count(*) FROM deliveries WHERE state = 'dead')

-- name: prune_keys
DELETE FROM idempotency_keys WHERE expires_at < ?

-- name: expire_id_keys
UPDATE events SET fingerprint = NULL WHERE fingerprint IS NOT NULL AND received_at < ?

-- name: prune_dead
DELETE FROM deliveries WHERE state = 'dead' AND updated_at < ?

-- name: prunable_events
-- seq order is acceptance order, so the old events are the first ones walked.
SELECT seq FROM events
WHERE received_at < ?1
  AND NOT EXISTS (
      SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq AND d.state <> 'succeeded'
  )
ORDER BY seq
LIMIT ?2

-- name: prune_event_deliveries
DELETE FROM deliveries WHERE event_seq IN (SELECT value FROM json_each(?))

-- name: prune_events
DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))

-- name: claim_ids
UPDATE deliveries
SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_until = ?2, updated_at = ?3
WHERE id IN (SELECT value FROM json_each(?4)) AND state IN ('pending', 'failed')
RETURNING id, event_seq, delivery_id, destination, attempts, interrupted

-- Delivery administration (store/delivery_admin.py, shared with PostgreSQL: the same
-- names and named parameters): destinations, breaker state, dead letters, inbox.

-- name: list_destinations
SELECT tenant_id, name, config, enabled, disabled_reason, breaker_state, breaker_until,
       failing_since, created_at, updated_at, disabled_at
FROM destinations WHERE tenant_id = :tenant_id ORDER BY name

-- name: get_destination
SELECT tenant_id, name, config, enabled, disabled_reason, breaker_state, breaker_until,
       failing_since, created_at, updated_at, disabled_at
FROM destinations WHERE tenant_id = :tenant_id AND name = :name

-- name: catalog_version
SELECT version FROM destination_catalog WHERE id = 1

-- name: bump_catalog
UPDATE destination_catalog SET version = version + 1 WHERE id = 1

-- name: insert_destination
INSERT INTO destinations (tenant_id, name, config, seed, created_at, updated_at)
VALUES (:tenant_id, :name, :config, :seed, :now, :now)
ON CONFLICT DO NOTHING

-- name: reseed_destination
-- Re-apply a file entry whose text changed since it was last seeded.
UPDATE destinations SET config = :config, seed = :config, updated_at = :now
WHERE tenant_id = :tenant_id AND name = :name AND seed IS NOT :config

-- name: seeded_destinations
SELECT name FROM destinations WHERE tenant_id = :tenant_id AND seed IS NOT NULL

-- name: update_destination
UPDATE destinations SET config = :config, updated_at = :now
WHERE tenant_id = :tenant_id AND name = :name

-- name: enable_destination
UPDATE destinations
SET enabled = 1, disabled_reason = NULL, disabled_at = NULL, breaker_state = 'closed',
    breaker_until = NULL, failing_since = NULL, updated_at = :now
WHERE tenant_id = :tenant_id AND name = :name AND enabled = 0

-- name: disable_destination
UPDATE destinations SET enabled = 0, disabled_reason = :reason, disabled_at = :now, updated_at = :now
WHERE tenant_id = :tenant_id AND name = :name AND enabled = 1

-- name: delete_destination
DELETE FROM destinations WHERE tenant_id = :tenant_id AND name = :name

-- name: dead_letter_orphans
-- The default tenant's destinations are the operator's: one catalog routes every tenant's
-- events to them, so their orphans are every tenant's deliveries.
UPDATE deliveries
SET state = 'dead', lease_owner = NULL, lease_until = NULL, updated_at = :now,
    finished_at = :now, last_error = :reason
WHERE (tenant_id = :tenant_id OR :tenant_id = 'default') AND destination = :name
  AND state IN ('pending', 'failed', 'running')

-- name: trip_breaker
UPDATE destinations
SET breaker_state = 'open', breaker_until = :until, failing_since = COALESCE(failing_since, :now)
WHERE tenant_id = :tenant_id AND name = :name

-- name: take_probe
UPDATE destinations SET breaker_state = 'half_open', breaker_until = :until
WHERE tenant_id = :tenant_id AND name = :name AND breaker_state IN ('open', 'half_open')
  AND breaker_until <= :now

-- name: close_breaker
UPDATE destinations SET breaker_state = 'closed', breaker_until = NULL, failing_since = NULL
WHERE tenant_id = :tenant_id AND name = :name

-- name: mark_failing
UPDATE destinations SET failing_since = COALESCE(failing_since, :now)
WHERE tenant_id = :tenant_id AND name = :name
RETURNING failing_since

-- name: dead_letter_ids
-- The dead deliveries a DeadLetterQuery selects (NULL parameters filter nothing).
SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.state = 'dead' AND d.tenant_id = :tenant_id AND d.id > :after
  AND (:destination IS NULL OR d.destination = :destination)
  AND (:event_type IS NULL OR e.type = :event_type)
  AND (:since IS NULL OR d.finished_at >= :since)
  AND (:until IS NULL OR d.finished_at < :until)
  AND (:ids IS NULL OR d.delivery_id IN (SELECT value FROM json_each(:ids)))
ORDER BY d.id
LIMIT :limit

-- name: dead_letters
SELECT d.id, d.delivery_id, d.destination, d.state, d.attempts, d.last_error, d.last_status,
       d.run_at, d.created_at, d.updated_at, d.finished_at,
       e.seq, e.tenant_id, e.id, e.source, e.type, e.occurred_at, e.received_at, e.actor_id,
       e.subject, e.data
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.id IN ({dead_letter_ids})
ORDER BY d.id

-- name: replay_dead
-- Same row, same delivery id: receivers dedup a replay like a retry.
UPDATE deliveries
SET state = 'pending', attempts = 0, run_at = :now, lease_owner = NULL, lease_until = NULL,
    updated_at = :now, finished_at = NULL
WHERE id IN ({dead_letter_ids}) AND state = 'dead'

-- name: purge_dead
DELETE FROM deliveries WHERE id IN ({dead_letter_ids}) AND state = 'dead'

-- name: inbox_lease
UPDATE deliveries
SET state = 'running', attempts = attempts + 1, lease_owner = :owner, lease_until = :until,
    updated_at = :now
WHERE id IN (
    SELECT id FROM deliveries
    WHERE tenant_id = :tenant_id AND destination = :destination
      AND ((state IN ('pending', 'failed') AND run_at <= :now)
           OR (state = 'running' AND lease_until < :now))
    ORDER BY id LIMIT :limit
)
RETURNING id, event_seq, delivery_id, destination, attempts

-- name: inbox_ack
UPDATE deliveries
SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, updated_at = :now,
    finished_at = :now, last_error = NULL
WHERE tenant_id = :tenant_id AND destination = :destination
  AND delivery_id IN (SELECT value FROM json_each(:ids))
  AND state IN ('pending', 'failed', 'running')
RETURNING id, attempts

-- Console reads: each walks an existing index.

-- name: destination_backlog
SELECT destination, state, count(*), min(run_at), min(created_at) FROM deliveries
WHERE state IN ('pending', 'failed', 'running') {tenant}
GROUP BY destination, state

-- name: dead_by_destination
SELECT destination, count(*) FROM deliveries WHERE state = 'dead' {tenant} GROUP BY destination

-- name: dead_of_destination
-- One destination's dead letters, counted up to a bound on the dead-letter index.
-- INDEXED BY: with a tenant filter the planner would walk deliveries_dead_tenant, every one
-- of the tenant's dead rows for a destination that has none.
SELECT count(*) FROM (
    SELECT 1 FROM deliveries INDEXED BY deliveries_dead
    WHERE state = 'dead' AND destination = ? {tenant} LIMIT ?
)

-- name: inbox_peek
SELECT d.id, d.delivery_id, d.destination, d.state, d.attempts, d.last_error, d.last_status,
       d.run_at, d.created_at, d.updated_at, d.finished_at,
       e.seq, e.tenant_id, e.id, e.source, e.type, e.occurred_at, e.received_at, e.actor_id,
       e.subject, e.data
FROM deliveries d JOIN events e ON e.seq = d.event_seq
WHERE d.destination = ?2 AND d.state IN ('pending', 'failed', 'running') AND d.tenant_id = ?1
ORDER BY d.run_at, d.id
LIMIT ?3

-- name: key_of_event
-- A `source:id` key the event holds itself (a fingerprint in its row, events_id), then the
-- same key as a row of idempotency_keys from before keys were folded (its primary key),
-- else a key whose expiry falls where this event's would (the expiry index): no scan of a
-- table either way.
SELECT ?3 FROM events
WHERE tenant_id = ?1 AND id = ?4 AND source = ?2 AND fingerprint IS NOT NULL
UNION ALL
SELECT key FROM idempotency_keys
WHERE tenant_id = ?1 AND scope = ?2 AND key = ?3 AND event_id = ?4
UNION ALL
SELECT * FROM (
    SELECT key FROM idempotency_keys
    WHERE expires_at >= ?5 AND expires_at <= ?6 AND tenant_id = ?1 AND event_id = ?4
    LIMIT 1
)
LIMIT 1

-- Migrations (store/migrate.py).

-- name: schema_table
CREATE TABLE IF NOT EXISTS ingestd_schema (version INTEGER NOT NULL)

-- name: schema_versions
SELECT version FROM ingestd_schema

-- name: record_version
INSERT INTO ingestd_schema (version) VALUES (:version)

-- The attempt log (migration 0007).

-- name: insert_attempt
INSERT INTO delivery_attempts (delivery, attempt, started_at, duration, verdict, status_code,
                               error_class, error, headers, body)
VALUES (:delivery, :attempt, :started_at, :duration, :verdict, :status_code, :error_class,
        :error, :headers, :body)

-- name: attempts_of
SELECT delivery, attempt, started_at, duration, verdict, status_code, error_class, error,
       headers, body
FROM delivery_attempts WHERE delivery IN (SELECT value FROM json_each(:ids))
ORDER BY delivery, seq

-- name: delivery_by_id
SELECT id, delivery_id, destination, state, attempts, last_error, last_status, run_at,
       created_at, updated_at, finished_at, event_seq
FROM deliveries WHERE tenant_id = :tenant_id AND delivery_id = :delivery_id

-- name: event_by_seq
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data, trace
FROM events WHERE seq = :seq

-- name: prune_dead_attempts
DELETE FROM delivery_attempts
WHERE delivery IN (SELECT id FROM deliveries WHERE state = 'dead' AND updated_at < :cutoff)

-- name: prune_event_attempts
DELETE FROM delivery_attempts WHERE delivery IN (
    SELECT id FROM deliveries WHERE event_seq IN (SELECT value FROM json_each(:seqs))
)

-- name: purge_dead_attempts
-- The attempts of what purge_dead deletes (same parameters), deleted first.
DELETE FROM delivery_attempts
WHERE delivery IN (
    SELECT d.id FROM deliveries d JOIN events e ON e.seq = d.event_seq
    WHERE d.state = 'dead' AND d.tenant_id = :tenant_id AND d.id > :after
      AND (:destination IS NULL OR d.destination = :destination)
      AND (:event_type IS NULL OR e.type = :event_type)
      AND (:since IS NULL OR d.finished_at >= :since)
      AND (:until IS NULL OR d.finished_at < :until)
      AND (:ids IS NULL OR d.delivery_id IN (SELECT value FROM json_each(:ids)))
    ORDER BY d.id LIMIT :limit
)

-- API keys (migration 0008).

-- name: insert_api_key
INSERT INTO api_keys (id, prefix, digest, tenant_id, scopes, source, rate, burst, name,
                      created_at, expires_at, revoked_at, last_used_at)
VALUES (:id, :prefix, :digest, :tenant_id, :scopes, :source, :rate, :burst, :name,
        :created_at, :expires_at, :revoked_at, :last_used_at)

-- name: api_keys
SELECT id, prefix, digest, tenant_id, scopes, source, rate, burst, name, created_at,
       expires_at, revoked_at, last_used_at
FROM api_keys WHERE (:tenant_id IS NULL OR tenant_id = :tenant_id) ORDER BY created_at, id

-- name: revoke_api_key
UPDATE api_keys SET revoked_at = :now
WHERE id = :id AND (:tenant_id IS NULL OR tenant_id = :tenant_id) AND revoked_at IS NULL

-- name: touch_api_key
UPDATE api_keys SET last_used_at = max(coalesce(last_used_at, 0), :at) WHERE id = :id

-- name: api_key_version
SELECT version FROM api_key_catalog WHERE id = 1

-- name: bump_api_keys
UPDATE api_key_catalog SET version = version + 1 WHERE id = 1
