//! Authentication: every route under `/api/v1/` needs a valid `X-API-Key`; the others (probes,
//! metrics, docs) are public.

use axum::{
    extract::{MatchedPath, Request, State},
    middleware::Next,
    response::Response,
};

use crate::{error::ApiError, headers, state::AppState};

/// Routes under this prefix need a key.
pub const AUTHENTICATED_PREFIX: &str = "/api/v1/";

/// Requires a valid `X-API-Key` on `/api/v1/` routes and stores the caller's
/// [`ApiKey`](crate::model::ApiKey) in the request extensions, for handlers (`AuthKey`) and the
/// middleware after this one.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str);
    if !route.is_some_and(|route| route.starts_with(AUTHENTICATED_PREFIX)) {
        return Ok(next.run(request).await);
    }
    let presented = request.headers().get(headers::API_KEY).and_then(|v| v.to_str().ok());
    let key = state.keys.authenticate(presented).await?;
    tracing::debug!(key_id = key.id, "authenticated");
    request.extensions_mut().insert(key);
    Ok(next.run(request).await)
}
