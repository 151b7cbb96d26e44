//! A device's location history: pages of JSON, a simplified trail, or a GeoJSON or GPX download.

use axum::{
    body::Body,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use validator::Validate;

use crate::{
    domain::history::{self, Cursor, Format, LIMIT_DEFAULT, Range},
    error::{ApiError, ApiResult},
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppJson, AppPath, Caller, ValidQuery},
    },
    model::{Order, StoredFix},
    state::AppState,
};

/// Which part of the trail, how much of it, and how.
#[derive(Debug, Deserialize, Validate, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// Fixes captured at or after this instant, in milliseconds since the Unix epoch (default:
    /// the first).
    #[param(minimum = 0, example = 1_763_700_000_000_i64)]
    #[validate(range(min = 0, message = "must be milliseconds since the Unix epoch"))]
    pub from: Option<i64>,
    /// Fixes captured at or before this instant, in milliseconds since the Unix epoch (default:
    /// the last); not before `from`.
    #[param(minimum = 0, example = 1_763_790_000_000_i64)]
    #[validate(range(min = 0, message = "must be milliseconds since the Unix epoch"))]
    pub to: Option<i64>,
    /// By capture time: `desc` (newest first, the default for pages) or `asc` (the default for
    /// downloads).
    pub order: Option<Order>,
    /// Fixes per page, 1–1000 (default 100). Pages only.
    #[param(minimum = 1, maximum = 1000)]
    #[validate(range(min = 1, max = 1000, message = "must be between 1 and 1000"))]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page: opaque, valid for the same device and order (its
    /// `from` and `to` win). Pages only.
    #[param(max_length = 128)]
    pub cursor: Option<String>,
    /// Simplifies the trail (Ramer–Douglas–Peucker) to the fixes that matter at this precision,
    /// in metres, more than 0 and at most 10,000: the whole range in one answer (at most 100,000
    /// fixes; narrow it with `from` and `to` beyond), without pages.
    #[param(exclusive_minimum = 0, maximum = 10_000, example = 25.0)]
    pub tolerance: Option<f64>,
}

/// Where the next page starts.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaginationResponse {
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
    pub has_more: bool,
}

/// How a trail was simplified.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimplificationResponse {
    /// The tolerance asked for, in metres.
    pub tolerance_m: f64,
    /// Fixes in the range.
    pub original_count: usize,
    /// Fixes kept (the first and the last always are).
    pub returned_count: usize,
}

/// A page of a device's trail.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "locations": [{"captured_at": "2026-11-21T10:29:00Z", "latitude": 48.1374, "longitude": 11.5755,
                   "accuracy": 12.5, "altitude": 519.0, "bearing": null, "speed": 1.4, "provider": "fused",
                   "battery_level": 82, "network_type": "wifi", "created_at": "2026-11-21T10:29:02Z"}],
    "pagination": {"next_cursor": null, "has_more": false},
    "distance_m": 0.0
}))]
pub struct HistoryResponse {
    /// Every stored field of each fix, in the order asked for.
    pub locations: Vec<StoredFix>,
    pub pagination: PaginationResponse,
    /// The length of this answer's trail in metres (haversine, between consecutive fixes).
    pub distance_m: f64,
    /// Present when `tolerance` was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simplification: Option<SimplificationResponse>,
}

