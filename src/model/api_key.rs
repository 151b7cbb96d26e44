//! API keys, as administrators and the authentication layer see them (never the key itself
//! or its hash, except once in [`IssuedKey`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A stored API key: `phone-manager keys list` prints these, and an authenticated request
/// carries the one it was made with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKey {
    pub id: i64,
    /// The first 8 characters of the key (`pm_aBcDe`), what an administrator sees.
    pub prefix: String,
    pub name: String,
    pub is_active: bool,
    /// Admin keys may also call `/api/v1/admin/*`.
    pub is_admin: bool,
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
    pub expires_at: Option<DateTime<Utc>>,
}

/// A change other replicas must act on at once (`db::notify`): the text is the notice's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// An API key was deactivated, rotated away or changed: forget it.
    ApiKey(i64),
}

impl std::fmt::Display for Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalidation::ApiKey(id) => write!(f, "api_key:{id}"),
        }
    }
}

impl std::str::FromStr for Invalidation {
    type Err = String;

    fn from_str(payload: &str) -> Result<Self, Self::Err> {
        match payload.split_once(':') {
            Some(("api_key", id)) => id.parse().map(Invalidation::ApiKey).map_err(|_| payload.to_owned()),
            _ => Err(payload.to_owned()),
        }
    }
}
