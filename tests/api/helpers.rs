//! The test harness of both test binaries (`tests/api`, the fast lane, and `tests/slow`).
//!
//! `TestApp::spawn()` starts the real server on 127.0.0.1:0 against a fresh database of its own.
//! The PostgreSQL server comes from `DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each test database is a copy of a template
//! that is migrated once per migration set, so a test costs one `CREATE DATABASE … TEMPLATE`.
//! Databases are dropped when the `TestApp` is.
//!
//! Requests go through one layer, in the manner of crates.io's `RequestHelper`: an [`ApiClient`]
//! bound to a server and a key (`app.client().await`, `app.admin_client().await`,
//! `app.client_with_key(&key)`, `app.anonymous()`) builds requests (`get`, `post_json`,
//! `post_body`, `delete`, `request`) that take `.header(…)` and `.idempotency_key(…)` and are
//! sent by `.await`; typed fixtures (`register_device`, `registered_device`, `list_group`…) sit
//! on top. Only what no HTTP client sends goes around it: [`raw_exchange`].

use std::{fmt::Display, future::IntoFuture, net::SocketAddr, pin::Pin, time::Duration};

use chrono::Utc;
use phone_manager::{
    config::Settings,
    db,
    domain::api_keys::ApiKeys,
    model::{IssuedKey, KeyScope},
    startup::Application,
};
use reqwest::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use tokio::{net::TcpListener, sync::OnceCell, task::JoinHandle};
use uuid::Uuid;

pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// URL of the PostgreSQL server's maintenance database that tests create databases through.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// The same server URL pointing at another database (query parameters kept).
pub fn database_url(name: &str) -> String {
    let url = server_url();
    let (path, query) = url.split_once('?').map_or((url.as_str(), None), |(p, q)| (p, Some(q)));
    let base = path.rsplit_once('/').map_or(path, |(base, _)| base);
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// Name of a migrated template database, created once per migration set. Test binaries run
/// in parallel, so creation is serialised by an advisory lock and published by a rename.
async fn template_database() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut hasher = Sha256::new();
            for migration in db::MIGRATOR.iter() {
                hasher.update(&migration.checksum);
            }
            let name = format!("pm_test_template_{}", &hex::encode(hasher.finalize())[..16]);
            let mut admin = PgConnection::connect(&server_url()).await.unwrap_or_else(|e| {
                panic!("tests need PostgreSQL at {} (set DATABASE_URL): {e}", server_url())
            });
            admin.execute("SELECT pg_advisory_lock(72390811)").await.expect("advisory lock");
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .expect("look up template");
            if !exists {
                let building = format!("{name}_building");
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)").as_str())
                    .await
                    .unwrap();
                admin.execute(format!("CREATE DATABASE {building}").as_str()).await.unwrap();
                let pool = PgPool::connect(&database_url(&building)).await.expect("connect to template");
                db::migrate(&pool).await.expect("migrate template");
                pool.close().await;
                admin.execute(format!("ALTER DATABASE {building} RENAME TO {name}").as_str()).await.unwrap();
            }
            admin.execute("SELECT pg_advisory_unlock(72390811)").await.expect("advisory unlock");
            admin.close().await.ok();
            name
        })
        .await
}

/// A fresh, migrated database that is dropped with this value.
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

impl TestDatabase {
    /// An empty database (no migrations), for tests that migrate it step by step.
    pub async fn empty() -> Self {
        let name = format!("pm_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url()).await.expect("connect to server");
        admin.execute(format!("CREATE DATABASE {name}").as_str()).await.expect("create test database");
        admin.close().await.ok();
        let url = database_url(&name);
        Self { name, url }
    }

    pub async fn create() -> Self {
        let template = template_database().await;
        let name = format!("pm_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&server_url()).await.expect("connect to server");
        admin
            .execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str())
            .await
            .expect("create test database");
        admin.close().await.ok();
        let url = database_url(&name);
        Self { name, url }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs inside a test's runtime, which may be shutting down: use a thread of our own.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&server_url()).await?;
                admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
                admin.close().await
            })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("warning: could not drop test database {}: {err}", self.name);
        }
    }
}

