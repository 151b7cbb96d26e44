//! A group's live stream: Server-Sent Events.

use axum::{
    extract::State,
    http::{HeaderMap, HeaderName, HeaderValue, header},
    response::{
        IntoResponse, Response,
        sse::{self, KeepAlive, Sse},
    },
};
use futures_util::StreamExt;

use crate::{
    domain::devices::rules,
    error::{ApiError, ApiResult},
    headers,
    http::{
        docs::{AuthenticatedErrors, responses, tags},
        extract::{AppPath, Caller, Presented},
        routes::devices::GroupPath,
    },
    metrics,
    state::AppState,
};

/// Longest `Last-Event-ID` the server ever sends (`L` or `M` and a 64-bit number, or a
/// snapshot's `S` id); a longer one cannot be ours and starts from a snapshot.
const LAST_EVENT_ID_MAX: usize = 40;

/// Streams a group's positions live (Server-Sent Events).
///
/// The group listing, kept current: answers `text/event-stream` with these events, each
/// `data:` one JSON object:
/// - `snapshot`: the group as `GET /api/v1/devices?group_id=` lists it (`DeviceListResponse`),
///   first, and again after a `resync`;
/// - `location`: a fix a member stored (`LocationEventResponse`), sent once its upload has
///   committed, whichever server took it. In order of storing, not of capture: show a member at
///   its fix with the newest `timestamp`;
/// - `member`: a device joined, left, was renamed or deactivated (`MemberEventResponse`);
/// - `resync`: events were lost (the client read too slowly, or the server's notice connection
///   was interrupted; `ResyncEventResponse`); a `snapshot` follows at once.
///
/// Every event but `resync` has an `id`. Reconnecting with `Last-Event-ID` resumes after it
/// while the server still holds what followed (the group's last 1,000 events, at most
/// 5 minutes old, by default), otherwise starts with a fresh `snapshot`. A comment line
/// (`: keep-alive`) is sent after 20 s without an event (by default; never more than 25 s);
/// the first event carries `retry:` (2–6 s) advice for
/// reconnecting. The stream ends when the server shuts down (reconnect), and when its
/// credentials stop giving access to the group (the device deactivated or moved, its token
/// replaced, the key deactivated); reconnecting then answers 401 or 404.
///
/// The `text/event-stream` answer names the schema of each event's `data` in `x-event-data`.
///
/// Access is the listing's: a member's device token (its own group only; any other group is
/// 404), or a `full` key. At most 3 streams per device and 100 per `full` key without a device
/// token are open at once by default (429 with `Retry-After` beyond).
#[utoipa::path(
    get,
    path = STREAM_ROUTE,
    tag = tags::LIVE,
    security(("api_key" = [], "device_token" = []), ("api_key" = [])),
    params(
        GroupPath,
        ("Last-Event-ID" = Option<String>, Header,
            description = "The `id` of the last event received, to resume after it (at most 40 characters)",
            example = "L1042"),
    ),
    responses(
        (status = 200, description = "The stream: `snapshot`, `location`, `member` and `resync` events \
            whose `data` are the schemas `DeviceListResponse`, `LocationEventResponse`, \
            `MemberEventResponse` and `ResyncEventResponse`; `: keep-alive` comments in between",
            content((String = "text/event-stream", example = json!(
                "retry: 3512\nevent: snapshot\nid: L1041\ndata: {\"devices\":[{\"device_id\":\"550e8400-e29b-41d4-a716-446655440000\",\"display_name\":\"Martin's Phone\",\"platform\":\"android\",\"last_seen_at\":\"2026-11-21T10:31:12Z\",\"last_location\":null}]}\n\nevent: location\nid: L1042\ndata: {\"device_id\":\"550e8400-e29b-41d4-a716-446655440000\",\"latitude\":48.1486,\"longitude\":17.1077,\"accuracy\":12.5,\"timestamp\":\"2026-11-21T10:32:00Z\",\"altitude\":null,\"bearing\":null,\"speed\":null,\"provider\":\"fused\",\"battery_level\":82,\"network_type\":\"wifi\"}\n\n: keep-alive\n\n"
            )))),
        (status = 400, response = responses::ValidationFailed),
        (status = 404, response = responses::NotFound),
        (status = 406, response = responses::NotAcceptable),
        AuthenticatedErrors,
    )
)]
pub async fn stream_group(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Presented(presented): Presented,
    AppPath(GroupPath { group_id }): AppPath<GroupPath>,
    request_headers: HeaderMap,
) -> ApiResult<Response> {
    rules::group_id(&group_id).map_err(|problem| ApiError::problem("group_id", problem))?;
    accepts_event_stream(&request_headers)?;
    let last_event_id = request_headers
        .get(headers::LAST_EVENT_ID)
        .and_then(|value| value.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= LAST_EVENT_ID_MAX);
    let live = state.live.open(&caller, &presented, &group_id, last_event_id).await?;
    let mut first = Some(live.retry);
    let events = live.events.map(move |event| {
        metrics::sse_event_sent(event.kind.name(), event.stored_at_micros);
        let mut sent = sse::Event::default().event(event.kind.name()).data(&event.data);
        if let Some(id) = &event.id {
            sent = sent.id(id);
        }
        if let Some(retry) = first.take() {
            sent = sent.retry(retry);
        }
        Ok::<_, std::convert::Infallible>(sent)
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(live.heartbeat).text("keep-alive"))
        .into_response();
    // nginx (and ingress-nginx) would otherwise buffer the stream.
    response
        .headers_mut()
        .insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    Ok(response)
}

/// 406 unless the client accepts `text/event-stream` (or did not say).
fn accepts_event_stream(request_headers: &HeaderMap) -> ApiResult<()> {
    let Some(accept) = request_headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let accepted = accept.split(',').any(|item| {
        let media = item.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        matches!(media.as_str(), "text/event-stream" | "text/*" | "*/*")
    });
    if accepted {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable("The live stream is text/event-stream (Server-Sent Events)".into()))
    }
}

