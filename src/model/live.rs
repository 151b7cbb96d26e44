//! Live streams of a group (`GET /api/v1/groups/{group_id}/stream`): the events a stream sends,
//! and the notices replicas receive them as.
//!
//! A notice is what PostgreSQL delivers on the channel `pm_live` when a transaction commits: a
//! batch of stored fixes (sent by the replica that stored them, once they are committed) or a
//! membership change (from the trigger on `devices`, migration 0012). Both carry the group they concern and an id that is the same
//! on every replica (`L` + the fix's row id, `M` + a sequence), so a client may resume on any.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::device::GroupMember;

/// A fix of a member, pushed once it is stored (committed).
///
/// Events come in the order fixes are stored, not taken: an offline batch brings older fixes
/// after newer ones. A map shows a member at its fix with the newest `timestamp`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = LocationEventResponse, example = json!({
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "latitude": 48.1486, "longitude": 17.1077, "accuracy": 12.5,
    "timestamp": "2026-11-21T10:30:00Z",
    "altitude": 152.0, "bearing": 90.0, "speed": 1.4,
    "provider": "fused", "battery_level": 82, "network_type": "wifi"
}))]
pub struct LocationEvent {
    pub device_id: Uuid,
    /// Degrees, -90 to 90.
    pub latitude: f64,
    /// Degrees, -180 to 180.
    pub longitude: f64,
    /// Horizontal accuracy in metres.
    pub accuracy: f64,
    /// When the fix was taken (RFC 3339, UTC).
    pub timestamp: DateTime<Utc>,
    /// Metres above the WGS 84 ellipsoid.
    pub altitude: Option<f64>,
    /// Degrees clockwise from north, 0 to 360.
    pub bearing: Option<f64>,
    /// Metres per second.
    pub speed: Option<f64>,
    pub provider: Option<String>,
    /// Percent, 0 to 100.
    pub battery_level: Option<i16>,
    pub network_type: Option<String>,
}

/// How a group's membership changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MemberChange {
    /// A device registered into the group, came back to it, or was reactivated.
    Joined,
    /// A member's display name or platform changed.
    Updated,
    /// A member moved to another group, or was erased.
    Left,
    /// A member was deactivated (its locations are kept; it may come back).
    Deactivated,
}

/// A change of the group's membership. `member` (the device as the group listing shows it)
/// comes with `joined` and `updated`; `left` and `deactivated` name the device only: remove it
/// from the map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = MemberEventResponse, example = json!({
    "change": "joined",
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "member": {
        "device_id": "550e8400-e29b-41d4-a716-446655440000",
        "display_name": "Martin's Phone", "platform": "android",
        "last_seen_at": "2026-11-21T10:30:00Z", "last_location": null
    }
}))]
pub struct MemberEvent {
    pub change: MemberChange,
    pub device_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<GroupMember>,
}

/// Why a stream starts over: a `snapshot` follows at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResyncReason {
    /// The client read too slowly and the server dropped events it had not sent yet.
    Lagged,
    /// The server missed events (its notice connection to the database was interrupted).
    Interrupted,
}

/// The stream cannot account for every event since the last one sent: throw away what the
/// map shows and take the `snapshot` that follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ResyncEventResponse, example = json!({"reason": "lagged"}))]
pub struct ResyncEvent {
    pub reason: ResyncReason,
}

/// One notice on the channel `pm_live`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveNotice {
    /// Fixes one upload statement stored.
    Locations(LocationNotices),
    /// One membership change.
    Member(MemberNotice),
    /// Fixes were stored whose notices could not be sent (a publisher that fell behind or lost
    /// its connection): every stream must start over.
    Resync,
}

/// Fixes one statement stored (a part of them: notices stay below NOTIFY's 8000 bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationNotices {
    /// When the statement committed, in microseconds since the epoch (the storing replica's
    /// clock): the start of the fan-out latency.
    pub stored_at: i64,
    pub fixes: Vec<LocationNotice>,
}

/// One stored fix, with the group it is news for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LocationNotice {
    /// The row's id in `locations`.
    pub id: i64,
    pub group_id: String,
    #[serde(flatten)]
    pub event: LocationEvent,
}

/// One membership change, with the group it is news for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberNotice {
    /// From the sequence `live_member_event_seq`.
    pub id: i64,
    pub group_id: String,
    #[serde(flatten)]
    pub event: MemberEvent,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_parse_as_postgresql_writes_them() {
        let fixes = r#"{"locations": {"stored_at": 1764500000123456, "fixes": [{"id": 7, "group_id": "family",
            "device_id": "550e8400-e29b-41d4-a716-446655440000", "timestamp": "2026-11-30T10:00:00.123+00:00",
            "latitude": 48.1, "longitude": 17.1, "accuracy": 5, "altitude": null, "bearing": null,
            "speed": null, "provider": "gps", "battery_level": 80, "network_type": null}]}}"#;
        let LiveNotice::Locations(notices) = serde_json::from_str(fixes).unwrap() else {
            panic!("locations")
        };
        assert_eq!(notices.fixes[0].id, 7);
        assert_eq!(notices.fixes[0].event.accuracy, 5.0);
        assert_eq!(notices.fixes[0].event.timestamp.timestamp_subsec_millis(), 123);

        let member = r#"{"member": {"id": 3, "group_id": "family", "change": "left",
            "device_id": "550e8400-e29b-41d4-a716-446655440000", "member": null}}"#;
        let LiveNotice::Member(notice) = serde_json::from_str(member).unwrap() else { panic!("member") };
        assert_eq!(notice.event.change, MemberChange::Left);
        assert_eq!(serde_json::to_value(&notice.event).unwrap().get("member"), None);

        assert_eq!(serde_json::from_str::<LiveNotice>(r#""resync""#).unwrap(), LiveNotice::Resync);
        let round_trip = serde_json::to_string(&LiveNotice::Locations(notices.clone())).unwrap();
        assert_eq!(serde_json::from_str::<LiveNotice>(&round_trip).unwrap(), LiveNotice::Locations(notices));
    }
}