/// Settings for a test server: defaults, port 0, quiet logs (`TEST_LOG=debug` to see them).
pub fn test_settings(database_url: &str) -> Settings {
    let mut settings = Settings::load().expect("default settings load");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.server.shutdown_grace_secs = 5;
    settings.database.url = database_url.to_owned();
    settings.database.min_connections = 0;
    settings.database.max_connections = 5;
    settings.database.acquire_timeout_secs = 3;
    // Deactivation takes effect at once in tests; tests/api/auth.rs covers the cache itself.
    settings.security.api_key_cache_secs = 0;
    if let Ok(level) = std::env::var("TEST_LOG") {
        settings.logging.level = level;
        let _ = phone_manager::telemetry::init(&settings, phone_manager::telemetry::LogSink::Stderr);
    }
    settings
}

pub struct TestApp {
    /// Where the server listens, for [`raw_exchange`] and other raw TCP.
    pub socket_addr: SocketAddr,
    /// A pool on the test database, for setting up and checking state directly.
    pub pool: PgPool,
    pub db: TestDatabase,
    /// `http://127.0.0.1:<port>`.
    base_url: String,
    http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Spawns with adjusted settings (limits, timeouts, a database URL through a proxy…).
    pub async fn spawn_with(adjust: impl FnOnce(&mut Settings)) -> Self {
        let db = TestDatabase::create().await;
        let mut settings = test_settings(&db.url);
        adjust(&mut settings);
        let app = Application::build(settings).await.expect("application builds");
        let socket_addr = app.local_addr();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until_stopped(async {
            let _ = rx.await;
        }));
        let pool = PgPool::connect(&db.url).await.expect("test pool");
        Self {
            base_url: format!("http://{socket_addr}"),
            socket_addr,
            pool,
            db,
            http: http_client(),
            shutdown: Some(tx),
            server: Some(server),
        }
    }

    /// Creates an API key directly in the database (the CLI has its own tests).
    pub async fn create_key(&self, admin: bool) -> IssuedKey {
        key_admin(&self.pool).create("test key", admin, None).await.expect("key created")
    }

    /// A client holding a new standard key.
    pub async fn client(&self) -> ApiClient {
        self.client_with_key(&self.create_key(false).await.key)
    }

    /// A client holding a new admin key.
    /// A client with a new `app` key (what an app build ships), acting for no device yet.
    pub async fn app_client(&self) -> ApiClient {
        let key = key_admin(&self.pool)
            .create_with_scope("app key", KeyScope::App, false, None)
            .await
            .expect("app key created")
            .key;
        self.client_with_key(&key)
    }

    pub async fn admin_client(&self) -> ApiClient {
        self.client_with_key(&self.create_key(true).await.key)
    }

    /// A client sending `key` (issued, expired, deactivated or made up) as `X-API-Key`.
    pub fn client_with_key(&self, key: &str) -> ApiClient {
        ApiClient::new(self.http.clone(), &self.base_url, Some(key))
    }

    /// A client sending no key.
    pub fn anonymous(&self) -> ApiClient {
        ApiClient::new(self.http.clone(), &self.base_url, None)
    }

    /// Stored locations of `device`.
    pub async fn location_count(&self, device: Uuid) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM locations WHERE device_id = $1")
            .bind(device)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Inserts `count` locations of `device` captured and received `days_old` days ago (a
    /// second apart: one fix per device and instant).
    pub async fn insert_aged_locations(&self, device: Uuid, days_old: i32, count: i32) {
        create_partitions_back(&self.pool, days_old + 1).await;
        sqlx::query(
            "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at, created_at)
             SELECT $1, 1, 1, 1, now() - make_interval(days => $2, secs => g), now() - make_interval(days => $2)
             FROM generate_series(1, $3) AS g",
        )
        .bind(device)
        .bind(days_old)
        .bind(count)
        .execute(&self.pool)
        .await
        .unwrap();
    }

    /// Asks the server to stop and waits for it, as SIGTERM would.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match self.server.take() {
            Some(handle) => tokio::time::timeout(Duration::from_secs(15), handle)
                .await
                .expect("server stops within its grace period")
                .expect("server task did not panic"),
            None => Ok(()),
        }
    }
}

