//! The OpenAPI v1 document: info, tags, the `X-API-Key` scheme and the reusable error
//! responses, plus every path of the route table (`http::router`). [`spec`] needs no state
//! and no database.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{
    error::{ErrorBody, FieldError},
    headers,
    http::{
        self,
        docs::{self, responses, tags},
    },
    model::{LocationEvent, MemberChange, MemberEvent, Order, ResyncEvent, ResyncReason},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Phone Manager API",
        // The version of the HTTP contract, not of the binary (see "API versioning" in README).
        version = "1.0.0",
        description = "Location sharing for small groups of family and friends. Phones register \
            into groups (at most 20 active devices), upload GPS positions one at a time or in \
            offline batches, and see where the other members last were.\n\n\
            Every endpoint under `/api/v1` needs an `X-API-Key` header (keys are created with \
            `phone-manager keys create`). A `full` key may call every operation; an `app` key \
            (the one an app build ships) registers devices, and otherwise acts only for the \
            device whose token it sends as `Authorization: Bearer` (the token a registration \
            answers): its own uploads, export and erasure, its own group's listing, history, \
            live stream and invitations. Errors always have the shape \
            `{\"error\", \"message\", \"details\"}`. Timestamps in responses are RFC 3339 UTC; \
            JSON fields are snake_case. Unknown fields in request bodies are ignored.",
        license(name = "MIT", identifier = "MIT"),
        contact(name = "Phone Manager backend team"),
    ),
    servers((url = "/", description = "This server")),
    tags(
        (name = tags::ADMIN, description = "Maintenance for admin API keys only; changes are audited"),
        (name = tags::DEVICES, description = "Device registration and group membership"),
        (name = tags::HEALTH, description = "Liveness, readiness and dependency health; no key needed"),
        (name = tags::HISTORY, description = "A device's location history: pages, simplified trails, GeoJSON and GPX"),
        (name = tags::KEYS, description = "The calling API key"),
        (name = tags::LIVE, description = "A group's positions pushed as they are stored (Server-Sent Events)"),
        (name = tags::LOCATIONS, description = "Location uploads, single and batch, with idempotent retries"),
        (name = tags::OPERATIONS, description = "Prometheus metrics; no key needed"),
        (name = tags::PRIVACY, description = "Data export and erasure (GDPR); audited"),
    ),
    components(
        // The live stream's event payloads (text/event-stream has no JSON schema of its own),
        // and schemas that only parameters refer to (utoipa-axum collects those of bodies and
        // responses by itself, not those of `IntoParams`).
        schemas(
            ErrorBody,
            FieldError,
            LocationEvent,
            MemberEvent,
            MemberChange,
            ResyncEvent,
            ResyncReason,
            Order
        ),
        responses(
            responses::ValidationFailed,
            responses::Unauthorized,
            responses::Forbidden,
            responses::InviteNeeded,
            responses::NotFound,
            responses::DeviceNotRegistered,
            responses::Conflict,
            responses::IdempotencyKeyReused,
            responses::PayloadTooLarge,
            responses::UnsupportedMediaType,
            responses::NotAcceptable,
            responses::RateLimited,
            responses::RequestTimeout,
            responses::ServiceUnavailable,
            responses::InternalError,
        ),
    ),
    modifiers(&ApiKeyScheme),
)]
pub struct ApiDoc;

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = ApiKeyValue::new(headers::API_KEY_DOCUMENTED);
        scheme.description = Some(
            "An API key: `pm_` followed by 45 URL-safe base64 characters. Create one with \
             `phone-manager keys create --name NAME`."
                .into(),
        );
        components.add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(scheme)));
        let token = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("pmd_ + 43 URL-safe base64 characters")
            .description(Some(
                "A device token, answered once when the device registers (or by \
                 `POST /api/v1/devices/{device_id}/token`). Sent with an `app` key, it names the \
                 device the request acts for; keep it in the app's secure storage.",
            ))
            .build();
        components.add_security_scheme("device_token", SecurityScheme::Http(token));
    }
}

/// The complete v1 document: [`ApiDoc`] and every path of the route table, built without any
/// state.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(http::router().into_openapi());
    docs::declare_response_headers(&mut doc);
    http::routes::live::document_event_data(&mut doc);
    doc
}

/// The document as committed in `openapi/v1.json`: pretty JSON and a final newline.
pub fn spec_json() -> String {
    let mut json = spec().to_pretty_json().expect("the OpenAPI document serializes");
    json.push('\n');
    json
}
