//! Extractors whose rejections are our own [`ApiError`], so a malformed body, query or path
//! gets the same JSON envelope as every other error, with the offending field named.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request, rejection::PathRejection},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};
use validator::Validate;

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;

use crate::{
    config::SecuritySettings,
    error::{ApiError, FieldError},
    headers,
    model::{self, ApiKey, Credentials},
    state::AppState,
};

/// JSON request body / response. Requires `Content-Type: application/json`.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppJson<T>(pub T);

/// How a request body type is read from JSON. Every `Deserialize` type is read by serde with
/// [`parse_json`]; a type whose JSON object is two views at once (a single upload is a device
/// id and a fix) implements it by reading each view from the same bytes, which keeps every
/// error naming its field (serde's `flatten` would lose the field's path).
pub trait JsonBody: Sized {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError>;
}

impl<T: DeserializeOwned> JsonBody for T {
    fn from_json(bytes: &[u8]) -> Result<Self, ApiError> {
        parse_json(bytes)
    }
}

impl<T, S> FromRequest<S> for AppJson<T>
where
    T: JsonBody,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !has_json_content_type(&req) {
            return Err(ApiError::Validation {
                message: "Expected a JSON body with Content-Type: application/json".into(),
                details: vec![FieldError::new("Content-Type", "must be application/json")],
            });
        }
        let limit_bytes = body_limit(&req);
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit_bytes }
            } else {
                ApiError::field("body", rejection.body_text())
            }
        })?;
        tracing::info_span!("deserialize", bytes = bytes.len()).in_scope(|| T::from_json(&bytes)).map(AppJson)
    }
}

impl<T: Serialize> IntoResponse for AppJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// The body limit in force for this request, for the 413 message (set by `http::app`).
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

fn body_limit(req: &Request) -> Option<usize> {
    req.extensions().get::<BodyLimit>().map(|limit| limit.0)
}

fn has_json_content_type(req: &Request) -> bool {
    let Some(value) = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

/// Deserializes JSON, naming the field that failed: `latitude`, `locations[3].latitude`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => field_error(&path, &inner.to_string()),
            _ => ApiError::Validation {
                message: "Request body is not valid JSON".into(),
                details: vec![FieldError::new("body", inner.to_string())],
            },
        }
    })?;
    deserializer.end().map_err(|err| ApiError::Validation {
        message: "Request body is not valid JSON".into(),
        details: vec![FieldError::new("body", err.to_string())],
    })?;
    Ok(value)
}

/// Turns a serde message into a field error. serde reports a missing field at its parent
/// (`missing field \`latitude\``), so the name is taken from the message.
fn field_error(path: &str, message: &str) -> ApiError {
    // serde_json appends " at line L column C" to data errors; clients don't need it.
    let message = message.split(" at line ").next().unwrap_or(message);
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.strip_suffix('`'));
    let field = match (missing, path) {
        (Some(name), "." | "") => name.to_owned(),
        (Some(name), parent) => format!("{parent}.{name}"),
        (None, "." | "") => "body".to_owned(),
        (None, path) => path.to_owned(),
    };
    let message = if missing.is_some() { "is required".to_owned() } else { message.to_owned() };
    ApiError::field(field, message)
}

/// Query string, parsed with the same field-naming errors as bodies.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for AppQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer).map(AppQuery).map_err(|err| {
            let path = err.path().to_string();
            field_error(&path, &err.into_inner().to_string())
        })
    }
}

/// Path parameters; a malformed one (e.g. a device id that is not a UUID) is a 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct AppPath<T>(pub T);

