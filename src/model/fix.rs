//! GPS fixes: what a phone reports, what an upload carries, what is stored.

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{RefOr, Schema, schema::ObjectBuilder},
};
use uuid::Uuid;

use super::schema::{flattened, object_of};

/// One GPS fix as the phone reported it, validated: when it was taken (`captured_at`, from the
/// upload's millisecond `timestamp`), where (degrees), how precise (metres), and the optional
/// telemetry that came with it (altitude in metres, bearing in degrees from north, speed in
/// m/s, the location provider, battery percentage, network type).
///
/// The PostgreSQL composite type `fix` has these fields in this order (migration 0009), so a
/// fix travels to and from the database whole: uploads bind an array of them, reads select
/// `ROW(…)::fix`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema, sqlx::Type)]
#[sqlx(type_name = "fix")]
pub struct Fix {
    pub captured_at: DateTime<Utc>,
    pub latitude: f64,
    pub longitude: f64,
    pub accuracy: f64,
    pub altitude: Option<f64>,
    pub bearing: Option<f64>,
    pub speed: Option<f64>,
    pub provider: Option<String>,
    pub battery_level: Option<i16>,
    pub network_type: Option<String>,
}

/// A stored fix: the fix and when the server received it. On the wire (data export) it is one
/// flat object, `created_at` after the fix's fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredFix {
    #[serde(flatten)]
    pub fix: Fix,
    pub created_at: DateTime<Utc>,
}

impl PartialSchema for StoredFix {
    fn schema() -> RefOr<Schema> {
        let received = ObjectBuilder::new()
            .property(
                "created_at",
                ObjectBuilder::new()
                    .schema_type(utoipa::openapi::Type::String)
                    .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                        utoipa::openapi::KnownFormat::DateTime,
                    )))
                    .description(Some("When the server received it.")),
            )
            .required("created_at")
            .build();
        let mut object = flattened(object_of::<Fix>(), received);
        object.description = None;
        Schema::Object(object).into()
    }
}

impl ToSchema for StoredFix {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ExportedLocationResponse")
    }
}

/// The order of a trail, by capture time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Oldest first.
    Asc,
    /// Newest first.
    #[default]
    Desc,
}

/// A device's fixes as one upload carries them (one for a single upload, 1–50 for a batch),
/// as the server understood them: its JSON is the request's fingerprint for `Idempotency-Key`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Upload {
    pub device_id: Uuid,
    pub fixes: Vec<Fix>,
}

// What a successful upload answers: every fix is accounted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[schema(
    as = UploadResponse,
    example = json!({"success": true, "processed_count": 25, "stored_count": 24, "duplicate_count": 1, "expired_count": 0})
)]
pub struct UploadReceipt {
    pub success: bool,
    /// How many fixes the upload carried, all acknowledged: `stored_count` + `duplicate_count`
    /// + `expired_count`.
    pub processed_count: usize,
    /// Fixes stored by this upload.
    pub stored_count: usize,
    /// Fixes already stored for the device at the same capture instant (a retry, or an offline
    /// buffer sent again), or repeated within the upload: acknowledged, not stored again. The
    /// first fix stored for an instant stays.
    pub duplicate_count: usize,
    /// Fixes captured before the retention period (`limits.location_retention_days`, 30 days
    /// by default): acknowledged, not stored, as they would be deleted at once.
    pub expired_count: usize,
}

impl UploadReceipt {
    /// `processed` fixes, none accounted for yet.
    pub fn new(processed: usize) -> Self {
        Self {
            success: true,
            processed_count: processed,
            stored_count: 0,
            duplicate_count: 0,
            expired_count: 0,
        }
    }
}