/// Returns a device's location history.
///
/// Fixes captured between `from` and `to` (inclusive, milliseconds since the epoch), newest
/// first by default, `limit` at a time with keyset pagination (`next_cursor`): a page costs the
/// same however deep it is. `tolerance` (metres) answers the whole range simplified instead.
/// Every answer states the trail's length in metres.
///
/// With `Accept: application/geo+json` the range is downloaded as an RFC 7946 FeatureCollection
/// (the trail as a LineString of `[longitude, latitude(, altitude)]`, then a Point feature per
/// fix with its other fields; the length as `distance_m`); with `Accept: application/gpx+xml` as
/// a GPX 1.1 track. Downloads stream the whole range in capture order (oldest first unless
/// `order=desc`); `limit`, `cursor` and `tolerance` are for JSON pages only.
///
/// A `full` key reads any device's history; an `app` key that of an active member of its
/// device's group (its own included). Unknown devices and anyone else's are 404.
#[utoipa::path(
    get,
    path = "/api/v1/devices/{device_id}/locations",
    tag = tags::HISTORY,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(("device_id" = Uuid, Path, description = "The device's UUID"), HistoryQuery),
    responses(
        (status = 200, description = "The trail, as a page of JSON or as a download",
            content(
                (HistoryResponse = "application/json"),
                (Object = "application/geo+json",
                    example = json!({"type": "FeatureCollection", "features": [
                        {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[11.5753, 48.1371], [11.5755, 48.1374]]},
                         "properties": {"device_id": "550e8400-e29b-41d4-a716-446655440000", "fix_count": 2, "distance_m": 37.2}},
                        {"type": "Feature", "geometry": {"type": "Point", "coordinates": [11.5753, 48.1371]},
                         "properties": {"captured_at": "2026-11-21T10:29:00Z", "accuracy": 10.0}}
                    ], "distance_m": 37.2})),
                (String = "application/gpx+xml",
                    example = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><gpx version=\"1.1\" creator=\"Phone Manager\" xmlns=\"http://www.topografix.com/GPX/1/1\"><trk><trkseg><trkpt lat=\"48.1371\" lon=\"11.5753\"><time>2026-11-21T10:29:00.000Z</time></trkpt></trkseg></trk></gpx>")
            )),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        (status = 406, response = responses::NotAcceptable),
        AuthenticatedErrors,
    )
)]
pub async fn list_device_locations(
    State(state): State<AppState>,
    Caller(caller): Caller,
    AppPath(device_id): AppPath<Uuid>,
    request_headers: HeaderMap,
    ValidQuery(query): ValidQuery<HistoryQuery>,
) -> ApiResult<Response> {
    let range = Range::new(query.from, query.to)?;
    if let Some(format) = download_format(&request_headers)? {
        if query.limit.is_some() || query.cursor.is_some() || query.tolerance.is_some() {
            return Err(ApiError::field(
                "limit",
                "limit, cursor and tolerance are for JSON pages; a download is the whole range",
            ));
        }
        let order = query.order.unwrap_or(Order::Asc);
        let chunks = state.history.download(&caller, device_id, range, order, format).await?;
        let (media_type, extension) = match format {
            Format::GeoJson => ("application/geo+json", "geojson"),
            Format::Gpx => ("application/gpx+xml", "gpx"),
        };
        let stream = futures_util::stream::unfold(chunks, |mut chunks| async move {
            chunks.recv().await.map(|chunk| (chunk, chunks))
        });
        let disposition = format!("attachment; filename=\"device-{device_id}-track.{extension}\"");
        return Ok((
            [(header::CONTENT_TYPE, media_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)],
            Body::from_stream(stream),
        )
            .into_response());
    }
    let order = query.order.unwrap_or_default();
    if let Some(tolerance) = query.tolerance {
        if !(tolerance > 0.0 && tolerance <= history::TOLERANCE_MAX) {
            return Err(ApiError::field("tolerance", "must be more than 0 and at most 10000 (metres)"));
        }
        if query.limit.is_some() || query.cursor.is_some() {
            return Err(ApiError::field(
                "tolerance",
                "a simplified trail is one answer: leave out limit and cursor",
            ));
        }
        let simplified = state.history.simplified(&caller, device_id, range, order, tolerance).await?;
        let returned_count = simplified.fixes.len();
        return Ok(AppJson(HistoryResponse {
            locations: simplified.fixes,
            pagination: PaginationResponse { next_cursor: None, has_more: false },
            distance_m: simplified.distance_m,
            simplification: Some(SimplificationResponse {
                tolerance_m: simplified.tolerance_m,
                original_count: simplified.original_count,
                returned_count,
            }),
        })
        .into_response());
    }
    let cursor = query.cursor.as_deref().map(|text| Cursor::decode(text, device_id, order)).transpose()?;
    let limit = query.limit.unwrap_or(LIMIT_DEFAULT);
    let page = state.history.page(&caller, device_id, range, order, limit, cursor).await?;
    Ok(AppJson(HistoryResponse {
        locations: page.fixes,
        pagination: PaginationResponse {
            has_more: page.next.is_some(),
            next_cursor: page.next.map(|cursor| cursor.encode()),
        },
        distance_m: page.distance_m,
        simplification: None,
    })
    .into_response())
}

/// The download the `Accept` header asks for, or none (JSON): `application/geo+json`,
/// `application/gpx+xml`, or anything that also accepts JSON. 406 for anything else.
fn download_format(request_headers: &HeaderMap) -> ApiResult<Option<Format>> {
    let Some(accept) = request_headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let types: Vec<String> = accept
        .split(',')
        .map(|item| item.split(';').next().unwrap_or_default().trim().to_ascii_lowercase())
        .collect();
    let wants = |media: &str| types.iter().any(|t| t == media);
    if wants("application/json") || wants("*/*") || wants("application/*") {
        return Ok(None);
    }
    if wants("application/geo+json") {
        return Ok(Some(Format::GeoJson));
    }
    if wants("application/gpx+xml") {
        return Ok(Some(Format::Gpx));
    }
    Err(ApiError::NotAcceptable(
        "History is available as application/json, application/geo+json or application/gpx+xml".into(),
    ))
}
