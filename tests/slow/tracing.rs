//! OpenTelemetry: the server exports its spans over OTLP to a real receiver.

use std::{collections::HashMap, sync::Arc, time::Duration};

use fake_opentelemetry_collector::{ExportedSpan, FakeCollectorServer};
use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestDatabase, key_admin};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const GROUP_COMMIT_TRACE_ID: &str = "5cf92f3577b34da6a3ce929d0e0e4737";

/// A batch upload with an incoming `traceparent`: the server span continues the caller's trace,
/// and under it are the key lookup, validation, the store and every SQL statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_upload_exports_one_trace_with_http_and_sql_spans() {
    let mut collector = FakeCollectorServer::start().await.expect("OTLP receiver starts");
    let db = TestDatabase::create().await;
    let endpoint = collector.endpoint();
    let env = [
        ("PM__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("PM__TELEMETRY__OTLP_PROTOCOL", "grpc"),
        ("PM__TELEMETRY__ENVIRONMENT", "test"),
    ];
    let server = ServerProcess::start(&db.url, &env).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = key_admin(&pool).create("traced", false, None).await.unwrap().key;
    let api = server.client_with_key(&key);
    let device = Uuid::new_v4();
    api.register_device(device, "Traced", "otel").await;

    let now = chrono::Utc::now().timestamp_millis();
    let batch = json!({"device_id": device, "locations": [
        {"timestamp": now - 2000, "latitude": 1.0, "longitude": 2.0, "accuracy": 3.0},
        {"timestamp": now - 1000, "latitude": 1.5, "longitude": 2.5, "accuracy": 3.0}
    ]});
    let response = api
        .post_json("/api/v1/locations/batch", &batch)
        .idempotency_key("trace-me")
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let traceparent = response.headers()["traceparent"].to_str().unwrap().to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{TRACE_ID}-")),
        "the response names the trace: {traceparent}"
    );
    assert_eq!(response.headers()["x-trace-id"], TRACE_ID);

    // Without a key, the fix goes through the group-commit writer: its statement is still in
    // the request's trace, under the request's store span.
    let single =
        json!({"device_id": device, "timestamp": now, "latitude": 1.0, "longitude": 2.0, "accuracy": 3.0});
    let response = api
        .post_json("/api/v1/locations", &single)
        .header("traceparent", format!("00-{GROUP_COMMIT_TRACE_ID}-{CALLER_SPAN}-01"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Graceful shutdown flushes the queued spans.
    assert!(server.terminate().await, "clean exit");
    let spans = collector.exported_spans(20, Duration::from_secs(10)).await;
    let trace: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let server_span = trace
        .iter()
        .find(|s| s.name == "POST /api/v1/locations/batch")
        .unwrap_or_else(|| panic!("server span in {:#?}", names(&spans)));
    assert_eq!(server_span.parent_span_id, CALLER_SPAN, "continues the caller's span");
    assert_eq!(server_span.kind, "SPAN_KIND_SERVER");
    assert_eq!(attribute(server_span, "http.request.method").as_deref(), Some("POST"));
    assert_eq!(attribute(server_span, "http.route").as_deref(), Some("/api/v1/locations/batch"));
    assert_eq!(attribute(server_span, "http.response.status_code").as_deref(), Some("200"));
    assert!(attribute(server_span, "request_id").is_some());
    assert!(traceparent.contains(&server_span.span_id), "the response names the server span");

    // Every span of the trace descends from the server span.
    let by_id: HashMap<&str, &ExportedSpan> = trace.iter().map(|s| (s.span_id.as_str(), *s)).collect();
    let under_server = |span: &ExportedSpan| {
        let mut parent = span.parent_span_id.as_str();
        while let Some(next) = by_id.get(parent) {
            if next.span_id == server_span.span_id {
                return true;
            }
            parent = next.parent_span_id.as_str();
        }
        false
    };
    for name in ["auth.api_key", "validate", "locations.store"] {
        let span = trace
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in {:#?}", names(trace.iter().copied())));
        assert!(under_server(span), "{name} is under the server span");
    }
    let sql: Vec<&ExportedSpan> =
        trace.iter().copied().filter(|s| s.attributes.contains_key("db.system.name")).collect();
    assert!(
        !sql.is_empty(),
        "the statement that claims the key and stores the fixes (the key itself is cached since \
         the registration): {:#?}",
        names(trace.iter().copied())
    );
    for span in &sql {
        assert!(under_server(span), "{} is under the server span", span.name);
        assert_eq!(span.kind, "SPAN_KIND_CLIENT");
        assert_eq!(attribute(span, "db.system.name").as_deref(), Some("postgresql"));
        let text = attribute(span, "db.query.text").unwrap();
        assert!(!text.contains("trace-me") && !text.contains(&device.to_string()), "no values: {text}");
    }
    eprintln!(
        "span tree of the batch upload, as received over OTLP:\n{}",
        tree(&trace, &server_span.span_id, 0)
    );
    let insert = sql.iter().find(|s| s.name == "INSERT locations").expect("the INSERT span");
    assert_eq!(attribute(insert, "db.operation.name").as_deref(), Some("INSERT"));
    assert_eq!(attribute(insert, "db.collection.name").as_deref(), Some("locations"));
    let text = attribute(insert, "db.query.text").unwrap();
    assert!(
        text.contains("idempotency_keys") && text.contains("UNNEST($3::int4[], $4::fix[])"),
        "one statement claims and stores: {text}"
    );
    assert!(insert.end_time_unix_nano > insert.start_time_unix_nano, "its duration is recorded");

    let single: Vec<&ExportedSpan> = spans.iter().filter(|s| s.trace_id == GROUP_COMMIT_TRACE_ID).collect();
    let span = |name: &str| {
        *single
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in {:#?}", names(single.iter().copied())))
    };
    let (server_span, store, write, insert) = (
        span("POST /api/v1/locations"),
        span("locations.store"),
        span("locations.write"),
        span("INSERT locations"),
    );
    assert_eq!(
        write.parent_span_id, store.span_id,
        "the shared statement's span is under the request's store span"
    );
    assert_eq!(insert.parent_span_id, write.span_id);
    assert_eq!(attribute(write, "requests").as_deref(), Some("1"));
    eprintln!("span tree of a single upload (group commit):\n{}", tree(&single, &server_span.span_id, 0));
    pool.close().await;
}

/// An attribute's value. The receiver stores them as the Debug form of the OTLP `AnyValue`
/// (`Some(AnyValue { value: Some(StringValue("POST")) })`): this unwraps it.
fn attribute(span: &ExportedSpan, key: &str) -> Option<String> {
    let raw = span.attributes.get(key)?;
    let inner = raw.split_once("Value(")?.1;
    Some(match inner.strip_prefix('"') {
        // A string: up to its closing quote (the last one), Debug escapes undone.
        Some(text) => text[..text.rfind('"')?].replace("\\\"", "\"").replace("\\n", "\n"),
        // A number or boolean: up to the closing parenthesis.
        None => inner[..inner.find(')')?].to_owned(),
    })
}

/// The spans under `root`, indented, with durations, in start order.
fn tree(spans: &[&ExportedSpan], root: &str, depth: usize) -> String {
    let mut out = String::new();
    if let Some(span) = spans.iter().find(|s| s.span_id == root) {
        let micros = (span.end_time_unix_nano - span.start_time_unix_nano) / 1000;
        out.push_str(&format!("{}{} ({} µs)\n", "  ".repeat(depth), span.name, micros));
    }
    let mut children: Vec<&&ExportedSpan> = spans.iter().filter(|s| s.parent_span_id == root).collect();
    children.sort_by_key(|s| s.start_time_unix_nano);
    for child in children {
        out.push_str(&tree(spans, &child.span_id, depth + 1));
    }
    out
}

fn names<'a>(spans: impl IntoIterator<Item = &'a ExportedSpan>) -> Vec<String> {
    spans.into_iter().map(|s| format!("{} ({}<-{})", s.name, s.span_id, s.parent_span_id)).collect()
}

/// The HTTP/protobuf exporter posts to `/v1/traces` of the configured endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_protobuf_exporter_posts_to_v1_traces() {
    let received = Arc::new(tokio::sync::Mutex::new(Vec::<(String, String, usize)>::new()));
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let sink = sink.clone();
            async move {
                let content_type =
                    headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
                sink.lock().await.push(("/v1/traces".into(), content_type, body.len()));
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let db = TestDatabase::create().await;
    let env = [
        ("PM__TELEMETRY__OTLP_ENDPOINT", endpoint.as_str()),
        ("PM__TELEMETRY__OTLP_PROTOCOL", "http/protobuf"),
    ];
    let server = ServerProcess::start(&db.url, &env).await;
    server.anonymous().get("/api/health").await;
    assert!(server.terminate().await);
    let received = received.lock().await;
    assert!(!received.is_empty(), "spans were posted");
    assert_eq!(received[0].1, "application/x-protobuf");
    assert!(received[0].2 > 0);
}

/// No collector at the endpoint: the service serves normally and exits cleanly.
#[tokio::test]
async fn an_unreachable_collector_does_not_disturb_the_service() {
    let db = TestDatabase::create().await;
    let env =
        [("PM__TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:1"), ("PM__TELEMETRY__OTLP_PROTOCOL", "grpc")];
    let server = ServerProcess::start(&db.url, &env).await;
    let anonymous = server.anonymous();
    for _ in 0..20 {
        assert_eq!(anonymous.get("/api/health").await.status(), StatusCode::OK);
    }
    assert!(server.terminate().await, "shuts down promptly despite the unreachable collector");
}
