-- `locations` partitioned by capture day (UTC), so that retention drops whole days instead of
-- deleting them row by row (docs/decisions.md, 38).
--
-- No row is copied: today's table becomes the first partition, `locations_legacy`, covering
-- everything captured before the start of tomorrow (UTC) at migration time; new days get
-- partitions of their own, `locations_pYYYYMMDD`, created ahead by the service (start-up and
-- the `partition_maintenance` job, through create_locations_partition below) and on demand
-- when an upload names a day that has none. The migration holds the table's lock throughout
-- (one transaction); its only pass over the rows is the CHECK below, a read, so that ATTACH
-- can skip its own scan.
--
-- What the new table keeps: the columns and CHECKs, the foreign key to devices (ON DELETE
-- CASCADE: erasure and purges), one row per device and instant (uq_locations_device_captured,
-- legal because it contains the partition key), the capture-time index (retention), and the
-- id sequence (ids keep growing: live event ids and cursors compare them).
-- What it drops: the primary key on id. A partitioned table's primary key must contain the
-- partition key; (id, captured_at) would be an index that no query reads, built over the whole
-- legacy table here and maintained on every insert. Ids are unique anyway: only the identity
-- column's sequence gives them (GENERATED ALWAYS refuses a supplied one).

-- 1. The old table steps aside, with its indexes and sequence renamed out of the new names'
-- way (the index names are those PostgreSQL gives a new partition's indexes).
DROP VIEW devices_with_last_location;
ALTER TABLE locations RENAME TO locations_legacy;
ALTER INDEX uq_locations_device_captured RENAME TO locations_legacy_device_id_captured_at_idx;
ALTER INDEX idx_locations_captured_at RENAME TO locations_legacy_captured_at_idx;
ALTER TABLE locations_legacy DROP CONSTRAINT pk_locations;

-- 2. The partitioned table: the same columns, in the same order, and the same constraints.
CREATE TABLE locations (
    id             BIGINT GENERATED ALWAYS AS IDENTITY,
    device_id      UUID             NOT NULL,
    latitude       DOUBLE PRECISION NOT NULL,
    longitude      DOUBLE PRECISION NOT NULL,
    accuracy       DOUBLE PRECISION NOT NULL,
    altitude       DOUBLE PRECISION,
    bearing        DOUBLE PRECISION,
    speed          DOUBLE PRECISION,
    provider       VARCHAR(50),
    battery_level  SMALLINT,
    network_type   VARCHAR(50),
    captured_at    TIMESTAMPTZ      NOT NULL,
    created_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    CONSTRAINT fk_locations_device FOREIGN KEY (device_id)
        REFERENCES devices (device_id) ON DELETE CASCADE,
    CONSTRAINT chk_latitude CHECK (latitude BETWEEN -90 AND 90),
    CONSTRAINT chk_longitude CHECK (longitude BETWEEN -180 AND 180),
    CONSTRAINT chk_accuracy CHECK (accuracy >= 0 AND accuracy <= 3.4e38),
    CONSTRAINT chk_altitude CHECK (altitude IS NULL OR altitude BETWEEN -1000000 AND 1000000),
    CONSTRAINT chk_bearing CHECK (bearing IS NULL OR bearing BETWEEN 0 AND 360),
    CONSTRAINT chk_speed CHECK (speed IS NULL OR (speed >= 0 AND speed <= 3.4e38)),
    CONSTRAINT chk_battery CHECK (battery_level IS NULL OR battery_level BETWEEN 0 AND 100),
    CONSTRAINT chk_provider CHECK (provider IS NULL OR char_length(provider) BETWEEN 1 AND 50),
    CONSTRAINT chk_network_type
        CHECK (network_type IS NULL OR char_length(network_type) BETWEEN 1 AND 50)
) PARTITION BY RANGE (captured_at);

-- One stored fix per device and instant (ON CONFLICT (device_id, captured_at) in uploads); also
-- serves a device's newest fix and its history in either order, and the foreign key's cascade.
CREATE UNIQUE INDEX uq_locations_device_captured ON locations (device_id, captured_at);
-- Serves the batched retention DELETE of the partly expired partition, oldest first.
CREATE INDEX idx_locations_captured_at ON locations (captured_at);

-- 3. The sequence carries on where the old one stood. The legacy table loses its identity (a
-- partition takes its ids from the parent; PostgreSQL 17 refuses to attach a table with an
-- identity of its own), which drops its sequence: read it first.
DO $$
DECLARE
    old_sequence TEXT := pg_get_serial_sequence('locations_legacy', 'id');
    new_sequence TEXT := pg_get_serial_sequence('locations', 'id');
    last BIGINT;
    called BOOLEAN;
BEGIN
    EXECUTE format('SELECT last_value, is_called FROM %s', old_sequence) INTO last, called;
    ALTER TABLE locations_legacy ALTER COLUMN id DROP IDENTITY;
    EXECUTE format('ALTER SEQUENCE %s RENAME TO locations_id_seq', new_sequence);
    PERFORM setval('locations_id_seq', last, called);
END;
$$;

-- 4. The legacy table becomes the partition of everything captured before tomorrow. The CHECK
-- proves the partition constraint, so ATTACH does not scan again; ATTACH finds the legacy
-- table's indexes, CHECKs and foreign key equal to the parent's and adopts them (no rebuild,
-- no revalidation). The CHECK then goes: the partition bound says the same.
DO $$
DECLARE
    bound TIMESTAMPTZ := (date_trunc('day', now() AT TIME ZONE 'UTC') + INTERVAL '1 day') AT TIME ZONE 'UTC';
BEGIN
    EXECUTE format('ALTER TABLE locations_legacy ADD CONSTRAINT chk_locations_legacy_bound CHECK (captured_at < %L)', bound);
    EXECUTE format('ALTER TABLE locations ATTACH PARTITION locations_legacy FOR VALUES FROM (MINVALUE) TO (%L)', bound);
    ALTER TABLE locations_legacy DROP CONSTRAINT chk_locations_legacy_bound;
END;
$$;

-- 5. The partition of one UTC day, `locations_pYYYYMMDD`; true when this call created it, false
-- when it exists or another partition (the legacy one) already covers the day. Safe to call
-- from several replicas at once: a creator that loses the race on the catalog (duplicate table,
-- or the unique index of pg_type) finds the partition made. Creating a partition locks the
-- parent table; lock_timeout keeps a caller from queueing uploads behind a long export: it
-- fails instead and is retried (by the next job run, or the next upload).
CREATE FUNCTION create_locations_partition(day DATE) RETURNS BOOLEAN
LANGUAGE plpgsql
SET lock_timeout = '2s'
AS $$
DECLARE
    name TEXT := 'locations_p' || to_char(day, 'YYYYMMDD');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF locations FOR VALUES FROM (%L) TO (%L)',
                   name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
EXCEPTION
    WHEN duplicate_table OR unique_violation THEN
        RETURN false;
    WHEN invalid_object_definition THEN
        -- "would overlap partition": the legacy partition holds that day.
        IF SQLERRM LIKE '%overlap%' THEN
            RETURN false;
        END IF;
        RAISE;
END;
$$;

-- Today (if the legacy partition does not hold it: it does, at migration time) and the next
-- week; the service keeps the window moving (jobs.location_partitions_ahead_days).
SELECT create_locations_partition((now() AT TIME ZONE 'UTC')::date + n) FROM generate_series(0, 7) AS n;

-- 6. Retention's batched DELETE, for the one partition that is partly expired (whole expired
-- partitions are dropped by the job before it). Rows are found and deleted by the unique key
-- (ids are no longer indexed) and the cutoff is repeated on the DELETE, so that both prune to
-- the expired partitions.
CREATE OR REPLACE FUNCTION cleanup_old_locations(retention_days INTEGER, batch_size INTEGER DEFAULT 10000)
RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    deleted BIGINT;
    cutoff TIMESTAMPTZ;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1, got %', retention_days;
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be >= 1, got %', batch_size;
    END IF;
    cutoff := now() - make_interval(days => retention_days);
    WITH doomed AS (
        SELECT device_id, captured_at FROM locations
        WHERE captured_at < cutoff
        ORDER BY captured_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM locations l USING doomed
    WHERE l.device_id = doomed.device_id AND l.captured_at = doomed.captured_at
      AND l.captured_at < cutoff;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;

-- 7. The listing view, as in 0010: views name a table by identity, so the old one followed the
-- rename to locations_legacy.
CREATE VIEW devices_with_last_location AS
SELECT
    d.id,
    d.device_id,
    d.display_name,
    d.group_id,
    d.platform,
    d.active,
    d.last_seen_at,
    d.created_at,
    d.updated_at,
    (SELECT ROW(loc.latitude, loc.longitude, loc.captured_at, loc.accuracy)::last_location
     FROM locations loc
     WHERE loc.device_id = d.device_id
     ORDER BY loc.captured_at DESC
     LIMIT 1) AS last_location
FROM devices d;
