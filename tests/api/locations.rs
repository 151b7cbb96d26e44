use phone_manager::jobs::Job;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, batch, fix, json_body, now_ms, single};

#[tokio::test]
async fn a_single_fix_is_stored_with_every_field() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let taken = now_ms() - 5_000;
    let body = json!({
        "device_id": device, "timestamp": taken, "latitude": -33.8688, "longitude": 151.2093,
        "accuracy": 4.5, "altitude": 58.25, "bearing": 359.5, "speed": 2.75, "provider": "gps",
        "battery_level": 77, "network_type": "wifi"
    });
    let response = api.post_json("/api/v1/locations", &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_body(response).await;
    insta::assert_compact_json_snapshot!(body, @r#"{"duplicate_count": 0, "expired_count": 0, "processed_count": 1, "stored_count": 1, "success": true}"#);

    #[derive(sqlx::FromRow)]
    struct Stored {
        latitude: f64,
        longitude: f64,
        accuracy: f64,
        altitude: Option<f64>,
        bearing: Option<f64>,
        speed: Option<f64>,
        provider: Option<String>,
        battery_level: Option<i16>,
        network_type: Option<String>,
        captured_ms: i64,
        created_after_capture: bool,
    }
    let row: Stored = sqlx::query_as(
        "SELECT latitude, longitude, accuracy, altitude, bearing, speed, provider, battery_level, network_type,
                (extract(epoch FROM captured_at) * 1000)::bigint AS captured_ms,
                created_at > captured_at AS created_after_capture
         FROM locations WHERE device_id = $1",
    )
    .bind(device)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(row.latitude, -33.8688);
    assert_eq!(row.longitude, 151.2093);
    assert_eq!(row.accuracy, 4.5);
    assert_eq!(row.altitude, Some(58.25));
    assert_eq!(row.bearing, Some(359.5));
    assert_eq!(row.speed, Some(2.75));
    assert_eq!(row.provider.as_deref(), Some("gps"));
    assert_eq!(row.battery_level, Some(77));
    assert_eq!(row.network_type.as_deref(), Some("wifi"));
    assert_eq!(row.captured_ms, taken, "captured_at comes from timestamp (ms)");
    assert!(row.created_after_capture, "created_at is the server's time");
}

#[tokio::test]
async fn unknown_and_deactivated_devices_get_404() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    for path in ["/api/v1/locations", "/api/v1/locations/batch"] {
        let body =
            if path.ends_with("batch") { batch(Uuid::new_v4(), 2) } else { single(Uuid::new_v4(), fix(1)) };
        let body = assert_error(api.post_json(path, &body).await, StatusCode::NOT_FOUND, "not_found").await;
        // Both paths give the one answer.
        insta::allow_duplicates! {
            insta::assert_compact_json_snapshot!(
                body,
                @r#"{"error": "not_found", "message": "Device not found. Please register first."}"#
            );
        }
    }
    let device = api.registered_device("fam").await;
    api.deactivate(device).await;
    let response = api.post_json("/api/v1/locations", &single(device, fix(1))).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    let response = api.post_json("/api/v1/locations/batch", &batch(device, 3)).await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    assert_eq!(app.location_count(device).await, 0);
}

