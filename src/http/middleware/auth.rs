//! Authentication: every route under `/api/v1/` needs a valid `X-API-Key`; a device token
//! (`Authorization: Bearer pmd_…`) names the device an `app` key acts for, and an `app` key
//! without one may only register a device. The other routes (probes, metrics, docs) are public.

use axum::{
    extract::{MatchedPath, Request, State},
    http::header,
    middleware::Next,
    response::Response,
};

use crate::{
    domain::access, error::ApiError, headers, http::routes::devices::REGISTER_ROUTE, model::KeyScope,
    state::AppState,
};

/// Routes under this prefix need a key.
pub const AUTHENTICATED_PREFIX: &str = "/api/v1/";

/// Resolves the credentials of `/api/v1/` requests and stores them
/// ([`Credentials`](crate::model::Credentials)) in the request extensions, for handlers
/// (`AuthKey`, `Caller`) and the rate limits after this.
pub async fn require_api_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let route = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
    if !route.starts_with(AUTHENTICATED_PREFIX) {
        return Ok(next.run(request).await);
    }
    let registering = route == REGISTER_ROUTE;
    let key = request.headers().get(headers::API_KEY).and_then(|v| v.to_str().ok());
    let token = match request.headers().get(header::AUTHORIZATION) {
        None => None,
        Some(value) => Some(bearer(value.to_str().ok()).ok_or_else(invalid_authorization)?),
    };
    let credentials = state.auth.authenticate(key, token).await?;
    if credentials.key.scope == KeyScope::App && credentials.device.is_none() && !registering {
        return Err(access::needs_token());
    }
    tracing::debug!(key_id = credentials.key.id, "authenticated");
    request.extensions_mut().insert(credentials);
    Ok(next.run(request).await)
}

/// The token of `Bearer <token>` (the scheme is case-insensitive).
fn bearer(value: Option<&str>) -> Option<&str> {
    let (scheme, token) = value?.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn invalid_authorization() -> ApiError {
    ApiError::UnauthorizedDevice("Authorization must be `Bearer <device token>`".into())
}