impl<T, S> FromRequestParts<S> for AppPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        use axum::extract::path::ErrorKind;

        let err = match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => return Ok(AppPath(value)),
            Err(PathRejection::FailedToDeserializePathParams(err)) => err,
            Err(other) => return Err(ApiError::field("path", other.body_text())),
        };
        if let ErrorKind::ParseErrorAtKey { key, value, expected_type } = err.kind() {
            return Err(ApiError::field(
                key.clone(),
                format!("{value:?} is not a valid {}", friendly_type(expected_type)),
            ));
        }
        // A single scalar parameter (`Path<Uuid>`) fails without naming itself: name it from
        // the raw parameters and the target type.
        let raw = RawPathParams::from_request_parts(parts, state).await.ok();
        let single = raw.as_ref().and_then(|params| {
            let mut iter = params.iter();
            iter.next().filter(|_| iter.next().is_none())
        });
        Err(match single {
            Some((name, value)) => ApiError::field(
                name,
                format!("{value:?} is not a valid {}", friendly_type(std::any::type_name::<T>())),
            ),
            None => ApiError::field("path", err.body_text()),
        })
    }
}

fn friendly_type(rust_type: &str) -> &str {
    match rust_type.rsplit("::").next().unwrap_or(rust_type) {
        "Uuid" => "UUID",
        "i64" | "i32" | "u32" | "u64" => "integer",
        other => other,
    }
}

/// The authenticated caller. Only routes behind the auth middleware may use it; anywhere else
/// it answers 401, which keeps a forgotten layer from silently serving anonymous callers.
#[derive(Debug, Clone)]
pub struct AuthKey(pub ApiKey);

impl<S: Send + Sync> FromRequestParts<S> for AuthKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Credentials>().map(|c| AuthKey(c.key.clone())).ok_or(ApiError::Unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Point {
        latitude: f64,
        inner: Option<Vec<Inner>>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        value: u8,
    }

    fn details(err: ApiError) -> Vec<FieldError> {
        match err {
            ApiError::Validation { details, .. } => details,
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn names_missing_fields() {
        let err = parse_json::<Point>(br#"{}"#).unwrap_err();
        assert_eq!(details(err), vec![FieldError::new("latitude", "is required")]);
    }

    #[test]
    fn names_nested_fields_with_wrong_types() {
        let err =
            parse_json::<Point>(br#"{"latitude": 1, "inner": [{"value": 1}, {"value": "x"}]}"#).unwrap_err();
        let details = details(err);
        assert_eq!(details[0].field, "inner[1].value");
        assert!(details[0].message.starts_with("invalid type: string \"x\""), "{details:?}");
    }

    #[test]
    fn reports_syntax_errors_on_the_body() {
        let err = parse_json::<Point>(br#"{"latitude": "#).unwrap_err();
        assert_eq!(details(err)[0].field, "body");
        let err = parse_json::<Point>(br#"{"latitude": 1} trailing"#).unwrap_err();
        assert_eq!(details(err)[0].field, "body");
    }
}

/// A JSON body that must also pass its `validator` rules; every failing field is reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidJson<T>(pub T);

impl<T, S> FromRequest<S> for ValidJson<T>
where
    T: JsonBody + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let AppJson(value) = AppJson::<T>::from_request(req, state).await?;
        validate(|| value.validate())?;
        Ok(ValidJson(value))
    }
}

/// Runs validation rules inside the `validate` span (what [`ValidJson`] does, for rules that
/// need a context such as the server's clock).
pub fn validate(rules: impl FnOnce() -> Result<(), validator::ValidationErrors>) -> Result<(), ApiError> {
    tracing::info_span!("validate").in_scope(rules).map_err(ApiError::from)
}

/// An optional JSON body that must pass its `validator` rules when present: an empty body, or
/// the JSON `null` (which the document allows, and some generated clients send for an omitted
/// body), is `None` (the endpoint's defaults apply); anything else must be JSON, as for
/// [`ValidJson`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let declared_empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|length| length.trim() == "0");
        let untyped = !req.headers().contains_key(header::CONTENT_TYPE);
        if declared_empty || (untyped && !req.headers().contains_key(header::TRANSFER_ENCODING)) {
            return Ok(OptionalJson(None));
        }
        let AppJson(value) = AppJson::<Option<T>>::from_request(req, state).await?;
        if let Some(value) = &value {
            validate(|| value.validate())?;
        }
        Ok(OptionalJson(value))
    }
}

/// A query string that must also pass its `validator` rules.
#[derive(Debug, Clone, Copy, Default)]
pub struct ValidQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for ValidQuery<T>
where
    T: DeserializeOwned + Validate,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AppQuery(value) = AppQuery::<T>::from_request_parts(parts, state).await?;
        tracing::info_span!("validate").in_scope(|| value.validate())?;
        Ok(ValidQuery(value))
    }
}

