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
INSERT INTO events (tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING

-- name: insert_delivery
INSERT INTO deliveries (tenant_id, event_seq, delivery_id, destination, run_at, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?)

-- name: rescue
UPDATE deliveries SET state = CASE WHEN attempts > 0 THEN 'failed' ELSE 'pending' END,
    lease_owner = NULL, lease_until = NULL, updated_at = ?1
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
RETURNING id, event_seq, delivery_id, destination, attempts

-- name: job_events
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data
FROM events WHERE seq IN (SELECT value FROM json_each(?))

-- name: extend
UPDATE deliveries SET lease_until = ?1
WHERE lease_owner = ?2 AND state = 'running' AND id IN (SELECT value FROM json_each(?3))

-- name: finish_succeeded
UPDATE deliveries
SET state = 'succeeded', lease_owner = NULL, lease_until = NULL, updated_at = ?1, finished_at = ?1,
    last_error = NULL, last_status = ?2
WHERE id = ?3 AND lease_owner = ?4 AND state = 'running'

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
SELECT seq, tenant_id, id, source, type, occurred_at, received_at, actor_id, subject, data
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

-- name: prune_dead
DELETE FROM deliveries WHERE state = 'dead' AND updated_at < ?

-- name: prunable_events
SELECT seq FROM events
WHERE received_at < ?1
  AND NOT EXISTS (
      SELECT 1 FROM deliveries d WHERE d.event_seq = events.seq AND d.state <> 'succeeded'
  )
LIMIT ?2

-- name: prune_event_deliveries
DELETE FROM deliveries WHERE event_seq IN (SELECT value FROM json_each(?))

-- name: prune_events
DELETE FROM events WHERE seq IN (SELECT value FROM json_each(?))

-- name: claim_ids
UPDATE deliveries
SET state = 'running', attempts = attempts + 1, lease_owner = ?1, lease_until = ?2, updated_at = ?3
WHERE id IN (SELECT value FROM json_each(?4)) AND state IN ('pending', 'failed')
RETURNING id, event_seq, delivery_id, destination, attempts
