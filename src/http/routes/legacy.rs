//! The unversioned paths of the first app releases answer 301 to their `/api/v1` twin, query
//! string kept, so old clients find the current API.

use axum::{
    Router,
    http::{HeaderValue, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/devices", any(redirect))
        .route("/api/devices/{*rest}", any(redirect))
        .route("/api/locations", any(redirect))
        .route("/api/locations/{*rest}", any(redirect))
}

async fn redirect(uri: Uri) -> Response {
    let rest = uri.path().strip_prefix("/api").unwrap_or(uri.path());
    let target = match uri.query() {
        Some(query) => format!("/api/v1{rest}?{query}"),
        None => format!("/api/v1{rest}"),
    };
    match HeaderValue::from_str(&target) {
        Ok(location) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, location)]).into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}