/// The route as the document names it.
pub const STREAM_ROUTE: &str = "/api/v1/groups/{group_id}/stream";

/// Names the schema of each event's `data` on the stream's `text/event-stream` answer, as
/// `x-event-data: {<event name>: {"$ref": <schema>}}`. OpenAPI 3.1 cannot describe the items of
/// an event stream (3.2's `itemSchema` will); without this the payload schemas are referenced
/// from nowhere, and a client generated for the operations of a tag leaves them out.
pub fn document_event_data(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::{
        ToSchema,
        openapi::{Ref, extensions::Extensions},
    };

    use crate::{
        infra::live::EventKind,
        model::{GroupListing, LocationEvent, MemberEvent, ResyncEvent},
    };

    let data: serde_json::Map<String, serde_json::Value> = [
        (EventKind::Snapshot, GroupListing::name()),
        (EventKind::Location, LocationEvent::name()),
        (EventKind::Member, MemberEvent::name()),
        (EventKind::Resync, ResyncEvent::name()),
    ]
    .into_iter()
    .map(|(kind, schema)| {
        let reference = Ref::from_schema_name(schema);
        (kind.name().to_owned(), serde_json::to_value(reference).expect("a reference serializes"))
    })
    .collect();
    let stream = doc
        .paths
        .paths
        .get_mut(STREAM_ROUTE)
        .and_then(|item| item.get.as_mut())
        .and_then(|operation| operation.responses.responses.get_mut("200"))
        .and_then(|response| match response {
            utoipa::openapi::RefOr::T(response) => response.content.get_mut("text/event-stream"),
            utoipa::openapi::RefOr::Ref(_) => None,
        })
        .expect("the stream's 200 answers text/event-stream");
    stream
        .extensions
        .get_or_insert_with(Extensions::default)
        .insert("x-event-data".into(), serde_json::Value::Object(data));
}