/// The HTTP client of every test: redirects are answers to look at, not to follow.
fn http_client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A caller of one server (a [`TestApp`] or a [`ServerProcess`]) holding one API key, or none.
/// Every request a test sends goes through here, so a header every request needs is added once.
/// Cheap to clone, and `'static`: concurrent tests move clones into their tasks.
#[derive(Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    base_url: String,
    key: Option<String>,
    /// A device token, sent as `Authorization: Bearer` (app keys act for its device).
    token: Option<String>,
}

impl ApiClient {
    /// A client of the server at `base_url` (`http://127.0.0.1:<port>`) that neither a
    /// [`TestApp`] nor a [`ServerProcess`] runs.
    pub fn at(base_url: &str, key: Option<&str>) -> Self {
        Self::new(http_client(), base_url, key)
    }

    fn new(http: reqwest::Client, base_url: &str, key: Option<&str>) -> Self {
        Self { http, base_url: base_url.to_owned(), key: key.map(str::to_owned), token: None }
    }

    /// The same caller, acting for the device with this token.
    pub fn with_device_token(&self, token: &str) -> Self {
        Self { token: Some(token.to_owned()), ..self.clone() }
    }

    /// A request with any method; the key goes along as `X-API-Key`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let mut inner = self.http.request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(key) = &self.key {
            inner = inner.header("X-API-Key", key);
        }
        if let Some(token) = &self.token {
            inner = inner.bearer_auth(token);
        }
        RequestBuilder { inner, label: format!("{method} {path}") }
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// POST with `body` serialized as JSON (`Content-Type: application/json`).
    pub fn post_json(&self, path: &str, body: &impl Serialize) -> RequestBuilder {
        let RequestBuilder { inner, label } = self.request(Method::POST, path);
        RequestBuilder { inner: inner.json(body), label }
    }

    /// POST with `body` sent as is and no `Content-Type` unless `.header` adds one: for bodies
    /// no serializer writes (NaN, malformed JSON, a reordered or padded document).
    pub fn post_body(&self, path: &str, body: impl Into<String>) -> RequestBuilder {
        let RequestBuilder { inner, label } = self.request(Method::POST, path);
        RequestBuilder { inner: inner.body(body.into()), label }
    }

    /// POST with raw bytes (compressed bodies); no `Content-Type` unless `.header` adds one.
    pub fn post_bytes(&self, path: &str, body: Vec<u8>) -> RequestBuilder {
        let RequestBuilder { inner, label } = self.request(Method::POST, path);
        RequestBuilder { inner: inner.body(body), label }
    }

    /// `POST /api/v1/devices/register` with `body`.
    pub fn register(&self, body: Value) -> RequestBuilder {
        self.post_json("/api/v1/devices/register", &body)
    }

    /// Registers (or re-registers) a device, asserts 200, and returns the registration answer.
    pub async fn register_device(&self, device_id: Uuid, display_name: &str, group_id: &str) -> Value {
        let response = self
            .register(json!({"device_id": device_id, "display_name": display_name, "group_id": group_id}))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "register {display_name} into {group_id}");
        json_body(response).await
    }

    /// A fresh device named "Phone", registered into `group_id`.
    pub async fn registered_device(&self, group_id: &str) -> Uuid {
        let device_id = Uuid::new_v4();
        self.register_device(device_id, "Phone", group_id).await;
        device_id
    }

    /// `GET /api/v1/devices?group_id=…`: asserts 200 and returns the listed devices.
    pub async fn list_group(&self, group_id: &str) -> Vec<Value> {
        let response = self.get(&format!("/api/v1/devices?group_id={group_id}")).await;
        assert_eq!(response.status(), StatusCode::OK, "list {group_id}");
        json_body(response).await["devices"].as_array().expect("a devices array").clone()
    }

    /// `DELETE /api/v1/devices/{device_id}`: deactivation (anything printable, to send bad ids).
    pub fn deactivate(&self, device_id: impl Display) -> RequestBuilder {
        self.delete(&format!("/api/v1/devices/{device_id}"))
    }

    /// `GET /api/v1/groups/{group_id}/stream` as an `EventSource` sends it.
    pub fn stream(&self, group_id: &str) -> RequestBuilder {
        self.get(&format!("/api/v1/groups/{group_id}/stream")).header("Accept", "text/event-stream")
    }

    /// Opens the group's live stream (asserts 200 and `text/event-stream`).
    pub async fn open_stream(&self, group_id: &str, last_event_id: Option<&str>) -> EventStream {
        let mut request = self.stream(group_id);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        EventStream::new(request.await).await
    }

    /// `GET /api/v1/admin/audit{query}` (an admin client's): asserts 200 and returns the page.
    pub async fn audit_log(&self, query: &str) -> Value {
        let response = self.get(&format!("/api/v1/admin/audit{query}")).await;
        assert_eq!(response.status(), StatusCode::OK, "audit log {query}");
        json_body(response).await
    }
}

