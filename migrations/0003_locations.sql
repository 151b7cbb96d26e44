-- Locations: append-only GPS fixes. Every range the API validates is also a named CHECK here.
CREATE TABLE locations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY,
    device_id      UUID             NOT NULL,
    latitude       DOUBLE PRECISION NOT NULL,
    longitude      DOUBLE PRECISION NOT NULL,
    accuracy       REAL             NOT NULL,
    altitude       DOUBLE PRECISION,
    bearing        REAL,
    speed          REAL,
    provider       VARCHAR(50),
    battery_level  SMALLINT,
    network_type   VARCHAR(50),
    captured_at    TIMESTAMPTZ      NOT NULL,
    created_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    CONSTRAINT pk_locations PRIMARY KEY (id),
    CONSTRAINT fk_locations_device FOREIGN KEY (device_id)
        REFERENCES devices (device_id) ON DELETE CASCADE,
    -- BETWEEN also rejects NaN (NaN sorts above every number in PostgreSQL).
    CONSTRAINT chk_latitude CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT chk_longitude CHECK (longitude BETWEEN -180 AND 180),
    CONSTRAINT chk_accuracy CHECK (accuracy >= 0 AND accuracy < 'Infinity'::real),
    CONSTRAINT chk_altitude CHECK (altitude IS NULL OR altitude BETWEEN -1000000 AND 1000000),
    CONSTRAINT chk_bearing CHECK (bearing IS NULL OR bearing BETWEEN 0 AND 360),
    CONSTRAINT chk_speed CHECK (speed IS NULL OR (speed >= 0 AND speed < 'Infinity'::real)),
    CONSTRAINT chk_battery CHECK (battery_level IS NULL OR battery_level BETWEEN 0 AND 100),
    CONSTRAINT chk_provider CHECK (provider IS NULL OR char_length(provider) BETWEEN 1 AND 50),
    CONSTRAINT chk_network_type
        CHECK (network_type IS NULL OR char_length(network_type) BETWEEN 1 AND 50)
);

-- Serves "last location of each device" (LATERAL ... ORDER BY captured_at DESC LIMIT 1),
-- per-device history and the foreign key's cascade. architecture.md's second, partial
-- "recent" index (WHERE captured_at > NOW() - 24h) cannot exist: PostgreSQL only accepts
-- IMMUTABLE expressions in index predicates, and this index already answers those queries.
CREATE INDEX idx_locations_device_captured ON locations (device_id, captured_at DESC);
-- Serves the retention job, which deletes by insertion time.
CREATE INDEX idx_locations_created_at ON locations (created_at);
