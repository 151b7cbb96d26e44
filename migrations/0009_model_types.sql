-- Types the Rust model reads and writes whole, so that a record shape is written once
-- (src/model/): a device's platform as a real enum, a GPS fix as one composite value (uploads
-- bind an array of them; exports read them back), and a group member's last location.

-- Platforms a device may declare. A new one is `ALTER TYPE platform ADD VALUE '...'`.
CREATE TYPE platform AS ENUM ('android', 'ios');
ALTER TABLE devices DROP CONSTRAINT chk_devices_platform;
ALTER TABLE devices ALTER COLUMN platform DROP DEFAULT;
-- The listing view and the updated_at trigger name the column; both are defined again.
DROP VIEW devices_with_last_location;
DROP TRIGGER trg_devices_updated_at ON devices;
ALTER TABLE devices ALTER COLUMN platform TYPE platform USING platform::platform;
ALTER TABLE devices ALTER COLUMN platform SET DEFAULT 'android';
CREATE TRIGGER trg_devices_updated_at
    BEFORE UPDATE OF display_name, group_id, platform, fcm_token, active ON devices
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();

-- One GPS fix as the phone reported it: the columns of `locations` that come from the phone,
-- in this order (model::Fix). A column added to `locations` for a fix is added here too.
-- Text fields are TEXT (what clients bind); the table's VARCHAR(50) and CHECKs still apply.
CREATE TYPE fix AS (
    captured_at    TIMESTAMPTZ,
    latitude       DOUBLE PRECISION,
    longitude      DOUBLE PRECISION,
    accuracy       REAL,
    altitude       DOUBLE PRECISION,
    bearing        REAL,
    speed          REAL,
    provider       TEXT,
    battery_level  SMALLINT,
    network_type   TEXT
);

-- Where a device last was, as group listings show it (model::LastLocation).
CREATE TYPE last_location AS (
    latitude     DOUBLE PRECISION,
    longitude    DOUBLE PRECISION,
    captured_at  TIMESTAMPTZ,
    accuracy     DOUBLE PRECISION
);

-- Every device with its newest location (NULL when it has none). The subquery is one probe of
-- idx_locations_device_captured (device_id, captured_at DESC) per device, never a scan.
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
    (SELECT ROW(loc.latitude, loc.longitude, loc.captured_at, loc.accuracy::float8)::last_location
     FROM locations loc
     WHERE loc.device_id = d.device_id
     ORDER BY loc.captured_at DESC
     LIMIT 1) AS last_location
FROM devices d;

-- Idempotency records are written in one statement with the upload they answer (key claim,
-- rows and answer together), so a record always holds its answer: the "in progress" state
-- (NULL status and body) of the first design no longer exists.
-- A claim left without an answer by that first design could only be an abandoned one.
DELETE FROM idempotency_keys WHERE response_status IS NULL OR response_body IS NULL;
ALTER TABLE idempotency_keys DROP CONSTRAINT chk_idempotency_keys_response;
ALTER TABLE idempotency_keys ALTER COLUMN response_status SET NOT NULL;
ALTER TABLE idempotency_keys ALTER COLUMN response_body SET NOT NULL;
COMMENT ON TABLE idempotency_keys IS
    'The answer to an upload with an Idempotency-Key, replayed for 24 h to a retry by the same API key';
