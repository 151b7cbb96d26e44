//! Throughput ratios measured in one run, on one machine, so that drift between machines and
//! runs cancels out:
//!
//! 1. the whole middleware stack: an authenticated trivial endpoint (`GET /api/v1/keys/current`:
//!    key lookup, rate limit, metrics, logging, headers), a public one (`/api/health/live`) and
//!    an authenticated single location upload (stored in PostgreSQL) against a bare axum
//!    route, all served by this process, loaded by `wrk`;
//! 2. batch ingest: `POST /api/v1/locations/batch` with 50 fixes (validation, idempotency-free
//!    path, one UNNEST insert) against raw multi-row `INSERT`s of the same rows over sqlx;
//! 3. tracing: `POST /api/v1/locations` on two server processes of the release binary, one
//!    exporting every span over OTLP/gRPC to a local receiver, one with export off.
//!
//! Run: `cargo bench --bench throughput` (needs PostgreSQL at DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/postgres, and `wrk` for part 1: `apt-get install wrk`).
//! Knobs: BENCH_SECONDS (wrk duration, default 10), BENCH_CONNECTIONS (default 64),
//! BENCH_BATCHES (default 4000), BENCH_CONCURRENCY (ingest, default 8).

use std::{process::Command, sync::Arc, time::Instant};

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use chrono::Utc;
use phone_manager::{config::Settings, domain::api_keys::ApiKeys, startup::Application};
use serde_json::{Value, json};
use sqlx::{Executor, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn database_url(name: &str) -> String {
    let url = server_url();
    format!("{}/{name}", url.rsplit_once('/').map_or(url.as_str(), |(base, _)| base))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let name = format!("pm_bench_{}", std::process::id());
    let mut settings = Settings::load()?;
    settings.server.port = 0;
    settings.database.url = database_url(&name);
    settings.database.max_connections = 10;
    settings.security.rate_limit_per_minute = 1_000_000_000;
    settings.jobs.enabled = false;
    let app = Application::build(settings).await?;
    let port = app.port();
    let pool = app.pool().clone();
    tokio::spawn(app.run_until_stopped(std::future::pending()));

    let bare = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let bare_port = bare.local_addr()?.port();
    // A pool of the same size as the service's, for the bare handler that stores a fix.
    let bare_pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(10).connect(&database_url(&name)).await?;
    tokio::spawn(async move {
        let router = Router::new()
            .route("/bare", get(|| async { "ok" }))
            .route("/bare/locations", post(bare_upload))
            .with_state(bare_pool);
        axum::serve(bare, router).await
    });

    let key = ApiKeys::new(pool.clone()).create("bench", false, None).await?.key;
    let result = run(port, bare_port, &key, &pool).await;
    pool.close().await;
    let admin = PgPool::connect(&server_url()).await?;
    admin.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str()).await?;
    result
}

#[derive(serde::Deserialize)]
struct BareFix {
    device_id: Uuid,
    timestamp: i64,
    latitude: f64,
    longitude: f64,
    accuracy: f32,
}

/// The same row as `POST /api/v1/locations`, stored the plainest way: serde, one INSERT on the
/// pool, no authentication, validation, device check, middleware or group commit.
async fn bare_upload(State(pool): State<PgPool>, Json(fix): Json<BareFix>) -> StatusCode {
    let stored = sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
         VALUES ($1, $2, $3, $4, to_timestamp($5::float8 / 1000))",
    )
    .bind(fix.device_id)
    .bind(fix.latitude)
    .bind(fix.longitude)
    .bind(fix.accuracy)
    .bind(fix.timestamp as f64)
    .execute(&pool)
    .await;
    if stored.is_ok() { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR }
}

