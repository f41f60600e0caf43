-- Destinations as stored: the TOML file seeds them, the admin API changes them, every
-- process reloads them when destination_catalog.version moves (docs/store-protocol-additions.md).
CREATE TABLE destinations (
    tenant_id       text COLLATE "C" NOT NULL,
    name            text COLLATE "C" NOT NULL,
    config          jsonb NOT NULL,
    seed            jsonb,
    enabled         boolean NOT NULL DEFAULT true,
    disabled_reason text,
    breaker_state   text NOT NULL DEFAULT 'closed'
                    CHECK (breaker_state IN ('closed', 'open', 'half_open')),
    breaker_until   double precision,
    failing_since   double precision,
    created_at      double precision NOT NULL,
    updated_at      double precision NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
CREATE TABLE destination_catalog (
    id      integer PRIMARY KEY CHECK (id = 1),
    version bigint NOT NULL
);
INSERT INTO destination_catalog (id, version) VALUES (1, 0);
CREATE INDEX deliveries_delivery_id ON deliveries (delivery_id);
CREATE INDEX deliveries_inbox ON deliveries (destination, id)
    WHERE state IN ('pending', 'failed', 'running');
