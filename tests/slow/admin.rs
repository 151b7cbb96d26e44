//! The data export at scale, from a server process of its own.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestDatabase, key_admin};

/// 100k locations exported from a server process of its own: every row, oldest first, valid
/// JSON, and the server's memory stays flat (the rows alone are ~24 MB of JSON).
/// `EXPORT_TEST_ROWS=1000000` measures a larger export.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exporting_100k_locations_streams_in_constant_memory() {
    let rows: i64 = std::env::var("EXPORT_TEST_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(&db.url, &[]).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = key_admin(&pool).create("export", false, None).await.unwrap().key;
    let device = Uuid::new_v4();
    sqlx::query("INSERT INTO devices (device_id, display_name, group_id) VALUES ($1, 'Exported', 'fam')")
        .bind(device)
        .execute(&pool)
        .await
        .unwrap();
    // Inserted newest first, so the export's order cannot come from insertion order.
    // Rows written with SQL need their days' partitions (uploads create them).
    crate::helpers::create_partitions_back(&pool, (rows / 86_400 + 2) as i32).await;
    sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, provider, captured_at)
         SELECT $1, (n % 180) - 89.5, (n % 360) - 179.5, n % 50, 'gps', now() - make_interval(secs => n)
         FROM generate_series(1, $2) n",
    )
    .bind(device)
    .bind(rows)
    .execute(&pool)
    .await
    .unwrap();
    let api = server.client_with_key(&key);
    // Warm up (first request allocates pools, TLS-free buffers…) before taking the baseline.
    server.anonymous().get("/api/health").await;
    let baseline = server.peak_rss_kib();

    let started = Instant::now();
    let response = api.get(&format!("/api/v1/devices/{device}/data-export")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-disposition"],
        format!("attachment; filename=\"device-{device}-export.json\"").as_str()
    );
    let bytes = response.bytes().await.unwrap();
    let elapsed = started.elapsed();
    let peak = server.peak_rss_kib();

    let export: Value = serde_json::from_slice(&bytes).expect("the export is valid JSON");
    assert_eq!(export["device"]["device_id"], device.to_string());
    assert_eq!(export["location_count"], rows);
    let locations = export["locations"].as_array().unwrap();
    assert_eq!(locations.len() as i64, rows, "every row");
    let times: Vec<&str> = locations.iter().map(|l| l["captured_at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest capture first");
    let growth_kib = peak.saturating_sub(baseline);
    eprintln!(
        "export of {rows} locations: {} MB in {:.2} s; server peak RSS {} MB (baseline {} MB, growth {} KB)",
        bytes.len() / 1_000_000,
        elapsed.as_secs_f64(),
        peak / 1024,
        baseline / 1024,
        growth_kib
    );
    assert!(elapsed < Duration::from_secs(30) || rows > 100_000, "100k well under 30 s");
    assert!(
        growth_kib < (bytes.len() as u64 / 1024) / 2,
        "memory grows by less than half the export's size: streamed, not collected ({growth_kib} KiB)"
    );
    pool.close().await;
}
