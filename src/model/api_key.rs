//! API keys, as administrators and the authentication layer see them (never the key itself
//! or its hash, except once in [`IssuedKey`]).

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

/// What a key may do. `full`: everything the API offers (tools, servers, admins). `app`: the key
/// an app build ships; it registers new devices, and otherwise acts only for the device whose
/// token comes with it (`Authorization: Bearer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "key_scope", rename_all = "lowercase")]
pub enum KeyScope {
    Full,
    App,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Full => "full",
            KeyScope::App => "app",
        }
    }
}

/// A stored API key: `phone-manager keys list` prints these, and an authenticated request
/// carries the one it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    /// The first 8 characters of the key (`pm_aBcDe`), what an administrator sees.
    pub prefix: String,
    pub name: String,
    pub is_active: bool,
    /// Admin keys may also call `/api/v1/admin/*` (always `full`).
    pub is_admin: bool,
    pub scope: KeyScope,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A freshly generated key: the only moment its plaintext exists (`keys create --json`).
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    pub id: i64,
    pub key: String,
    pub prefix: String,
    pub name: String,
    pub is_admin: bool,
    pub scope: KeyScope,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What a device token authenticates as: the device, its group, and whether it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCredential {
    pub device_id: Uuid,
    pub group_id: String,
    pub active: bool,
}

/// The credentials of a request: its API key and, when it sent a device token, that device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub key: ApiKey,
    pub device: Option<DeviceCredential>,
    /// What was presented, to check again later (a long-lived stream).
    pub presented: Presented,
}

/// The SHA-256 (hex) of the API key and device token a request presented: enough to look them
/// up again, never the secrets themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented {
    pub key_hash: String,
    pub token_hash: Option<String>,
}

/// A change other replicas must act on at once (`db::notify`): the text is the notice's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// An API key was deactivated, rotated away or changed: forget it.
    ApiKey(i64),
    /// A device was deactivated, erased, moved to another group or given a new token: forget
    /// what its token authenticated as.
    Device(Uuid),
}

impl std::fmt::Display for Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalidation::ApiKey(id) => write!(f, "api_key:{id}"),
            Invalidation::Device(id) => write!(f, "device:{id}"),
        }
    }
}

impl std::str::FromStr for Invalidation {
    type Err = String;

    fn from_str(payload: &str) -> Result<Self, Self::Err> {
        match payload.split_once(':') {
            Some(("api_key", id)) => id.parse().map(Invalidation::ApiKey).map_err(|_| payload.to_owned()),
            Some(("device", id)) => id.parse().map(Invalidation::Device).map_err(|_| payload.to_owned()),
            _ => Err(payload.to_owned()),
        }
    }
}

/// Who is calling, as the rules see it: the credentials and the client's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub key: ApiKey,
    /// The device whose token came with the request.
    pub device: Option<DeviceCredential>,
    pub ip: Option<std::net::IpAddr>,
}

impl Caller {
    /// The caller as the audit trail records it.
    pub fn actor(&self) -> super::audit::Actor {
        super::audit::Actor {
            api_key_id: self.key.id,
            device_id: self.device.as_ref().map(|device| device.device_id),
            ip: self.ip,
        }
    }
}
