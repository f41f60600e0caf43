-- An event whose idempotency key is `source:id` (the client named the id and sent no
-- Idempotency-Key) keeps that key in its own row: the unique (tenant_id, id) index already
-- holds it, and the payload's fingerprint (hex) sits beside it, so acceptance writes one
-- unique B-tree per event instead of three (events_id, the idempotency_keys primary key and
-- its expiry index). The key expires with received_at + the TTL. idempotency_keys keeps
-- explicit and derived keys; rows written there before this migration stay valid until
-- they expire (acceptance still reads them), so nothing is moved.
ALTER TABLE events ADD COLUMN fingerprint TEXT
