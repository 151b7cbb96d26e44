-- Devices: one row per phone, identified by the UUID the phone generates.
-- The CHECK constraints mirror domain validation so the database is the last line of defence.
CREATE TABLE devices (
    id            BIGINT GENERATED ALWAYS AS IDENTITY,
    device_id     UUID        NOT NULL,
    display_name  VARCHAR(50) NOT NULL,
    group_id      VARCHAR(50) NOT NULL,
    platform      VARCHAR(20) NOT NULL DEFAULT 'android',
    fcm_token     TEXT,
    active        BOOLEAN     NOT NULL DEFAULT true,
    last_seen_at  TIMESTAMPTZ,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_devices PRIMARY KEY (id),
    CONSTRAINT uq_devices_device_id UNIQUE (device_id),
    CONSTRAINT chk_devices_display_name
        CHECK (char_length(btrim(display_name)) BETWEEN 2 AND 50),
    CONSTRAINT chk_devices_group_id CHECK (group_id ~ '^[A-Za-z0-9_-]{2,50}$'),
    CONSTRAINT chk_devices_platform CHECK (platform IN ('android', 'ios')),
    CONSTRAINT chk_devices_fcm_token CHECK (fcm_token IS NULL OR char_length(fcm_token) <= 4096)
);

-- The UNIQUE constraint above does idx_devices_device_id's job (lookups by device_id).
-- Group listing and the group-limit count filter on (group_id, active). architecture.md also
-- lists a plain (group_id) index: this one's leading column already serves it, so a second
-- index would only slow writes.
CREATE INDEX idx_devices_active ON devices (group_id, active);
CREATE INDEX idx_devices_fcm_token ON devices (fcm_token) WHERE fcm_token IS NOT NULL;

-- updated_at tracks the registration, not activity: touching last_seen_at alone (every upload)
-- must not move it, so the trigger fires only when registration columns are written.
CREATE TRIGGER trg_devices_updated_at
    BEFORE UPDATE OF display_name, group_id, platform, fcm_token, active ON devices
    FOR EACH ROW EXECUTE FUNCTION set_updated_at();