#[tokio::test]
async fn every_rule_at_and_beyond_its_bounds() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    // Each body its own capture instant, so no accepted fix is a duplicate of another.
    let seconds = std::cell::Cell::new(0);
    let with = |field: &str, value: Value| {
        seconds.set(seconds.get() + 1);
        let mut body = single(device, fix(seconds.get()));
        body[field] = value;
        body
    };
    let now = now_ms();
    let accepted = [
        with("latitude", json!(-90.0)),
        with("latitude", json!(90.0)),
        with("longitude", json!(-180.0)),
        with("longitude", json!(180.0)),
        with("accuracy", json!(0.0)),
        with("bearing", json!(0.0)),
        with("bearing", json!(360.0)),
        with("speed", json!(0.0)),
        with("battery_level", json!(0)),
        with("battery_level", json!(100)),
        with("altitude", json!(-1_000_000.0)),
        with("provider", json!("p".repeat(50))),
        with("network_type", json!("n".repeat(50))),
        with("timestamp", json!(now + 295_000)),
        with("timestamp", json!(now - 29 * 86_400_000)),
    ];
    for body in &accepted {
        let response = api.post_json("/api/v1/locations", body).await;
        assert_eq!(response.status(), StatusCode::OK, "{body}");
        assert_eq!(json_body(response).await["stored_count"], 1, "{body}");
    }
    let rejected = [
        ("latitude", with("latitude", json!(-90.0001)), Some("Latitude must be between -90 and 90")),
        ("latitude", with("latitude", json!(90.0001)), Some("Latitude must be between -90 and 90")),
        ("longitude", with("longitude", json!(-180.0001)), Some("Longitude must be between -180 and 180")),
        ("longitude", with("longitude", json!(180.0001)), Some("Longitude must be between -180 and 180")),
        ("accuracy", with("accuracy", json!(-0.01)), Some("Accuracy must be non-negative")),
        ("accuracy", with("accuracy", json!(1e300)), None),
        ("bearing", with("bearing", json!(360.01)), None),
        ("battery_level", with("battery_level", json!(101)), None),
        ("altitude", with("altitude", json!(1_000_000.5)), None),
        ("provider", with("provider", json!("p".repeat(51))), None),
        ("network_type", with("network_type", json!("n".repeat(51))), None),
        (
            "timestamp",
            with("timestamp", json!(now + 310_000)),
            Some("Timestamp must not be more than 300 s ahead of the server's clock"),
        ),
        ("timestamp", with("timestamp", json!(-1)), Some("must be milliseconds since the Unix epoch")),
        ("device_id", with("device_id", json!("nope")), None),
    ];
    for (field, body, message) in &rejected {
        let error = assert_error(
            api.post_json("/api/v1/locations", body).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(error["details"].as_array().unwrap().len(), 1, "{field}: {error}");
        assert_eq!(error["details"][0]["field"], *field, "{error}");
        if let Some(message) = message {
            assert_eq!(error["details"][0]["message"], *message);
        }
    }
    assert_eq!(
        app.location_count(device).await,
        accepted.len() as i64,
        "nothing stored from rejected requests"
    );
}

#[tokio::test]
async fn non_numbers_nan_and_wrong_types_are_400() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    for raw in [
        format!(
            r#"{{"device_id":"{device}","timestamp":{},"latitude":NaN,"longitude":1,"accuracy":1}}"#,
            now_ms()
        ),
        format!(
            r#"{{"device_id":"{device}","timestamp":{},"latitude":1e999,"longitude":1,"accuracy":1}}"#,
            now_ms()
        ),
        format!(
            r#"{{"device_id":"{device}","timestamp":"yesterday","latitude":1,"longitude":1,"accuracy":1}}"#
        ),
        format!(
            r#"{{"device_id":"{device}","timestamp":{},"latitude":1,"longitude":1,"accuracy":1,"battery_level":50.5}}"#,
            now_ms()
        ),
    ] {
        let response =
            api.post_body("/api/v1/locations", raw.clone()).header("Content-Type", "application/json").await;
        assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    }
    let missing = json!({"device_id": device, "latitude": 1.0, "longitude": 1.0});
    let error = assert_error(
        api.post_json("/api/v1/locations", &missing).await,
        StatusCode::BAD_REQUEST,
        "validation_error",
    )
    .await;
    assert_eq!(error["details"][0]["field"], "timestamp");
    assert_eq!(app.location_count(device).await, 0);
}