async fn run(port: u16, bare_port: u16, key: &str, pool: &PgPool) -> anyhow::Result<()> {
    println!("# Throughput ratios ({} cores)\n", std::thread::available_parallelism().map_or(0, |n| n.get()));
    let upload_script = single_upload_script(port, key).await?;
    middleware_overhead(port, bare_port, key, &upload_script);
    let _ = std::fs::remove_file(&upload_script);
    batch_ingest(port, key, pool).await?;
    tracing_overhead(key).await
}

struct WrkResult {
    requests_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: bool,
}

/// `wrk` with an optional Lua script (for POST bodies).
fn wrk_with(url: &str, key: Option<&str>, script: Option<&std::path::Path>) -> Option<WrkResult> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let connections = env_or("BENCH_CONNECTIONS", 64);
    let mut command = Command::new("wrk");
    command.args(["-t2", &format!("-c{connections}"), &format!("-d{seconds}s"), "--latency"]);
    if let Some(key) = key {
        command.args(["-H", &format!("X-API-Key: {key}")]);
    }
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |prefix: &str| {
        text.lines().find_map(|line| line.trim().strip_prefix(prefix).map(|rest| rest.trim().to_owned()))
    };
    let millis = |value: String| -> f64 {
        let (number, factor) = if let Some(v) = value.strip_suffix("ms") {
            (v, 1.0)
        } else if let Some(v) = value.strip_suffix("us") {
            (v, 0.001)
        } else if let Some(v) = value.strip_suffix('s') {
            (v, 1000.0)
        } else {
            (value.as_str(), 1.0)
        };
        number.parse::<f64>().unwrap_or(f64::NAN) * factor
    };
    Some(WrkResult {
        requests_per_sec: field("Requests/sec:")?.parse().ok()?,
        p50_ms: millis(field("50%")?),
        p99_ms: millis(field("99%")?),
        errors: text.contains("Non-2xx") || text.contains("Socket errors"),
    })
}

