//! Uploads whose checks wait on the server's timers (the once-a-second last-seen flush, job
//! intervals of a second) or run a server process of their own.

use chrono::{Duration, Utc};
use reqwest::StatusCode;
use uuid::Uuid;

use crate::helpers::{ServerProcess, TestApp, TestDatabase, fix, key_for, single};

#[tokio::test]
async fn uploads_mark_the_device_seen_without_touching_updated_at() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    sqlx::query("UPDATE devices SET last_seen_at = now() - interval '1 day' WHERE device_id = $1")
        .bind(device)
        .execute(&app.pool)
        .await
        .unwrap();
    let updated_before: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT updated_at FROM devices WHERE device_id = $1")
            .bind(device)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    api.post_json("/api/v1/locations", &single(device, fix(1))).await;
    let mut seen = None;
    // Written by the next flush (once a second).
    for _ in 0..250 {
        let at: chrono::DateTime<Utc> =
            sqlx::query_scalar("SELECT last_seen_at FROM devices WHERE device_id = $1")
                .bind(device)
                .fetch_one(&app.pool)
                .await
                .unwrap();
        if Utc::now() - at < Duration::seconds(30) {
            seen = Some(at);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(seen.is_some(), "last_seen_at moves after an upload");
    let updated_after: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT updated_at FROM devices WHERE device_id = $1")
            .bind(device)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(updated_before, updated_after, "activity is not a registration change");
}

#[tokio::test]
async fn the_scheduler_runs_jobs_on_their_interval() {
    let app = TestApp::spawn_with(|s| {
        s.jobs.location_retention_interval_secs = 1;
        s.jobs.group_stats_refresh_interval_secs = 1;
        s.jobs.idempotency_cleanup_interval_secs = 1;
        s.limits.location_retention_days = 30;
    })
    .await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    app.insert_aged_locations(device, 40, 5).await;
    assert_eq!(
        api.post_json("/api/v1/locations", &single(device, fix(1))).idempotency_key("old").await.status(),
        StatusCode::OK
    );
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day'")
        .execute(&app.pool)
        .await
        .unwrap();

    let mut done = false;
    for _ in 0..60 {
        let (locations, keys, groups): (i64, i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM locations), (SELECT count(*) FROM idempotency_keys),
                    (SELECT count(*) FROM group_member_counts WHERE group_id = 'fam' AND active_count = 1)",
        )
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if (locations, keys, groups) == (1, 0, 1) {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(done, "retention, idempotency expiry and the view refresh all ran");
}

/// Concurrent uploads without an Idempotency-Key share statements (group commit), yet each
/// request gets its own answer and exactly its own rows: a server process of its own with one
/// writer, so its metrics see only this traffic.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_uploads_share_statements_and_keep_their_own_answers() {
    let db = TestDatabase::create().await;
    let env = [("PM__INGEST__WRITERS", "1"), ("PM__SECURITY__RATE_LIMIT_PER_MINUTE", "100000")];
    let server = ServerProcess::start(&db.url, &env).await;
    let api = server.client_with_key(&key_for(&db.url, false).await);
    let registered: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    for (n, device) in registered.iter().enumerate() {
        api.register_device(*device, &format!("Phone {n}"), "shared").await;
    }
    let deactivated = registered[3];
    assert_eq!(api.deactivate(deactivated).await.status(), StatusCode::NO_CONTENT);
    let unknown = Uuid::new_v4();
    let targets = [registered[0], registered[1], registered[2], deactivated, unknown];

    // 300 single uploads and 50 batches of 3, all at once, spread over the five devices.
    let requests = (0..350).map(|n| {
        let device = targets[n % targets.len()];
        // Every fix its own capture instant: a repeated one would be stored once.
        let (path, body) = if n < 300 {
            ("/api/v1/locations", single(device, fix(n as i64)))
        } else {
            let at = 1_000 + 3 * n as i64;
            (
                "/api/v1/locations/batch",
                serde_json::json!({"device_id": device, "locations": [fix(at), fix(at + 1), fix(at + 2)]}),
            )
        };
        let api = &api;
        async move { (device, path, api.post_json(path, &body).await.status()) }
    });
    let answers = futures_util::future::join_all(requests).await;
    for (device, path, status) in &answers {
        let expected = if *device == deactivated || *device == unknown { 404 } else { 200 };
        assert_eq!(status.as_u16(), expected, "{path} for {device}");
    }

    let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
    for device in targets {
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM locations WHERE device_id = $1")
            .bind(device)
            .fetch_one(&pool)
            .await
            .unwrap();
        let singles = (0..300).filter(|n| targets[n % 5] == device).count() as i64;
        let batches = (300..350).filter(|n| targets[n % 5] == device).count() as i64;
        let expected = if device == deactivated || device == unknown { 0 } else { singles + 3 * batches };
        assert_eq!(stored, expected, "rows of {device}");
    }

    let metrics = server.anonymous().get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {metrics}"))
    };
    let (statements, requests) =
        (value("ingest_statement_requests_count"), value("ingest_statement_requests_sum"));
    assert_eq!(requests, 350.0, "every upload went through exactly one statement");
    assert!(statements < 350.0, "uploads shared statements: {statements} statements for 350 uploads");
    eprintln!("350 concurrent uploads: {statements} statements, {:.1} uploads each", requests / statements);
    pool.close().await;
}