/// A request on its way: add headers, then `.await` it for the [`Response`] (a request that
/// gets no response at all fails the test; [`RequestBuilder::send`] returns that error instead).
#[must_use = "a request is sent only when awaited"]
pub struct RequestBuilder {
    inner: reqwest::RequestBuilder,
    /// "POST /api/v1/locations", for the panic message when no response comes.
    label: String,
}

impl RequestBuilder {
    pub fn header(self, name: &str, value: impl AsRef<str>) -> Self {
        Self { inner: self.inner.header(name, value.as_ref()), label: self.label }
    }

    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("Idempotency-Key", key)
    }

    /// Sends and returns what reqwest returns, for tests that expect no response at all.
    pub async fn send(self) -> reqwest::Result<Response> {
        self.inner.send().await
    }
}

impl IntoFuture for RequestBuilder {
    type Output = Response;
    type IntoFuture = Pin<Box<dyn Future<Output = Response> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let label = self.label.clone();
            self.send().await.unwrap_or_else(|e| panic!("{label}: no response: {e}"))
        })
    }
}

/// One block of a Server-Sent Events stream: an event, or only comments (a heartbeat).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseBlock {
    /// `event:` (empty for a block of comments only).
    pub event: String,
    pub id: Option<String>,
    /// `data:` lines, joined by newlines.
    pub data: String,
    pub retry: Option<u64>,
    /// `: …` lines.
    pub comments: Vec<String>,
}

impl SseBlock {
    /// `data` as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("{} data is not JSON ({e}): {}", self.event, self.data))
    }
}

/// A live stream read block by block, the way an `EventSource` reads it (the SSE framing of the
/// WHATWG HTML standard: blocks end with an empty line; `field: value` lines; `:` comments).
/// Comments are kept, which SSE client libraries drop: tests look for heartbeats.
pub struct EventStream {
    response: Response,
    /// Bytes received and not parsed yet (a chunk may end inside a character).
    buffer: Vec<u8>,
    pub ended: bool,
}

