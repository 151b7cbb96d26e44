//! `locations` partitioned by capture day (migration 0013): partitions created ahead, retention
//! by dropping whole days, uniqueness and history across day boundaries, uploads for a day with
//! no partition, and the migration of a seeded database.

use chrono::{DateTime, Days, Duration, NaiveDate, TimeZone, Utc};
use phone_manager::{db, jobs::Job};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use uuid::Uuid;

use crate::helpers::{TestApp, TestDatabase, assert_error, json_body, test_settings};

/// The partitions of `locations` by name.
async fn partitions(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'locations'::regclass ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .unwrap()
}

fn partition_name(day: NaiveDate) -> String {
    format!("locations_p{}", day.format("%Y%m%d"))
}

fn today() -> NaiveDate {
    Utc::now().date_naive()
}

fn days_ago(n: u64) -> NaiveDate {
    today().checked_sub_days(Days::new(n)).unwrap()
}

fn midnight(day: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&day.and_hms_opt(0, 0, 0).unwrap())
}

/// Replaces the legacy partition (which covers everything before the template database's
/// creation day) by daily partitions for the last `days` days, as a database looks once the
/// legacy range has been dropped. The test database has no rows yet.
async fn daily_partitions_only(pool: &PgPool, days: u64) {
    pool.execute("ALTER TABLE locations DETACH PARTITION locations_legacy").await.unwrap();
    pool.execute("DROP TABLE locations_legacy").await.unwrap();
    db::locations::create_partitions(pool, days_ago(days), days as u32).await.unwrap();
}

async fn upload_batch(api: &crate::helpers::ApiClient, device: Uuid, stamps: &[i64]) -> Value {
    let locations: Vec<Value> = stamps
        .iter()
        .map(|ms| json!({"timestamp": ms, "latitude": 48.1, "longitude": 11.5, "accuracy": 5.0}))
        .collect();
    let response =
        api.post_json("/api/v1/locations/batch", &json!({"device_id": device, "locations": locations})).await;
    assert_eq!(response.status(), StatusCode::OK);
    json_body(response).await
}

fn counts(receipt: &Value) -> (u64, u64) {
    (receipt["stored_count"].as_u64().unwrap(), receipt["duplicate_count"].as_u64().unwrap())
}

#[tokio::test]
async fn partitions_are_created_ahead_at_start_up_and_by_the_job() {
    let app = TestApp::spawn().await;
    let names = partitions(&app.pool).await;
    for n in 1..=7 {
        let day = today().checked_add_days(Days::new(n)).unwrap();
        assert!(names.contains(&partition_name(day)), "{} in {names:?}", partition_name(day));
    }
    // Today is held by its own partition, or by the legacy one when the template is from today.
    assert!(names.contains(&partition_name(today())) || names.contains(&"locations_legacy".to_owned()));

    let mut settings = test_settings(&app.db.url);
    settings.jobs.location_partitions_ahead_days = 10;
    let created = Job::PartitionMaintenance.run_once(&app.pool, &settings).await.unwrap();
    assert_eq!(created, 3, "days 8 to 10 were missing");
    assert_eq!(Job::PartitionMaintenance.run_once(&app.pool, &settings).await.unwrap(), 0);
    let names = partitions(&app.pool).await;
    assert!(names.contains(&partition_name(today().checked_add_days(Days::new(10)).unwrap())));
}

#[tokio::test]
async fn retention_drops_expired_partitions_and_deletes_the_partly_expired_one_in_batches() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    // The legacy partition ends 8 days ago (as if migrated then); daily partitions follow.
    app.pool.execute("ALTER TABLE locations DETACH PARTITION locations_legacy").await.unwrap();
    app.pool
        .execute(
            format!(
                "ALTER TABLE locations ATTACH PARTITION locations_legacy FOR VALUES FROM (MINVALUE) TO ('{}')",
                midnight(days_ago(8)).to_rfc3339()
            )
            .as_str(),
        )
        .await
        .unwrap();
    db::locations::create_partitions(&app.pool, days_ago(8), 8).await.unwrap();
    let insert = |at: DateTime<Utc>, n: i32| {
        sqlx::query(
            "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
             SELECT $1, 1, 1, 1, $2 + make_interval(secs => g) FROM generate_series(0, $3 - 1) g",
        )
        .bind(device)
        .bind(at)
        .bind(n)
        .execute(&app.pool)
    };
    let retention_days = 5;
    let cutoff = Utc::now() - Duration::days(retention_days);
    let cutoff_day = midnight(cutoff.date_naive());
    insert(midnight(days_ago(20)), 11).await.unwrap(); // legacy, wholly expired
    insert(midnight(days_ago(7)), 13).await.unwrap(); // a daily partition, wholly expired
    insert(midnight(days_ago(6)) + Duration::hours(23), 17).await.unwrap(); // ditto
    // The partition holding the cutoff: 7 rows before it (deleted), 3 after (kept).
    let before = cutoff_day + (cutoff - cutoff_day) / 2;
    insert(before - Duration::seconds(7), 7).await.unwrap();
    insert(cutoff + Duration::minutes(1), 3).await.unwrap();
    insert(midnight(days_ago(1)), 5).await.unwrap(); // recent

    let mut settings = test_settings(&app.db.url);
    settings.limits.location_retention_days = retention_days as u32;
    settings.jobs.delete_batch_size = 4; // the partly expired partition takes two batches
    let removed = Job::LocationRetention.run_once(&app.pool, &settings).await.unwrap();
    assert_eq!(removed, 11 + 13 + 17 + 7);
    assert_eq!(app.location_count(device).await, 3 + 5);

    let names = partitions(&app.pool).await;
    for gone in ["locations_legacy".to_owned(), partition_name(days_ago(8)), partition_name(days_ago(7))] {
        assert!(!names.contains(&gone), "{gone} dropped: {names:?}");
    }
    assert!(names.contains(&partition_name(cutoff.date_naive())), "the partly expired day stays");
    let oldest: DateTime<Utc> =
        sqlx::query_scalar("SELECT min(captured_at) FROM locations").fetch_one(&app.pool).await.unwrap();
    assert!(oldest >= cutoff);
    assert_eq!(
        Job::LocationRetention.run_once(&app.pool, &settings).await.unwrap(),
        0,
        "nothing left to remove"
    );
}