/// An authenticated admin key; a standard key gets 403 `forbidden`.
#[derive(Debug, Clone)]
pub struct AdminKey(pub ApiKey);

impl<S: Send + Sync> FromRequestParts<S> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let AuthKey(key) = AuthKey::from_request_parts(parts, state).await?;
        if key.is_admin {
            Ok(AdminKey(key))
        } else {
            Err(ApiError::Forbidden("Admin API key required".into()))
        }
    }
}

/// Who is calling, for the audit trail: the key and the client's address (the TCP peer, or
/// the first `X-Forwarded-For` hop when `security.trust_forwarded_for` says a proxy sets it).
#[derive(Debug, Clone)]
pub struct Caller(pub model::Caller);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Credentials { key, device, .. } =
            parts.extensions.get::<Credentials>().cloned().ok_or(ApiError::Unauthorized)?;
        let ip = client_address_of(&parts.headers, &parts.extensions, &state.settings.security);
        Ok(Caller(model::Caller { key, device, ip }))
    }
}

/// What the caller presented (hashed): for a long-lived stream to check it again later.
#[derive(Debug, Clone)]
pub struct Presented(pub model::Presented);

impl<S: Send + Sync> FromRequestParts<S> for Presented {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let credentials = parts.extensions.get::<Credentials>().ok_or(ApiError::Unauthorized)?;
        Ok(Presented(credentials.presented.clone()))
    }
}

/// The client's address: the TCP peer, or the first `X-Forwarded-For` hop when
/// `security.trust_forwarded_for` says a proxy sets it.
pub fn client_address<B>(request: &axum::http::Request<B>, security: &SecuritySettings) -> Option<IpAddr> {
    client_address_of(request.headers(), request.extensions(), security)
}

fn client_address_of(
    request_headers: &axum::http::HeaderMap,
    extensions: &axum::http::Extensions,
    security: &SecuritySettings,
) -> Option<IpAddr> {
    let forwarded = security
        .trust_forwarded_for
        .then(|| request_headers.get(headers::FORWARDED_FOR).and_then(|v| v.to_str().ok()))
        .flatten()
        .and_then(|value| value.split(',').next())
        .and_then(|first| first.trim().parse::<IpAddr>().ok());
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip());
    forwarded.or(peer)
}

/// Integers as JSON Schema defines them: `82` and `82.0` are the same integer (generated clients
/// and JavaScript send either); serde alone refuses `82.0` for an integer field. A number with a
/// fraction, or out of the field's range, is still refused, naming the field.
pub mod integer {
    use serde::{Deserialize, Deserializer, de::Error};

    fn integral<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
        number: serde_json::Number,
    ) -> Result<T, D::Error> {
        let value = match (number.as_i64(), number.as_f64()) {
            (Some(value), _) => Some(value),
            // Exactly integral and within ±2^53, where every integer has an exact double.
            (None, Some(float)) if float.fract() == 0.0 && float.abs() <= 9_007_199_254_740_992.0 => {
                Some(float as i64)
            }
            _ => None,
        };
        value
            .and_then(|value| T::try_from(value).ok())
            .ok_or_else(|| D::Error::custom(format!("invalid value: {number}, expected an integer in range")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(deserializer: D) -> Result<T, D::Error> {
        integral::<D, T>(serde_json::Number::deserialize(deserializer)?)
    }

    /// The same for an optional field (`null` or absent is `None`).
    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i64>>(
            deserializer: D,
        ) -> Result<Option<T>, D::Error> {
            Option::<serde_json::Number>::deserialize(deserializer)?.map(integral::<D, T>).transpose()
        }
    }
}
