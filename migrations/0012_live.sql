-- Live streams (GET /api/v1/groups/{group_id}/stream): changes to a group's membership are
-- published on the channel `pm_live` when they commit, whichever code path made them
-- (registration, deactivation, erasure, reactivation, a move to another group, an operator's
-- SQL). Stored fixes are published by the replica that stored them, once committed
-- (infra::publish).
-- Every replica listens on one connection and fans the notices out to its own streams.

-- Member events are numbered across the whole database, so a stream's `Last-Event-ID` means
-- the same on every replica.
CREATE SEQUENCE live_member_event_seq AS BIGINT;

-- One notice: {"member": {"id", "group_id", "change", "device_id", "member"}}. `member` (the device
-- as the group listing shows it) comes with `joined` and `updated`; `left` and `deactivated`
-- name the device only. The payload stays far below NOTIFY's 8000-byte limit: a display name
-- is at most 50 characters and a group id 50.
CREATE FUNCTION live_member_notice(change TEXT, device devices) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    member JSON;
BEGIN
    IF change IN ('joined', 'updated') THEN
        SELECT json_build_object(
                   'device_id', v.device_id,
                   'display_name', v.display_name,
                   'platform', v.platform,
                   'last_seen_at', v.last_seen_at,
                   'last_location', CASE WHEN v.last_location IS NULL THEN NULL ELSE json_build_object(
                       'latitude', (v.last_location).latitude,
                       'longitude', (v.last_location).longitude,
                       'timestamp', (v.last_location).captured_at,
                       'accuracy', (v.last_location).accuracy) END)
        INTO member
        FROM (SELECT device.device_id, device.display_name, device.platform, device.last_seen_at,
                     (SELECT ROW(loc.latitude, loc.longitude, loc.captured_at, loc.accuracy)::last_location
                      FROM locations loc
                      WHERE loc.device_id = device.device_id
                      ORDER BY loc.captured_at DESC
                      LIMIT 1) AS last_location) v;
    END IF;
    PERFORM pg_notify('pm_live', json_build_object('member', json_build_object(
        'id', nextval('live_member_event_seq'),
        'group_id', device.group_id,
        'change', change,
        'device_id', device.device_id,
        'member', member))::text);
END;
$$;

-- What a row change means to the groups that see it.
CREATE FUNCTION live_member_changed() RETURNS TRIGGER
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        IF NEW.active THEN
            PERFORM live_member_notice('joined', NEW);
        END IF;
    ELSIF TG_OP = 'DELETE' THEN
        IF OLD.active THEN
            PERFORM live_member_notice('left', OLD);
        END IF;
    ELSIF OLD.active AND NOT NEW.active THEN
        -- Deactivated where it was (a move and a deactivation at once is seen as both).
        PERFORM live_member_notice('deactivated', OLD);
    ELSIF OLD.active AND OLD.group_id <> NEW.group_id THEN
        PERFORM live_member_notice('left', OLD);
        PERFORM live_member_notice('joined', NEW);
    ELSIF NEW.active AND NOT OLD.active THEN
        PERFORM live_member_notice('joined', NEW);
    ELSIF NEW.active THEN
        PERFORM live_member_notice('updated', NEW);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER trg_devices_live_insert
    AFTER INSERT ON devices
    FOR EACH ROW WHEN (NEW.active)
    EXECUTE FUNCTION live_member_changed();

-- Only changes a member can see: the frequent last_seen_at and token updates fire nothing.
CREATE TRIGGER trg_devices_live_update
    AFTER UPDATE OF active, group_id, display_name, platform ON devices
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active
                       OR OLD.group_id IS DISTINCT FROM NEW.group_id
                       OR OLD.display_name IS DISTINCT FROM NEW.display_name
                       OR OLD.platform IS DISTINCT FROM NEW.platform)
    EXECUTE FUNCTION live_member_changed();

CREATE TRIGGER trg_devices_live_delete
    AFTER DELETE ON devices
    FOR EACH ROW WHEN (OLD.active)
    EXECUTE FUNCTION live_member_changed();
