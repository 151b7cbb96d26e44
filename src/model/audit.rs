//! The audit trail of admin and privacy operations.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// Who is acting: the authenticated key, the device its token named (app keys), and the
/// client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub api_key_id: i64,
    pub device_id: Option<uuid::Uuid>,
    pub ip: Option<IpAddr>,
}

/// What happened, to be recorded with its [`Actor`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEntry {
    /// e.g. `device.data_export`.
    pub action: &'static str,
    /// e.g. `device`.
    pub resource_type: &'static str,
    pub resource_id: Option<String>,
    pub metadata: serde_json::Value,
}

// A recorded entry.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = AuditEntryResponse)]
pub struct AuditEntry {
    pub id: i64,
    /// The API key that acted (null if the key was deleted since).
    pub api_key_id: Option<i64>,
    /// The device the request acted as (requests with a device token); null otherwise.
    pub device_id: Option<uuid::Uuid>,
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    // Documented by `metadata_schema` (utoipa takes no doc comment with `schema_with`).
    #[schema(schema_with = metadata_schema)]
    pub metadata: Option<serde_json::Value>,
    // The client address as text (`host(inet)`).
    pub ip_address: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// `AuditEntry.metadata`: a free-form JSON object, so that generated clients get a map of JSON
/// values instead of an untyped `Any`.
fn metadata_schema() -> utoipa::openapi::schema::Object {
    super::schema::free_form_object_or_null(
        "Details of the action: a JSON object whose keys depend on `action` (e.g. \
         `devices.purge_inactive`: `older_than_days`, `deleted_count`, `device_ids`; \
         `access.refused`: `attempted`), `{}` when there are none; null for entries recorded \
         without. Keys may be added to any action.",
    )
}

/// Which entries an audit listing returns: newest first, every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub api_key_id: Option<i64>,
    /// At or after.
    pub since: Option<DateTime<Utc>>,
    /// Before.
    pub until: Option<DateTime<Utc>>,
    /// Only entries older than this id (the cursor of the previous page).
    pub before_id: Option<i64>,
    pub limit: i64,
}

// One page of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[schema(as = AuditPageResponse, example = json!({
    "entries": [{"id": 42, "api_key_id": 1, "action": "device.data_delete", "resource_type": "device",
                 "resource_id": "550e8400-e29b-41d4-a716-446655440000", "metadata": {},
                 "ip_address": "203.0.113.7", "created_at": "2026-11-21T10:30:00Z"}],
    "next_cursor": "42"
}))]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<AuditEntry>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}
