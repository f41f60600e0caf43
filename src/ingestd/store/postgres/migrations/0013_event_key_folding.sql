-- An event whose idempotency key is `source:id` (the client named the id and sent no
-- Idempotency-Key) keeps that key in its event_ids row, as SQLite's 0009 keeps it in the
-- event's: the (tenant_id, id) primary key already makes it unique and the payload's
-- fingerprint sits beside it, so acceptance writes neither the idempotency_keys primary key
-- nor its expiry index for such an event. The key expires with the event's received_at +
-- the TTL (read through event_ids.seq; prune finds expired ones by the event_ids_seq and
-- events_received indexes). idempotency_keys keeps explicit and derived keys; rows written
-- there before this migration stay valid until they expire (acceptance still reads them),
-- so nothing is moved. A nullable column without a default: no table rewrite.
ALTER TABLE event_ids ADD COLUMN fingerprint bytea;
