//! Devices and the groups they form.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Platforms a device may declare (the wire value is the lowercase name).
// Omitted on first registration means `android`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "platform", rename_all = "lowercase")]
pub enum Platform {
    Android,
    Ios,
}

impl Platform {
    pub const ALL: [Platform; 2] = [Platform::Android, Platform::Ios];

    /// The wire name (`android`, `ios`).
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Android => "android",
            Platform::Ios => "ios",
        }
    }

    /// The platform with this wire name; case matters, as on the wire.
    pub fn parse(name: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|platform| platform.as_str() == name)
    }
}

// A device as stored: everything the service keeps about it (the data export shows all of
// it; other answers show parts).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = ExportedDeviceResponse)]
pub struct Device {
    pub device_id: Uuid,
    pub display_name: String,
    pub group_id: String,
    pub platform: Platform,
    pub fcm_token: Option<String>,
    pub active: bool,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Where a device belongs, and whether it counts toward its group's limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub group_id: String,
    pub active: bool,
    /// Whether the device has a device token (devices registered before tokens existed do not).
    pub has_token: bool,
}

/// A registration that passed validation: create the device, or update it.
#[derive(Debug, Clone)]
pub struct Registration {
    pub device_id: Uuid,
    /// Trimmed.
    pub display_name: String,
    pub group_id: String,
    /// `None` keeps the stored platform (or `android` for a new device).
    pub platform: Option<Platform>,
    /// `None` keeps the stored token.
    pub fcm_token: Option<String>,
}

/// An invitation into a group: a short code a member reads out to the newcomer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = InviteResponse, example = json!({
    "code": "7KQ-M4D-XR9", "group_id": "family-group-123", "max_uses": 1,
    "expires_at": "2026-11-22T10:30:00Z"
}))]
pub struct Invite {
    /// Nine characters of `0-9 A-Z` without `I L O U`, shown in threes (`7KQ-M4D-XR9`); when
    /// joining, case, dashes and spaces do not matter. Shown this once: only its hash is stored.
    pub code: String,
    pub group_id: String,
    /// How many devices may join with it.
    pub max_uses: i32,
    /// When it stops working (RFC 3339, UTC).
    pub expires_at: DateTime<Utc>,
}

// An active member of a group as listings show it: the device and its newest fix.
/// A group's active members, as the group listing answers and a live stream's `snapshot`
/// sends.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = DeviceListResponse, example = json!({"devices": [{
    "device_id": "550e8400-e29b-41d4-a716-446655440000",
    "display_name": "Martin's Phone",
    "platform": "android",
    "last_seen_at": "2026-11-21T10:31:12Z",
    "last_location": {"latitude": 48.1374, "longitude": 11.5755,
                      "timestamp": "2026-11-21T10:30:00Z", "accuracy": 12.5}
}]}))]
pub struct GroupListing {
    /// Active devices of the group, sorted by display name.
    pub devices: Vec<GroupMember>,
}

// Deserialize: live notices carry members in this shape (migration 0012).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = GroupMemberResponse)]
pub struct GroupMember {
    pub device_id: Uuid,
    pub display_name: String,
    pub platform: Platform,
    /// When the device last registered or uploaded (precise to 30 s); null if never.
    pub last_seen_at: Option<DateTime<Utc>>,
    /// The newest fix by capture time; null when the device has none.
    pub last_location: Option<LastLocation>,
}

/// Where a device last was.
// The PostgreSQL composite type `last_location` (migration 0009).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "last_location")]
#[schema(as = LastLocationResponse)]
pub struct LastLocation {
    pub latitude: f64,
    pub longitude: f64,
    /// When the fix was taken (RFC 3339, UTC).
    #[serde(rename = "timestamp")]
    pub captured_at: DateTime<Utc>,
    /// Horizontal accuracy in metres.
    pub accuracy: f64,
}

// System totals for the admin dashboard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = StatsResponse, example = json!({
    "devices": 10000, "active_devices": 8572, "inactive_devices": 1428,
    "groups": 1000, "groups_with_active_devices": 998,
    "locations_estimate": 1000000,
    "oldest_location_at": "2026-10-12T08:00:00Z", "newest_location_at": "2026-11-21T10:30:00Z"
}))]
pub struct SystemStats {
    pub devices: i64,
    pub active_devices: i64,
    pub inactive_devices: i64,
    /// Groups as of the last refresh of the `group_member_counts` view (hourly).
    pub groups: i64,
    pub groups_with_active_devices: i64,
    /// PostgreSQL's estimate of the number of stored locations (exact counts of large tables
    /// are expensive); refreshed by autovacuum.
    pub locations_estimate: i64,
    /// When the oldest stored location was received; null when there are none.
    pub oldest_location_at: Option<DateTime<Utc>>,
    pub newest_location_at: Option<DateTime<Utc>>,
}

/// Everything stored about a device: the document a data export streams. It is written piece
/// by piece (the locations are never all in memory), each piece serialized from the types
/// named here, so the stream and this schema cannot disagree.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(
    as = DataExportResponse,
    description = "Everything stored about a device (the shape of the streamed export)."
)]
pub struct DataExport {
    pub exported_at: DateTime<Utc>,
    pub device: Device,
    /// Every stored location, oldest capture first.
    pub locations: Vec<super::fix::StoredFix>,
    /// How many locations the export holds.
    pub location_count: u64,
}