/// Registers a device and writes a wrk script that uploads one fix for it (the timestamp is
/// now, so the same body stays valid for the 7 days the API accepts).
async fn single_upload_script(port: u16, key: &str) -> anyhow::Result<std::path::PathBuf> {
    let device = Uuid::new_v4();
    reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/devices/register"))
        .header("X-API-Key", key)
        .json(&json!({"device_id": device, "display_name": "Bench", "group_id": "bench"}))
        .send()
        .await?
        .error_for_status()?;
    let body = json!({"device_id": device, "timestamp": Utc::now().timestamp_millis(),
                      "latitude": 48.1, "longitude": 11.5, "accuracy": 10.0});
    let script = std::env::temp_dir().join(format!("pm-bench-upload-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;
    Ok(script)
}

fn middleware_overhead(port: u16, bare_port: u16, key: &str, upload_script: &std::path::Path) {
    println!("## Middleware stack vs a bare axum route (wrk, same process)\n");
    let cases = [
        ("bare axum route `GET /bare`", format!("http://127.0.0.1:{bare_port}/bare"), None, None),
        (
            "public `GET /api/health/live` (full stack, no key)",
            format!("http://127.0.0.1:{port}/api/health/live"),
            None,
            None,
        ),
        (
            "authenticated `GET /api/v1/keys/current`",
            format!("http://127.0.0.1:{port}/api/v1/keys/current"),
            Some(key),
            None,
        ),
        (
            "bare axum handler storing the same fix `POST /bare/locations` (serde + one INSERT)",
            format!("http://127.0.0.1:{bare_port}/bare/locations"),
            None,
            Some(upload_script),
        ),
        (
            "authenticated single upload `POST /api/v1/locations` (stored in PostgreSQL)",
            format!("http://127.0.0.1:{port}/api/v1/locations"),
            Some(key),
            Some(upload_script),
        ),
    ];
    let (mut baseline, mut rates) = (None, Vec::new());
    println!("| endpoint | req/s | p50 ms | p99 ms | vs bare |");
    println!("|---|---:|---:|---:|---:|");
    for (label, url, key, script) in cases {
        let Some(result) = wrk_with(&url, key, script) else {
            println!("\n(wrk not found: `apt-get install wrk` to measure this part)\n");
            return;
        };
        let base = *baseline.get_or_insert(result.requests_per_sec);
        println!(
            "| {label}{} | {:.0} | {:.2} | {:.2} | {:.2} |",
            if result.errors { " (errors!)" } else { "" },
            result.requests_per_sec,
            result.p50_ms,
            result.p99_ms,
            result.requests_per_sec / base
        );
        rates.push(result.requests_per_sec);
    }
    if let [.., bare_store, ours] = rates[..] {
        println!(
            "\nAuthenticated single upload vs the bare handler storing the same fix: **{:.2}**",
            ours / bare_store
        );
    }
    println!();
}

fn fixes(count: usize) -> Vec<Value> {
    let now = Utc::now().timestamp_millis();
    (0..count)
        .map(|n| {
            json!({"timestamp": now - (n as i64) * 1000, "latitude": 48.1 + n as f64 * 1e-4, "longitude": 11.5,
                   "accuracy": 10.0, "speed": 1.5, "battery_level": 80, "provider": "fused"})
        })
        .collect()
}

async fn batch_ingest(port: u16, key: &str, pool: &PgPool) -> anyhow::Result<()> {
    let batches = env_or("BENCH_BATCHES", 4000);
    let concurrency = env_or("BENCH_CONCURRENCY", 8);
    let client = reqwest::Client::new();
    let device = Uuid::new_v4();
    client
        .post(format!("http://127.0.0.1:{port}/api/v1/devices/register"))
        .header("X-API-Key", key)
        .json(&json!({"device_id": device, "display_name": "Bench", "group_id": "bench"}))
        .send()
        .await?
        .error_for_status()?;
    let body = Arc::new(json!({"device_id": device, "locations": fixes(50)}));

    // Ours, end to end over HTTP.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (client, body, key) = (client.clone(), body.clone(), key.to_owned());
        let url = format!("http://127.0.0.1:{port}/api/v1/locations/batch");
        tasks.spawn(async move {
            for _ in (worker..batches).step_by(concurrency) {
                client.post(&url).header("X-API-Key", &key).json(&*body).send().await?.error_for_status()?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let ours = started.elapsed();

    // Raw: the same rows as multi-row INSERTs, same concurrency, straight over sqlx.
    let now = Utc::now();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let pool = pool.clone();
        tasks.spawn(async move {
            for _ in (worker..batches).step_by(concurrency) {
                let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
                    "INSERT INTO locations (device_id, latitude, longitude, accuracy, speed, battery_level, provider, captured_at) ",
                );
                insert.push_values(0..50, |mut row, n| {
                    row.push_bind(device)
                        .push_bind(48.1 + f64::from(n) * 1e-4)
                        .push_bind(11.5_f64)
                        .push_bind(10.0_f32)
                        .push_bind(1.5_f32)
                        .push_bind(80_i16)
                        .push_bind("fused")
                        .push_bind(now - chrono::Duration::seconds(i64::from(n)));
                });
                insert.build().execute(&pool).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(result) = tasks.join_next().await {
        result??;
    }
    let raw = started.elapsed();

    let rows = (batches * 50) as f64;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM locations WHERE device_id = $1")
        .bind(device)
        .fetch_one(pool)
        .await?;
    assert_eq!(stored as f64, rows * 2.0, "every row stored");
    let (ours_rate, raw_rate) = (rows / ours.as_secs_f64(), rows / raw.as_secs_f64());
    println!("## Batch ingest: {batches} batches of 50 ({rows} rows), {concurrency} concurrent\n");
    println!("| path | seconds | rows/s | batches/s | vs raw |");
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| `POST /api/v1/locations/batch` (HTTP, auth, validation, UNNEST insert) | {:.2} | {ours_rate:.0} | {:.0} | {:.2} |",
        ours.as_secs_f64(),
        batches as f64 / ours.as_secs_f64(),
        ours_rate / raw_rate
    );
    println!(
        "| raw multi-row `INSERT` over sqlx | {:.2} | {raw_rate:.0} | {:.0} | 1.00 |",
        raw.as_secs_f64(),
        batches as f64 / raw.as_secs_f64()
    );
    Ok(())
}

/// Starts the release binary serving on `port` with extra environment; killed on drop.
fn server_process(port: u16, env: &[(&str, String)]) -> anyhow::Result<std::process::Child> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_phone-manager"));
    command
        .env("PM__SERVER__PORT", port.to_string())
        .env("PM__DATABASE__URL", database_url(&format!("pm_bench_{}", std::process::id())))
        .env("PM__DATABASE__MAX_CONNECTIONS", "10")
        .env("PM__SECURITY__RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("PM__JOBS__ENABLED", "false")
        .env("PM_CONFIG_DIR", "/nonexistent")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    Ok(command.arg("serve").spawn()?)
}

async fn wait_ready(port: u16) -> anyhow::Result<()> {
    for _ in 0..200 {
        if reqwest::get(format!("http://127.0.0.1:{port}/api/health/ready"))
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("server on port {port} did not become ready")
}

async fn free_port() -> anyhow::Result<u16> {
    Ok(tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port())
}

async fn tracing_overhead(key: &str) -> anyhow::Result<()> {
    let collector = fake_opentelemetry_collector::FakeCollectorServer::start()
        .await
        .map_err(|e| anyhow::anyhow!("OTLP receiver: {e}"))?;
    let (plain_port, traced_port) = (free_port().await?, free_port().await?);
    let mut plain = server_process(plain_port, &[])?;
    let mut traced = server_process(
        traced_port,
        &[
            ("PM__TELEMETRY__OTLP_ENDPOINT", collector.endpoint()),
            ("PM__TELEMETRY__OTLP_PROTOCOL", "grpc".into()),
        ],
    )?;
    wait_ready(plain_port).await?;
    wait_ready(traced_port).await?;

    let client = reqwest::Client::new();
    let device = Uuid::new_v4();
    client
        .post(format!("http://127.0.0.1:{plain_port}/api/v1/devices/register"))
        .header("X-API-Key", key)
        .json(&json!({"device_id": device, "display_name": "Traced", "group_id": "tracing"}))
        .send()
        .await?
        .error_for_status()?;
    let body = json!({"device_id": device, "timestamp": Utc::now().timestamp_millis(),
                      "latitude": 48.1, "longitude": 11.5, "accuracy": 10.0});
    let script = std::env::temp_dir().join(format!("pm-bench-{}.lua", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
        ),
    )?;

    println!("## Tracing: `POST /api/v1/locations`, export on vs off (two processes, wrk)\n");
    println!("| server | req/s | p50 ms | p99 ms | vs off |");
    println!("|---|---:|---:|---:|---:|");
    let url = |port: u16| format!("http://127.0.0.1:{port}/api/v1/locations");
    let results = [
        ("export off", wrk_with(&url(plain_port), Some(key), Some(&script))),
        ("export on (OTLP/gRPC, every span sampled)", wrk_with(&url(traced_port), Some(key), Some(&script))),
    ];
    let base = results[0].1.as_ref().map_or(f64::NAN, |r| r.requests_per_sec);
    for (label, result) in results {
        match result {
            Some(r) => println!(
                "| {label}{} | {:.0} | {:.2} | {:.2} | {:.2} |",
                if r.errors { " (errors!)" } else { "" },
                r.requests_per_sec,
                r.p50_ms,
                r.p99_ms,
                r.requests_per_sec / base
            ),
            None => println!("| {label} | (wrk not found) | | | |"),
        }
    }
    let _ = std::fs::remove_file(&script);
    let _ = plain.kill();
    let _ = traced.kill();
    let _ = plain.wait();
    let _ = traced.wait();
    Ok(())
}
