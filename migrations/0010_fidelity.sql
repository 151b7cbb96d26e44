-- What a phone sends is stored once, exactly as sent, and kept no longer than promised.

-- 1. Numbers come back as sent. accuracy, bearing and speed were REAL: a client sending a double
-- (iOS reports all three as doubles) got back a value rounded to 7 digits. Every measurement
-- is DOUBLE PRECISION now, like latitude, longitude and altitude.
DROP VIEW devices_with_last_location;
ALTER TABLE locations
    ALTER COLUMN accuracy TYPE DOUBLE PRECISION,
    ALTER COLUMN bearing TYPE DOUBLE PRECISION,
    ALTER COLUMN speed TYPE DOUBLE PRECISION,
    DROP CONSTRAINT chk_accuracy,
    DROP CONSTRAINT chk_speed,
    ADD CONSTRAINT chk_accuracy CHECK (accuracy >= 0 AND accuracy <= 3.4e38),
    ADD CONSTRAINT chk_speed CHECK (speed IS NULL OR (speed >= 0 AND speed <= 3.4e38));
ALTER TYPE fix
    ALTER ATTRIBUTE accuracy TYPE DOUBLE PRECISION,
    ALTER ATTRIBUTE bearing TYPE DOUBLE PRECISION,
    ALTER ATTRIBUTE speed TYPE DOUBLE PRECISION;

-- 2. One stored fix per device and capture instant (the API's timestamps are milliseconds). A
-- phone that retries an upload, or sends its offline buffer again, is acknowledged without a
-- second row. Existing duplicates collapse to the first one stored (the lowest id).
DELETE FROM locations later
USING locations earlier
WHERE later.device_id = earlier.device_id
  AND later.captured_at = earlier.captured_at
  AND later.id > earlier.id;
-- The unique index also serves everything idx_locations_device_captured served (the newest fix
-- of a device, its history in either order, the foreign key's cascade): scanned backwards,
-- (device_id, captured_at) is (device_id, captured_at DESC).
CREATE UNIQUE INDEX uq_locations_device_captured ON locations (device_id, captured_at);
DROP INDEX idx_locations_device_captured;

-- 3. Retention goes by capture time: the promise to users is how long their positions are
-- kept, and a fix uploaded late from an offline phone is no younger for it.
CREATE INDEX idx_locations_captured_at ON locations (captured_at);
DROP INDEX idx_locations_created_at;

-- Deletes at most batch_size locations captured more than retention_days ago and returns how
-- many it deleted. One call is one short transaction: the retention job calls it until it
-- returns less than batch_size, so a large backlog never holds locks or bloats one transaction.
CREATE OR REPLACE FUNCTION cleanup_old_locations(retention_days INTEGER, batch_size INTEGER DEFAULT 10000)
RETURNS BIGINT
LANGUAGE plpgsql AS $$
DECLARE
    deleted BIGINT;
BEGIN
    IF retention_days IS NULL OR retention_days < 1 THEN
        RAISE EXCEPTION 'retention_days must be >= 1, got %', retention_days;
    END IF;
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be >= 1, got %', batch_size;
    END IF;
    WITH doomed AS (
        SELECT id FROM locations
        WHERE captured_at < now() - make_interval(days => retention_days)
        ORDER BY captured_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM locations l USING doomed WHERE l.id = doomed.id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;

-- The listing view, as in 0009 (it reads the columns whose type changed).
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
