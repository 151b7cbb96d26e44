use axum::{
    extract::{Request, State},
    middleware::Next,
    response::Response,
};

use crate::{domain::api_keys, error::ApiError, state::AppState};

pub const API_KEY_HEADER: &str = "x-api-key";
/// The header as documented (HTTP header names are case-insensitive).
pub const API_KEY_HEADER_NAME: &str = "X-API-Key";

/// Requires a valid `X-API-Key` and stores the [`api_keys::AuthenticatedKey`] in the request
/// extensions for handlers (`AuthKey`) and the middleware that runs after this one.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request.headers().get(API_KEY_HEADER).and_then(|v| v.to_str().ok());
    let key = api_keys::authenticate(&state.pool, &state.key_cache, presented).await?;
    tracing::debug!(key_id = key.id, "authenticated");
    request.extensions_mut().insert(key);
    Ok(next.run(request).await)
}