#[tokio::test]
async fn one_fix_per_instant_across_the_day_boundary() {
    let app = TestApp::spawn().await;
    daily_partitions_only(&app.pool, 3).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let midnight_ms = midnight(today()).timestamp_millis();
    let (last, first) = (midnight_ms - 1, midnight_ms); // 23:59:59.999 and 00:00:00.000
    assert_eq!(counts(&upload_batch(&api, device, &[last, first]).await), (2, 0));
    let homes: Vec<String> = sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM locations WHERE device_id = $1 ORDER BY captured_at",
    )
    .bind(device)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(homes, [partition_name(days_ago(1)), partition_name(today())]);
    // Each again, alone and together: acknowledged, not stored.
    assert_eq!(counts(&upload_batch(&api, device, &[last]).await), (0, 1));
    assert_eq!(counts(&upload_batch(&api, device, &[first]).await), (0, 1));
    assert_eq!(counts(&upload_batch(&api, device, &[first, last, first + 1]).await), (1, 2));
    assert_eq!(app.location_count(device).await, 3);
}

#[tokio::test]
async fn an_upload_for_a_day_without_a_partition_is_stored() {
    let app = TestApp::spawn().await;
    daily_partitions_only(&app.pool, 1).await; // yesterday and today only
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let three_days_ago = (Utc::now() - Duration::days(3)).timestamp_millis();
    assert!(!partitions(&app.pool).await.contains(&partition_name(days_ago(3))));

    // A single upload.
    let single = json!({"device_id": device, "timestamp": three_days_ago, "latitude": 48.1, "longitude": 11.5,
                        "accuracy": 5.0});
    let response = api.post_json("/api/v1/locations", &single).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&json_body(response).await), (1, 0));
    assert!(partitions(&app.pool).await.contains(&partition_name(days_ago(3))));

    // A keyed batch over two more days without partitions.
    let five = (Utc::now() - Duration::days(5)).timestamp_millis();
    let ten = (Utc::now() - Duration::days(10)).timestamp_millis();
    let body = json!({"device_id": device, "locations": [
        {"timestamp": five, "latitude": 48.1, "longitude": 11.5, "accuracy": 5.0},
        {"timestamp": ten, "latitude": 48.1, "longitude": 11.5, "accuracy": 5.0}]});
    let response = api.post_json("/api/v1/locations/batch", &body).idempotency_key("offline-buffer").await;
    assert_eq!(response.status(), StatusCode::OK);
    let receipt = json_body(response).await;
    assert_eq!(counts(&receipt), (2, 0));
    let replay = api.post_json("/api/v1/locations/batch", &body).idempotency_key("offline-buffer").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(json_body(replay).await, receipt);

    // All three in the history.
    let page = json_body(
        api.get(&format!("/api/v1/devices/{device}/locations?from={}&order=asc", ten - 1000)).await,
    )
    .await;
    let stamps: Vec<i64> = page["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            chrono::DateTime::parse_from_rfc3339(l["captured_at"].as_str().unwrap())
                .unwrap()
                .timestamp_millis()
        })
        .collect();
    assert_eq!(stamps, [ten, five, three_days_ago]);
}

#[tokio::test]
async fn history_pages_across_partitions_in_order() {
    let app = TestApp::spawn().await;
    daily_partitions_only(&app.pool, 4).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    // Every 5 hours over four days: 20 fixes in five partitions, uploaded out of order.
    let start = midnight(days_ago(4)).timestamp_millis() + 3_600_000;
    let mut stamps: Vec<i64> = (0..20).map(|n| start + n * 5 * 3_600_000).collect();
    let mut shuffled = stamps.clone();
    shuffled.reverse();
    shuffled.swap(3, 11);
    upload_batch(&api, device, &shuffled).await;
    let in_partitions: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT tableoid) FROM locations WHERE device_id = $1")
            .bind(device)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(in_partitions >= 4, "{in_partitions}");
    for order in ["asc", "desc"] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = format!("?from={}&order={order}&limit=3", start - 1000);
            if let Some(cursor) = &cursor {
                query.push_str(&format!("&cursor={cursor}"));
            }
            let page = json_body(api.get(&format!("/api/v1/devices/{device}/locations{query}")).await).await;
            seen.extend(page["locations"].as_array().unwrap().iter().map(|l| {
                chrono::DateTime::parse_from_rfc3339(l["captured_at"].as_str().unwrap())
                    .unwrap()
                    .timestamp_millis()
            }));
            match page["pagination"]["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => break,
            }
        }
        if order == "desc" {
            stamps.reverse();
        }
        assert_eq!(seen, stamps, "{order}");
    }
}

