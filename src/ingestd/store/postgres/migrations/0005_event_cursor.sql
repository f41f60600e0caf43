-- Paging over events that never skips one (GET /events, issue 4).
-- Sequence numbers are taken before commit, so with several API processes a smaller seq can
-- become visible after a larger one: a cursor on seq alone would step over it. Each event row
-- now records the transaction that wrote it; readers page in (tx, seq) order over settled
-- rows only (tx below the oldest transaction still running), so whatever commits later sorts
-- after every cursor already handed out.
ALTER TABLE events ADD COLUMN tx xid8 NOT NULL DEFAULT pg_current_xact_id();
DROP INDEX events_tenant;
DROP INDEX events_source;
DROP INDEX events_type;
CREATE INDEX events_tenant ON events (tenant_id, tx, seq);
CREATE INDEX events_source ON events (tenant_id, source, tx, seq);
CREATE INDEX events_type ON events (tenant_id, type, tx, seq);
