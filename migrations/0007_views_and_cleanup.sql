-- Every device with its newest location. The LATERAL subquery is one index probe per device
-- on idx_locations_device_captured (device_id, captured_at DESC) ... LIMIT 1, never a scan.
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
    l.latitude    AS last_latitude,
    l.longitude   AS last_longitude,
    l.accuracy    AS last_accuracy,
    l.captured_at AS last_captured_at
FROM devices d
LEFT JOIN LATERAL (
    SELECT loc.latitude, loc.longitude, loc.accuracy, loc.captured_at
    FROM locations loc
    WHERE loc.device_id = d.device_id
    ORDER BY loc.captured_at DESC
    LIMIT 1
) l ON true;

-- Group statistics for the admin API, refreshed by a job (REFRESH ... CONCURRENTLY needs the
-- unique index below).
CREATE MATERIALIZED VIEW group_member_counts AS
SELECT
    group_id,
    COUNT(*) FILTER (WHERE active) AS active_count,
    COUNT(*)                       AS total_count,
    MAX(last_seen_at)              AS last_activity
FROM devices
GROUP BY group_id;

CREATE UNIQUE INDEX idx_group_member_counts ON group_member_counts (group_id);

-- Deletes at most batch_size locations older than retention_days (by created_at) and returns
-- how many it deleted. One call is one short transaction: the retention job calls it until it
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
        WHERE created_at < now() - make_interval(days => retention_days)
        ORDER BY created_at
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    )
    DELETE FROM locations l USING doomed WHERE l.id = doomed.id;
    GET DIAGNOSTICS deleted = ROW_COUNT;
    RETURN deleted;
END;
$$;
