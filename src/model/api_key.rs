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