/// Applies migration 0013 to a database migrated to 0012 and holding rows: nothing is copied or
/// lost, ids carry on, one row per device and instant still holds, and the legacy rows are
/// deleted with their device.
#[tokio::test]
async fn the_migration_keeps_every_row_of_a_seeded_database() {
    let scratch = TestDatabase::empty().await;
    let mut conn = PgConnection::connect(&scratch.url).await.unwrap();
    let (before, after): (Vec<_>, Vec<_>) = db::MIGRATOR.iter().partition(|m| m.version <= 12);
    assert_eq!(after.iter().map(|m| m.version).collect::<Vec<_>>(), [13], "0013 is the last migration");
    for migration in before {
        conn.execute(sqlx::raw_sql(&migration.sql)).await.unwrap();
    }
    let devices = [Uuid::new_v4(), Uuid::new_v4()];
    for device in devices {
        sqlx::query("INSERT INTO devices (device_id, display_name, group_id) VALUES ($1, 'Seeded', 'fam')")
            .bind(device)
            .execute(&mut conn)
            .await
            .unwrap();
        // 40 days of fixes, one an hour, up to now.
        sqlx::query(
            "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
             SELECT $1, 48, 11, 5, now() - make_interval(hours => n) FROM generate_series(0, 959) n",
        )
        .bind(device)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let fingerprint = "SELECT count(*), sum(id)::bigint, max(id), md5(string_agg(device_id::text || captured_at::text, ',' ORDER BY id))
                       FROM locations";
    let seeded: (i64, i64, i64, String) = sqlx::query_as(fingerprint).fetch_one(&mut conn).await.unwrap();
    assert_eq!(seeded.0, 1920);

    conn.execute(sqlx::raw_sql(&after[0].sql)).await.unwrap();

    let migrated: (i64, i64, i64, String) = sqlx::query_as(fingerprint).fetch_one(&mut conn).await.unwrap();
    assert_eq!(migrated, seeded, "the same rows with the same ids");
    let all_legacy: bool =
        sqlx::query_scalar("SELECT bool_and(tableoid = 'locations_legacy'::regclass) FROM locations")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(all_legacy, "no row copied: the old table is the first partition");
    let kind: String = sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE relname = 'locations'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(kind, "p");

    // Ids carry on; a second row for a seeded instant is refused; a new day gets its partition.
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
         VALUES ($1, 1, 1, 1, now() + interval '1 day') RETURNING id",
    )
    .bind(devices[0])
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(id, seeded.2 + 1);
    let duplicate = sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
         SELECT device_id, 1, 1, 1, captured_at FROM locations WHERE device_id = $1 ORDER BY id LIMIT 1",
    )
    .bind(devices[0])
    .execute(&mut conn)
    .await
    .unwrap_err();
    assert_eq!(duplicate.as_database_error().unwrap().code().as_deref(), Some("23505"));

    // The listing view reads the new table; erasure cascades into the legacy partition.
    let newest: DateTime<Utc> = sqlx::query_scalar(
        "SELECT (last_location).captured_at FROM devices_with_last_location WHERE device_id = $1",
    )
    .bind(devices[1])
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(Utc::now() - newest < Duration::minutes(5));
    sqlx::query("DELETE FROM devices WHERE device_id = $1")
        .bind(devices[1])
        .execute(&mut conn)
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM locations").fetch_one(&mut conn).await.unwrap();
    assert_eq!(left, 961);
    conn.close().await.unwrap();
}

/// Creating a missing day's partition waits at most 2 s for the table's lock (decision 38).
/// While something holds the table that long (an export reading it), the upload is a 503 the
/// phone retries, never a 500; once the table is free, the same upload is stored.
#[tokio::test]
async fn an_upload_that_cannot_create_its_partition_in_time_is_a_503_then_stored() {
    let app = TestApp::spawn().await;
    daily_partitions_only(&app.pool, 1).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let fix = json!({"device_id": device, "timestamp": (Utc::now() - Duration::days(3)).timestamp_millis(),
                     "latitude": 48.1, "longitude": 11.5, "accuracy": 5.0});

    let mut reader = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE locations IN ACCESS SHARE MODE").execute(&mut *reader).await.unwrap();
    let response = api.post_json("/api/v1/locations", &fix).await;
    assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "service_unavailable").await;
    reader.rollback().await.unwrap();

    let response = api.post_json("/api/v1/locations", &fix).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(counts(&json_body(response).await), (1, 0));
}
