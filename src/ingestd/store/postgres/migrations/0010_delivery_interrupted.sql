-- Leases that ran out without an outcome (issue 14 item 3): a handler whose attempt kills
-- its process twice is dead-lettered instead of crash-looping.
ALTER TABLE deliveries ADD COLUMN interrupted integer NOT NULL DEFAULT 0;