#[tokio::test]
async fn batches_of_one_and_of_the_maximum_are_stored() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let response = api.post_json("/api/v1/locations/batch", &batch(device, 1)).await;
    let body = json_body(response).await;
    insta::assert_compact_json_snapshot!(body, @r#"{"duplicate_count": 0, "expired_count": 0, "processed_count": 1, "stored_count": 1, "success": true}"#);
    let response = api.post_json("/api/v1/locations/batch", &batch(device, 50)).await;
    let body = json_body(response).await;
    insta::assert_compact_json_snapshot!(body, @r#"{"duplicate_count": 0, "expired_count": 0, "processed_count": 50, "stored_count": 50, "success": true}"#);
    assert_eq!(app.location_count(device).await, 51);
}

#[tokio::test]
async fn empty_and_oversized_batches_are_400() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    for count in [0, 51] {
        let error = assert_error(
            api.post_json("/api/v1/locations/batch", &batch(device, count)).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(
            error["details"],
            json!([{"field": "locations", "message": "must hold 1 to 50 locations"}])
        );
    }
    assert_eq!(app.location_count(device).await, 0);
}

#[tokio::test]
async fn one_bad_fix_rejects_the_whole_batch_with_every_problem_listed() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let mut body = batch(device, 50);
    body["locations"][3]["latitude"] = json!(91.0);
    body["locations"][17]["battery_level"] = json!(140);
    body["locations"][17]["accuracy"] = json!(-1.0);
    let error = assert_error(
        api.post_json("/api/v1/locations/batch", &body).await,
        StatusCode::BAD_REQUEST,
        "validation_error",
    )
    .await;
    let fields: Vec<&str> =
        error["details"].as_array().unwrap().iter().map(|d| d["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["locations[17].accuracy", "locations[17].battery_level", "locations[3].latitude"]);
    assert_eq!(error["details"][2]["message"], "Latitude must be between -90 and 90");
    assert_eq!(app.location_count(device).await, 0, "nothing stored from a rejected batch");

    // A wrong type deep in the batch names its path too.
    let mut body = batch(device, 5);
    body["locations"][4]["longitude"] = json!("east");
    let error = assert_error(
        api.post_json("/api/v1/locations/batch", &body).await,
        StatusCode::BAD_REQUEST,
        "validation_error",
    )
    .await;
    assert_eq!(error["details"][0]["field"], "locations[4].longitude");
}

#[tokio::test]
async fn a_batch_over_the_body_limit_is_413() {
    let app = TestApp::spawn_with(|s| s.limits.max_body_bytes = 4096).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let error = assert_error(
        api.post_json("/api/v1/locations/batch", &batch(device, 50)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    assert_eq!(error["message"], "Request exceeds maximum size of 4096 bytes");
}

#[tokio::test]
async fn idempotent_retries_replay_the_first_answer() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    for (path, body, count) in [
        ("/api/v1/locations", single(device, fix(100)), 1),
        ("/api/v1/locations/batch", batch(device, 25), 25),
    ] {
        let key = Uuid::new_v4().to_string();
        let before = app.location_count(device).await;
        let first = api.post_json(path, &body).idempotency_key(&key).await;
        assert_eq!(first.status(), StatusCode::OK);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first = json_body(first).await;
        for _ in 0..3 {
            let again = api.post_json(path, &body).idempotency_key(&key).await;
            assert_eq!(again.status(), StatusCode::OK);
            assert_eq!(again.headers()["idempotent-replayed"], "true");
            assert_eq!(json_body(again).await, first, "same body");
        }
        assert_eq!(app.location_count(device).await, before + count, "one set of rows for {path}");
    }
}

#[tokio::test]
async fn reusing_a_key_for_another_request_is_422() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let body = single(device, fix(1));
    assert_eq!(
        api.post_json("/api/v1/locations", &body).idempotency_key("key-1").await.status(),
        StatusCode::OK
    );
    let other = single(device, fix(2));
    let error = assert_error(
        api.post_json("/api/v1/locations", &other).idempotency_key("key-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains("different request"));
    assert_eq!(app.location_count(device).await, 1);

    // Formatting differences are not a different request: same fields, other key order.
    let reordered = format!(
        r#"{{"accuracy": {}, "longitude": {}, "latitude": {}, "timestamp": {}, "device_id": "{device}"}}"#,
        body["accuracy"], body["longitude"], body["latitude"], body["timestamp"]
    );
    let response = api
        .post_body("/api/v1/locations", reordered)
        .idempotency_key("key-1")
        .header("Content-Type", "application/json")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
}

#[tokio::test]
async fn keys_are_scoped_to_the_api_key() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let other = app.client().await;
    let body = single(device, fix(1));
    assert_eq!(
        api.post_json("/api/v1/locations", &body).idempotency_key("shared").await.status(),
        StatusCode::OK
    );
    let response = other.post_json("/api/v1/locations", &body).idempotency_key("shared").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("idempotent-replayed").is_none(), "another API key: a new request");
    // A new request, whose fix is already stored: acknowledged as a duplicate.
    assert_eq!(json_body(response).await["duplicate_count"], 1);
    assert_eq!(app.location_count(device).await, 1);
}

#[tokio::test]
async fn a_failed_request_does_not_burn_its_key() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = Uuid::new_v4();
    let body = single(device, fix(1));
    let response = api.post_json("/api/v1/locations", &body).idempotency_key("retry-me").await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    api.register_device(device, "Late phone", "fam").await;
    let response = api.post_json("/api/v1/locations", &body).idempotency_key("retry-me").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.location_count(device).await, 1);
}