impl EventStream {
    pub async fn new(response: Response) -> Self {
        let status = response.status();
        if status != StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            panic!("stream answered {status}: {body}");
        }
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
        Self { response, buffer: Vec::new(), ended: false }
    }

    /// The next block within `wait`; None when the stream ended, or nothing came in time.
    pub async fn next_block(&mut self, wait: Duration) -> Option<SseBlock> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // axum ends lines with LF only.
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                return Some(parse_block(std::str::from_utf8(&block[..end]).expect("UTF-8")));
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return None,
                Ok(Ok(Some(chunk))) => self.buffer.extend_from_slice(&chunk),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// The next event (heartbeats skipped) within `wait`; fails the test otherwise.
    pub async fn next_event(&mut self, wait: Duration) -> SseBlock {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_block(left).await {
                Some(block) if block.event.is_empty() && block.data.is_empty() => continue,
                Some(block) => return block,
                None if self.ended => panic!("the stream ended while an event was expected"),
                None => panic!("no event within {wait:?}"),
            }
        }
    }

    /// Events (heartbeats skipped) until `wait` passes without one or the stream ends.
    pub async fn events_until_quiet(&mut self, wait: Duration) -> Vec<SseBlock> {
        let mut events = Vec::new();
        while let Some(block) = self.next_block(wait).await {
            if !block.event.is_empty() {
                events.push(block);
            }
        }
        events
    }

    /// Whether the server ends the stream within `wait` (events before the end are skipped).
    pub async fn ends_within(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if self.next_block(left).await.is_none() && self.ended {
                return true;
            }
        }
        self.ended
    }
}

fn parse_block(text: &str) -> SseBlock {
    let mut block = SseBlock::default();
    let mut data = Vec::new();
    for line in text.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            block.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => block.event = value.to_owned(),
            "id" => block.id = Some(value.to_owned()),
            "data" => data.push(value.to_owned()),
            "retry" => block.retry = value.parse().ok(),
            _ => {}
        }
    }
    block.data = data.join("\n");
    if block.event.is_empty() && !block.data.is_empty() {
        block.event = "message".into();
    }
    block
}

/// Creates the daily partitions of `locations` from `days` days ago (UTC) to today, for tests
/// that write rows with SQL: only uploads create a missing day's partition. The template
/// database is reused for days, so its legacy partition may end before them.
pub async fn create_partitions_back(pool: &PgPool, days: i32) {
    sqlx::query(
        "SELECT create_locations_partition(((now() AT TIME ZONE 'UTC')::date - n))
         FROM generate_series(0, $1) AS n",
    )
    .bind(days)
    .execute(pool)
    .await
    .expect("partitions created");
}

/// Milliseconds since the epoch now: the unit of a fix's `timestamp`.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// A valid fix (no device) taken `seconds_ago`.
pub fn fix(seconds_ago: i64) -> Value {
    json!({"timestamp": now_ms() - seconds_ago * 1000, "latitude": 48.1374, "longitude": 11.5755, "accuracy": 12.5})
}

/// A single upload's body (`POST /api/v1/locations`): `fields` (a [`fix`]) for `device`.
pub fn single(device: Uuid, mut fields: Value) -> Value {
    fields["device_id"] = json!(device);
    fields
}

/// A batch upload's body (`POST /api/v1/locations/batch`): `count` valid fixes for `device`.
pub fn batch(device: Uuid, count: usize) -> Value {
    json!({"device_id": device, "locations": (0..count).map(|n| fix(n as i64 + 1)).collect::<Vec<_>>()})
}

/// Reads a JSON body, failing the test with the raw body when it is not JSON.
pub async fn json_body(response: Response) -> Value {
    let status = response.status();
    let text = response.text().await.expect("body read");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {text}"))
}

/// Asserts the error envelope: status, `error` code, and that `message` is a non-empty string.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let content_type = response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "errors are JSON");
    let body = json_body(response).await;
    assert_eq!(body["error"], code, "error code in {body}");
    assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()), "message in {body}");
    body
}

/// Asserts the one answer to a missing, malformed, unknown, inactive or expired key.
pub async fn assert_unauthorized(response: Response) {
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    // Asserted from many places: one snapshot for all of them.
    insta::allow_duplicates! {
        insta::assert_compact_json_snapshot!(
            body,
            @r#"{"error": "unauthorized", "message": "Invalid or missing API key"}"#
        );
    }
}

