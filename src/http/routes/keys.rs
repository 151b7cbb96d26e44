//! The caller's own API key: lets a client check its key before doing real work.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    http::{
        docs::{AuthenticatedErrors, tags},
        extract::{AppJson, AuthKey},
    },
    model::KeyScope,
};

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 7, "prefix": "pm_aBcDe", "name": "Android app", "is_admin": false, "scope": "app",
    "expires_at": null
}))]
pub struct CurrentKeyResponse {
    pub id: i64,
    /// First 8 characters of the key, as `phone-manager keys list` shows them.
    pub prefix: String,
    pub name: String,
    /// Admin keys may also call `/api/v1/admin/*`.
    pub is_admin: bool,
    /// `full`: every operation. `app`: the key an app ships; it registers devices and otherwise
    /// acts for the device whose token comes with it.
    pub scope: KeyScope,
    /// When the key stops working; null when it never expires.
    pub expires_at: Option<DateTime<Utc>>,
}

/// Describes the API key the request was made with (never the key itself).
#[utoipa::path(
    get,
    path = "/api/v1/keys/current",
    tag = tags::KEYS,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The calling key", body = CurrentKeyResponse),
        AuthenticatedErrors,
    )
)]
pub async fn get_current_key(AuthKey(key): AuthKey) -> AppJson<CurrentKeyResponse> {
    AppJson(CurrentKeyResponse {
        id: key.id,
        prefix: key.prefix,
        name: key.name,
        is_admin: key.is_admin,
        scope: key.scope,
        expires_at: key.expires_at,
    })
}
