-- Seeds a migrated Phone Manager database for the load tests, set-based (no row-by-row client
-- round trips). psql variables (run.sh passes them): groups, per_group, locations, days.
--
-- Devices are deterministic so that any tool can name them without asking the database:
--   device n (1 .. groups*per_group): device_id = md5('device-' || n)::uuid,
--   group_id = 'g-' || ((n - 1) / per_group + 1), display_name = 'Load device ' || n.
-- All are active Android phones; every group holds per_group of them (below the limit of 20,
-- so re-registration never trips it). Locations are spread evenly over the devices and over
-- the last :days days (inside the API's 7-day window), newest last; last_seen_at is each
-- device's newest fix.
\set ON_ERROR_STOP on

SELECT setseed(0.42) \g /dev/null

INSERT INTO devices (device_id, display_name, group_id, platform, active, created_at)
SELECT md5('device-' || n)::uuid,
       'Load device ' || n,
       'g-' || ((n - 1) / :per_group + 1),
       'android',
       true,
       now() - interval '30 days'
FROM generate_series(1, :groups * :per_group) AS n;

-- An install in its steady state: migration 0013 made the table that existed then the legacy
-- partition (MINVALUE to the day after the migration), which retention drops once its days
-- expire; here it is empty, so it goes now, and every seeded day gets its own partition (with
-- the week ahead, as the service creates them), as on an install older than the retention period.
-- (Skipped on a schema before migration 0013, so older binaries can be measured alike.)
SELECT to_regproc('create_locations_partition') IS NOT NULL AS partitioned \gset
\if :partitioned
DO $$
BEGIN
    IF to_regclass('locations_legacy') IS NOT NULL AND NOT EXISTS (SELECT FROM locations_legacy) THEN
        ALTER TABLE locations DETACH PARTITION locations_legacy;
        DROP TABLE locations_legacy;
    END IF;
END;
$$;
SELECT create_locations_partition((now() AT TIME ZONE 'UTC')::date + n)
FROM generate_series(-:days - 1, 7) AS n \g /dev/null
\endif

-- Row i belongs to device (i % devices) + 1 and is that device's k-th fix, k = i / devices;
-- fix k of K sits in slice k of the :days-day window (older first), at a random point of it.
INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at, created_at)
SELECT md5('device-' || (i % d.devices + 1))::uuid,
       random() * 120 - 60,
       random() * 340 - 170,
       (3 + random() * 47)::real,
       ts,
       ts
FROM (SELECT :groups * :per_group AS devices,
             ceil(:locations::numeric / (:groups * :per_group)) AS per_device) AS d,
     generate_series(0, :locations - 1) AS i,
     LATERAL (SELECT now() - interval '1 day' * :days
                     * (1 - ((i / d.devices) + random()) / d.per_device) AS ts) AS t;

UPDATE devices d
SET last_seen_at = m.newest
FROM (SELECT device_id, max(captured_at) AS newest FROM locations GROUP BY device_id) AS m
WHERE m.device_id = d.device_id;

REFRESH MATERIALIZED VIEW group_member_counts;
VACUUM (ANALYZE) devices;
VACUUM (ANALYZE) locations;