/// A TCP forwarder to PostgreSQL that a test can cut and restore, to see how the service
/// behaves while its database is unreachable and after it comes back.
pub struct TcpProxy {
    pub address: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        Self { address, target, task: Some(tokio::spawn(Self::forward(listener, target))) }
    }

    async fn forward(listener: TcpListener, target: SocketAddr) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    }

    /// Closes the listener and every open connection: the database "goes away".
    pub async fn cut(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }

    /// Listens again on the same port: the database "comes back".
    pub async fn restore(&mut self) {
        let listener = TcpListener::bind(self.address).await.expect("rebind proxy port");
        self.task = Some(tokio::spawn(Self::forward(listener, self.target)));
    }
}

/// The `phone-manager` binary serving in its own process (its own metrics registry, real
/// signals), on a free port, against `database_url`. Killed when dropped.
pub struct ServerProcess {
    /// Held so the process lives as long as this value (`kill_on_drop`).
    _child: tokio::process::Child,
    pub base_url: String,
    http: reqwest::Client,
}

impl ServerProcess {
    pub async fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let port = free_port().await;
        let mut command = binary(database_url);
        command
            .env("PM__SERVER__PORT", port.to_string())
            // Expected warnings (Redis cut on purpose, 429s) would only clutter test output.
            .env("PM__LOGGING__LEVEL", "error")
            .envs(env.iter().copied())
            .arg("serve");
        let child = command.spawn().expect("server binary starts");
        let server =
            Self { _child: child, base_url: format!("http://127.0.0.1:{port}"), http: http_client() };
        for _ in 0..200 {
            if let Ok(response) = server.anonymous().get("/api/health/live").send().await
                && response.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server process did not come up on port {port}");
    }

    /// A client sending `key` as `X-API-Key`.
    pub fn client_with_key(&self, key: &str) -> ApiClient {
        ApiClient::new(self.http.clone(), &self.base_url, Some(key))
    }

    /// A client sending no key.
    pub fn anonymous(&self) -> ApiClient {
        ApiClient::new(self.http.clone(), &self.base_url, None)
    }

    /// Sends SIGTERM and waits for a graceful exit; returns whether it exited successfully.
    pub async fn terminate(mut self) -> bool {
        let pid = self._child.id().expect("the server is running").to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(sent.success());
        let status = tokio::time::timeout(Duration::from_secs(20), self._child.wait()).await;
        matches!(status, Ok(Ok(status)) if status.success())
    }

    /// Resident memory of the server process now (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// Peak resident memory of the server process so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        self.status_kib("VmHWM:")
    }

    fn status_kib(&self, field: &str) -> u64 {
        let pid = self._child.id().expect("the server is running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("{field} in /proc/<pid>/status"))
    }

    /// The address the server listens on.
    pub fn socket_addr(&self) -> SocketAddr {
        self.base_url.trim_start_matches("http://").parse().expect("an address")
    }
}

/// The `phone-manager` binary against `database_url`, with no configuration files and only
/// warnings logged (killed when dropped). Add arguments and `PM__…` variables to taste.
pub fn binary(database_url: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_phone-manager"));
    command
        .env("PM__DATABASE__URL", database_url)
        .env("PM__LOGGING__LEVEL", "warn")
        .env("PM_CONFIG_DIR", "/nonexistent")
        .kill_on_drop(true);
    command
}

/// A new API key in the database at `database_url` (for tests that run a [`ServerProcess`]).
pub async fn key_for(database_url: &str, admin: bool) -> String {
    let pool = PgPool::connect(database_url).await.unwrap();
    let key = key_admin(&pool).create("test key", admin, None).await.unwrap().key;
    pool.close().await;
    key
}

/// Key administration on a database, as `phone-manager keys` does it.
pub fn key_admin(pool: &PgPool) -> ApiKeys {
    ApiKeys::new(pool.clone())
}

pub async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port()
}

/// Sends raw bytes over a fresh connection and returns what the server answers until it closes
/// the connection or `wait` passes. For requests no HTTP client will send (a body that stalls).
pub async fn raw_exchange(address: SocketAddr, request: &[u8], wait: Duration) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect");
    stream.write_all(request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(wait, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}
