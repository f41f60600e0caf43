-- The console's dead-letter reads by tenant in delivery order (list, and counting up to a
-- bound before a replay or purge) walk this instead of every dead row's heap tuple. Partial:
-- only a delivery that dies, or leaves the dead-letter queue, writes to it.
CREATE INDEX deliveries_dead_tenant ON deliveries (tenant_id, id) WHERE state = 'dead';