#[tokio::test]
async fn malformed_idempotency_keys_are_400() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let long = "k".repeat(256);
    for key in ["", long.as_str(), "with space"] {
        let error = assert_error(
            api.post_json("/api/v1/locations", &single(device, fix(1))).idempotency_key(key).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(error["details"][0]["field"], "Idempotency-Key");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_insert_once() {
    let app = TestApp::spawn_with(|s| s.database.max_connections = 10).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    for round in 0..5 {
        let body = batch(device, 20);
        let idem = format!("dup-{round}");
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(10));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            let (api, body, idem, barrier) = (api.clone(), body.clone(), idem.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                let response = api.post_json("/api/v1/locations/batch", &body).idempotency_key(&idem).await;
                (response.status(), response.json::<Value>().await.unwrap())
            });
        }
        while let Some(result) = tasks.join_next().await {
            let (status, body) = result.unwrap();
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(
                body,
                json!({"success": true, "processed_count": 20, "stored_count": 20, "duplicate_count": 0, "expired_count": 0})
            );
        }
        assert_eq!(app.location_count(device).await, 20 * (round + 1), "round {round}: one insert");
    }
}

#[tokio::test]
async fn the_group_listing_shows_the_newest_fix_by_capture_time() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let (walker, idle) = (api.registered_device("fam").await, api.registered_device("fam").await);
    api.register_device(idle, "Idle phone", "fam").await;
    // Uploaded in this order: the newest capture (10 s ago) arrives before an older one (1 h ago).
    let newest = json!({"timestamp": now_ms() - 10_000, "latitude": 1.5, "longitude": 2.5, "accuracy": 3.5});
    let older =
        json!({"timestamp": now_ms() - 3_600_000, "latitude": -1.0, "longitude": -2.0, "accuracy": 9.0});
    api.post_json("/api/v1/locations", &single(walker, newest.clone())).await;
    api.post_json("/api/v1/locations", &single(walker, older)).await;

    let devices = api.list_group("fam").await;
    let walking = devices.iter().find(|d| d["device_id"] == walker.to_string()).unwrap();
    let last = &walking["last_location"];
    assert_eq!(last["latitude"], 1.5);
    assert_eq!(last["longitude"], 2.5);
    assert_eq!(last["accuracy"], 3.5);
    let timestamp = chrono::DateTime::parse_from_rfc3339(last["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(timestamp.timestamp_millis(), newest["timestamp"].as_i64().unwrap());
    let idle = devices.iter().find(|d| d["device_id"] == idle.to_string()).unwrap();
    assert!(idle["last_location"].is_null(), "null when a device has no fix");
}

mod jobs {
    use super::*;
    use crate::helpers::test_settings;

    #[tokio::test]
    async fn retention_deletes_only_old_rows_in_batches() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        app.insert_aged_locations(device, 31, 25).await;
        app.insert_aged_locations(device, 29, 7).await;
        let mut settings = test_settings(&app.db.url);
        settings.jobs.delete_batch_size = 10; // forces three batches
        let deleted = Job::LocationRetention.run_once(&app.pool, &settings).await.unwrap();
        assert_eq!(deleted, 25);
        assert_eq!(app.location_count(device).await, 7, "rows inside the retention period stay");
    }

    #[tokio::test]
    async fn the_group_stats_view_refreshes() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        for n in 0..3 {
            api.register_device(Uuid::new_v4(), &format!("P{n}"), "stats").await;
        }
        let gone = api.registered_device("fam").await;
        api.deactivate(gone).await;
        let settings = test_settings(&app.db.url);
        let groups = Job::GroupStatsRefresh.run_once(&app.pool, &settings).await.unwrap();
        assert_eq!(groups, 2);
        let counts: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT group_id, active_count, total_count FROM group_member_counts ORDER BY group_id",
        )
        .fetch_all(&app.pool)
        .await
        .unwrap();
        assert_eq!(counts, [("fam".to_owned(), 0, 1), ("stats".to_owned(), 3, 3)]);
    }

    #[tokio::test]
    async fn idempotency_expiry_keeps_live_keys() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        for key in ["a", "b", "c"] {
            let mut body = single(device, fix(1));
            body["latitude"] = json!(key.len());
            api.post_json("/api/v1/locations", &body).idempotency_key(key).await;
        }
        sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '2 days', expires_at = now() - interval '1 day' WHERE id IN (SELECT id FROM idempotency_keys ORDER BY id LIMIT 2)")
            .execute(&app.pool)
            .await
            .unwrap();
        let settings = test_settings(&app.db.url);
        assert_eq!(Job::IdempotencyExpiry.run_once(&app.pool, &settings).await.unwrap(), 2);
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM idempotency_keys").fetch_one(&app.pool).await.unwrap();
        assert_eq!(left, 1);
    }
}

