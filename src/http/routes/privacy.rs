//! Data subject rights: a complete, streamed export of a device's data, and its erasure.

use axum::{
    body::Body,
    extract::State,
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::{
    error::ApiResult,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppPath, Caller},
    },
    model::DataExport,
    state::AppState,
};

/// The export's route: it also counts against the hourly export limit
/// (`middleware::rate_limit`).
pub const EXPORT_ROUTE: &str = "/api/v1/devices/{device_id}/data-export";

/// Exports all data stored about a device (GDPR access and portability).
///
/// The device's registration and every one of its locations (not only the last 30 days'), as
/// one JSON document delivered as an attachment and streamed from a consistent snapshot, so
/// exports of any size use constant server memory. Limited to 10 exports per hour per API key.
/// Audited as `device.data_export`.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device_id}/data-export",
    tag = tags::PRIVACY,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID")),
    responses(
        (status = 200, description = "The export (Content-Disposition: attachment)", body = DataExport,
            headers(("Content-Disposition" = String, description = "attachment; filename=\"device-<id>-export.json\"")),
            example = json!({
                "exported_at": "2026-11-21T10:30:00Z",
                "device": {"device_id": "550e8400-e29b-41d4-a716-446655440000", "display_name": "Martin's Phone",
                           "group_id": "family-group-123", "platform": "android", "fcm_token": null, "active": true,
                           "last_seen_at": "2026-11-21T10:29:40Z", "created_at": "2026-10-01T09:00:00Z",
                           "updated_at": "2026-11-02T18:12:00Z"},
                "locations": [{"captured_at": "2026-11-21T10:29:00Z", "latitude": 48.1374, "longitude": 11.5755,
                               "accuracy": 12.5, "altitude": null, "bearing": null, "speed": null,
                               "provider": "fused", "battery_level": 82, "network_type": "wifi",
                               "created_at": "2026-11-21T10:29:02Z"}],
                "location_count": 1
            })),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        AuthenticatedErrors,
    )
)]
pub async fn export_device_data(
    State(state): State<AppState>,
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<Response> {
    let chunks = state.privacy.export(&caller, device_id).await?;
    let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
        chunks.recv().await.map(|chunk| (chunk, chunks))
    });
    let disposition = format!("attachment; filename=\"device-{device_id}-export.json\"");
    Ok((
        [(header::CONTENT_TYPE, "application/json".to_owned()), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Erases a device and all its data (GDPR erasure). Irreversible.
///
/// Deletes the registration, every location and every idempotency record of the device. A
/// second call answers 404. Audited as `device.data_delete`.
#[utoipa::path(
    delete,
    path = "/api/v1/devices/{device_id}/data",
    tag = tags::PRIVACY,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID")),
    responses(
        (status = 204, description = "Erased"),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        AuthenticatedErrors,
    )
)]
pub async fn delete_device_data(
    State(state): State<AppState>,
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
) -> ApiResult<StatusCode> {
    state.privacy.erase(&caller, device_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
