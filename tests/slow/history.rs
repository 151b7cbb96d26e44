//! History downloads at scale, from a server process of its own.

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestDatabase, key_admin};

/// 100k fixes downloaded as GeoJSON and as GPX: every fix in each, and the server's memory
/// grows by a small part of the download's size (streamed in two passes, never collected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloading_100k_fixes_streams_in_constant_memory() {
    let rows: i64 = 100_000;
    let db = TestDatabase::create().await;
    let server = ServerProcess::start(&db.url, &[]).await;
    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    let key = key_admin(&pool).create("history", false, None).await.unwrap().key;
    let device = Uuid::new_v4();
    sqlx::query("INSERT INTO devices (device_id, display_name, group_id) VALUES ($1, 'Walker', 'fam')")
        .bind(device)
        .execute(&pool)
        .await
        .unwrap();
    // Rows written with SQL need their days' partitions (uploads create them).
    crate::helpers::create_partitions_back(&pool, (rows / 86_400 + 2) as i32).await;
    sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, altitude, provider, captured_at)
         SELECT $1, 48 + n * 1e-6, 17 + n * 1e-6, 5, 150, 'gps', now() - make_interval(secs => n)
         FROM generate_series(1, $2) n",
    )
    .bind(device)
    .bind(rows)
    .execute(&pool)
    .await
    .unwrap();
    let api = server.client_with_key(&key);
    server.anonymous().get("/api/health").await;
    let path = format!("/api/v1/devices/{device}/locations");

    for (media, check) in
        [("application/geo+json", geojson_points as fn(&[u8]) -> usize), ("application/gpx+xml", gpx_points)]
    {
        let baseline = server.peak_rss_kib();
        let response = api.get(&path).header("Accept", media).await;
        assert_eq!(response.status(), StatusCode::OK, "{media}");
        let bytes = response.bytes().await.unwrap();
        let growth_kib = server.peak_rss_kib().saturating_sub(baseline);
        assert_eq!(check(&bytes), rows as usize, "{media}: every fix");
        eprintln!(
            "{media}: {} MB of {rows} fixes; server peak RSS grew by {growth_kib} KiB",
            bytes.len() / 1_000_000
        );
        assert!(
            growth_kib < (bytes.len() as u64 / 1024) / 4,
            "{media}: memory grows by less than a quarter of the download ({growth_kib} KiB of {} KiB)",
            bytes.len() / 1024
        );
    }
    pool.close().await;
}

fn geojson_points(bytes: &[u8]) -> usize {
    let collection: Value = serde_json::from_slice(bytes).expect("valid JSON");
    let features = collection["features"].as_array().unwrap();
    assert_eq!(features[0]["geometry"]["type"], "LineString");
    features.iter().filter(|feature| feature["geometry"]["type"] == "Point").count()
}

fn gpx_points(bytes: &[u8]) -> usize {
    let track = gpx::read(bytes).expect("GPX that an independent reader opens");
    track.tracks[0].segments[0].points.len()
}
