-- When a destination was disabled (410, disable_after, an operator, the config file), shown by
-- GET /destinations/{name}; cleared when it is enabled again.
ALTER TABLE destinations ADD COLUMN disabled_at double precision;