/// When a shared statement fails for one upload's sake, every other upload in it is retried
/// alone and stored: the failure stays with its request. Here a constraint added for the test
/// refuses one latitude, as a race with a deleted device or a schema rule would.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_upload_never_fails_the_others_in_its_statement() {
    let app = TestApp::spawn_with(|s| {
        s.ingest.writers = 1;
        s.security.rate_limit_per_minute = 100_000;
    })
    .await;
    let api = app.client().await;
    sqlx::query("ALTER TABLE locations ADD CONSTRAINT test_refuses CHECK (latitude <> 12.345)")
        .execute(&app.pool)
        .await
        .unwrap();
    let device = api.registered_device("fam").await;
    let api = &api;
    let base = now_ms();
    let bodies = (0..60).map(|n| {
        let latitude = if n % 20 == 7 { 12.345 } else { 48.0 };
        json!({"device_id": device, "timestamp": base - n, "latitude": latitude, "longitude": 11.5,
               "accuracy": 5.0})
    });
    let answers = futures_util::future::join_all(bodies.map(|body| async move {
        (body["latitude"] == 12.345, api.post_json("/api/v1/locations", &body).await)
    }))
    .await;
    for (refused, response) in answers {
        if refused {
            assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        } else {
            assert_eq!(response.status(), StatusCode::OK);
        }
    }
    assert_eq!(app.location_count(device).await, 57, "every upload but the three refused ones");
}
