-- A tenant's dead letters of one destination, in delivery order: the console counts them
-- (up to a bound) before a replay or purge from the index alone. Partial, like 0011.
CREATE INDEX deliveries_dead_destination ON deliveries (tenant_id, destination, id)
    WHERE state = 'dead';
