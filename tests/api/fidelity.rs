//! What a phone sends is stored once, exactly as sent, and never lost over a detail: each kind
//! of fault the real app (and the bug reports of peer systems) ran into, through real HTTP.

use std::io::Write;

use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    ApiClient, TestApp, assert_error, fix, json_body, key_admin, now_ms, raw_exchange, single,
};

async fn upload(api: &ApiClient, body: &Value) -> Value {
    let response = api.post_json("/api/v1/locations", body).await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    json_body(response).await
}

async fn upload_batch(api: &ApiClient, body: &Value, key: Option<&str>) -> Value {
    let mut request = api.post_json("/api/v1/locations/batch", body);
    if let Some(key) = key {
        request = request.idempotency_key(key);
    }
    let response = request.await;
    assert_eq!(response.status(), StatusCode::OK, "{body}");
    json_body(response).await
}

/// `n` fixes a minute apart, the newest `ends_ago` seconds ago, each with its own coordinates.
fn fixes(n: usize, ends_ago: i64) -> Vec<Value> {
    let base = now_ms() - ends_ago * 1000;
    (0..n)
        .map(|i| {
            json!({"timestamp": base - (n - 1 - i) as i64 * 60_000, "latitude": 48.0 + i as f64 * 0.001,
                   "longitude": 11.0, "accuracy": 5.0})
        })
        .collect()
}

fn counts(answer: &Value) -> (i64, i64, i64, i64) {
    let n = |field: &str| answer[field].as_i64().unwrap_or_else(|| panic!("{field} in {answer}"));
    (n("processed_count"), n("stored_count"), n("duplicate_count"), n("expired_count"))
}

/// The stored columns of the device's fixes, oldest first.
async fn stored(
    app: &TestApp,
    device: Uuid,
) -> Vec<(f64, f64, f64, Option<f64>, Option<f64>, Option<i16>, Option<String>, Option<String>)> {
    sqlx::query_as(
        "SELECT latitude, longitude, accuracy, bearing, speed, battery_level, provider, network_type
         FROM locations WHERE device_id = $1 ORDER BY captured_at",
    )
    .bind(device)
    .fetch_all(&app.pool)
    .await
    .unwrap()
}

mod duplicates {
    use super::*;

    #[tokio::test]
    async fn a_fix_sent_three_times_without_a_key_is_stored_once() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let body = single(device, fix(30));
        assert_eq!(counts(&upload(&api, &body).await), (1, 1, 0, 0));
        for _ in 0..2 {
            assert_eq!(counts(&upload(&api, &body).await), (1, 0, 1, 0), "acknowledged, not stored again");
        }
        assert_eq!(app.location_count(device).await, 1);
    }

    #[tokio::test]
    async fn an_offline_buffer_sent_again_stores_only_the_new_fixes() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let all = fixes(4, 60);
        let first = json!({"device_id": device, "locations": all[..3]});
        let second = json!({"device_id": device, "locations": all});
        assert_eq!(counts(&upload_batch(&api, &first, Some("key-a")).await), (3, 3, 0, 0));
        assert_eq!(counts(&upload_batch(&api, &second, Some("key-b")).await), (4, 1, 3, 0));
        assert_eq!(app.location_count(device).await, 4, "4 distinct fixes, 4 rows (7 before)");
        // And the same without keys, through the group-committed path.
        let other = api.registered_device("fam").await;
        let first = json!({"device_id": other, "locations": all[..3]});
        let second = json!({"device_id": other, "locations": all});
        assert_eq!(counts(&upload_batch(&api, &first, None).await), (3, 3, 0, 0));
        assert_eq!(counts(&upload_batch(&api, &second, None).await), (4, 1, 3, 0));
        assert_eq!(app.location_count(other).await, 4);
    }

    #[tokio::test]
    async fn a_fix_repeated_within_one_batch_is_stored_once_and_the_first_stays() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let mut twice = fixes(2, 10);
        let mut repeat = twice[1].clone();
        repeat["latitude"] = json!(1.5);
        twice.push(repeat);
        let answer = upload_batch(&api, &json!({"device_id": device, "locations": twice}), None).await;
        assert_eq!(counts(&answer), (3, 2, 1, 0));
        let rows = stored(&app, device).await;
        assert_eq!(rows.len(), 2);
        assert_ne!(rows[1].0, 1.5, "the first fix stored for an instant stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_retries_of_one_fix_store_it_once() {
        let app = TestApp::spawn_with(|s| s.database.max_connections = 10).await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let body = single(device, fix(5));
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(12));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..12 {
            let (api, body, barrier) = (api.clone(), body.clone(), barrier.clone());
            tasks.spawn(async move {
                barrier.wait().await;
                upload(&api, &body).await
            });
        }
        let mut stored_by = 0;
        while let Some(answer) = tasks.join_next().await {
            let (processed, stored, duplicate, _) = counts(&answer.unwrap());
            assert_eq!((processed, stored + duplicate), (1, 1));
            stored_by += stored;
        }
        assert_eq!(stored_by, 1, "exactly one request stored it");
        assert_eq!(app.location_count(device).await, 1);
    }

    #[tokio::test]
    async fn existing_duplicates_collapse_to_the_first_stored_in_the_migration() {
        // The unique index is in the schema: the database refuses a second row for an instant
        // whatever path writes it.
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        upload(&api, &single(device, fix(3))).await;
        let duplicate = sqlx::query(
            "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
             SELECT device_id, 1, 1, 1, captured_at FROM locations WHERE device_id = $1",
        )
        .bind(device)
        .execute(&app.pool)
        .await;
        let err = duplicate.unwrap_err();
        // Reported by the partition's copy of uq_locations_device_captured.
        let err = err.as_database_error().unwrap();
        assert_eq!(err.code().as_deref(), Some("23505"));
        assert!(err.constraint().unwrap().ends_with("_device_id_captured_at_idx"), "{err}");
    }
}

mod unknown_markers {
    use super::*;

    #[tokio::test]
    async fn unknown_telemetry_is_stored_as_null_and_never_costs_the_fix() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let markers = [
            json!({"battery_level": -1}),
            json!({"battery_level": -2147483648_i64}),
            json!({"speed": -1.0, "bearing": -1.0}),
            json!({"provider": "", "network_type": "  "}),
            json!({"battery_level": -1, "speed": -1, "bearing": -1, "provider": "", "network_type": ""}),
        ];
        for (i, marker) in markers.iter().enumerate() {
            let mut body = single(device, fix(100 - i as i64));
            for (field, value) in marker.as_object().unwrap() {
                body[field] = value.clone();
            }
            assert_eq!(counts(&upload(&api, &body).await).1, 1, "{marker}");
        }
        for row in stored(&app, device).await {
            assert_eq!(
                (row.3, row.4, row.5, row.6.clone(), row.7.clone()),
                (None, None, None, None, None),
                "{row:?}"
            );
        }
        // In a batch too: one unknown battery does not refuse the other fixes.
        let mut locations = fixes(3, 200);
        locations[1]["battery_level"] = json!(-1);
        let answer = upload_batch(&api, &json!({"device_id": device, "locations": locations}), None).await;
        assert_eq!(counts(&answer), (3, 3, 0, 0));
    }

    #[tokio::test]
    async fn out_of_range_values_that_are_no_marker_stay_400() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        for (field, value) in [
            ("battery_level", json!(101)),
            ("bearing", json!(360.5)),
            ("accuracy", json!(-1.0)),
            ("provider", json!("p".repeat(51))),
            ("battery_level", json!(2147483648_i64)),
        ] {
            let mut body = single(device, fix(1));
            body[field] = value.clone();
            let error = assert_error(
                api.post_json("/api/v1/locations", &body).await,
                StatusCode::BAD_REQUEST,
                "validation_error",
            )
            .await;
            assert_eq!(error["details"][0]["field"], field, "{field}={value}: {error}");
        }
        assert_eq!(app.location_count(device).await, 0);
    }
}

mod clock {
    use super::*;

    #[tokio::test]
    async fn a_clock_a_little_ahead_is_accepted_a_day_ahead_is_not() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let ahead = |ms: i64| json!({"device_id": device, "timestamp": now_ms() + ms, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0});
        assert_eq!(counts(&upload(&api, &ahead(120_000)).await).1, 1, "two minutes ahead");
        let error = assert_error(
            api.post_json("/api/v1/locations", &ahead(86_400_000)).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(
            error["details"][0]["message"],
            "Timestamp must not be more than 300 s ahead of the server's clock"
        );
    }

    #[tokio::test]
    async fn the_allowance_is_a_setting() {
        let app = TestApp::spawn_with(|s| s.limits.max_clock_skew_secs = 10).await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let body = json!({"device_id": device, "timestamp": now_ms() + 60_000, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0});
        let error = assert_error(
            api.post_json("/api/v1/locations", &body).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(
            error["details"][0]["message"],
            "Timestamp must not be more than 10 s ahead of the server's clock"
        );
    }

    #[tokio::test]
    async fn old_fixes_are_stored_within_retention_and_acknowledged_beyond() {
        let app = TestApp::spawn_with(|s| s.limits.location_retention_days = 5).await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let day = 86_400_000;
        let locations = json!([
            {"timestamp": now_ms() - 6 * day, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0},
            {"timestamp": now_ms() - 4 * day, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0},
            {"timestamp": 0, "latitude": 1.0, "longitude": 1.0, "accuracy": 1.0}
        ]);
        let answer = upload_batch(&api, &json!({"device_id": device, "locations": locations}), None).await;
        assert_eq!(counts(&answer), (3, 1, 0, 2), "a fix older than the retention period is not kept");
        assert_eq!(app.location_count(device).await, 1);
    }
}

mod numbers {
    use super::*;

    /// Seventeen significant digits: the values a phone's `Double.toString` sends, a tenth of
    /// which a parser that does not round correctly stores one ULP off.
    fn coordinates(n: usize) -> Vec<(f64, f64)> {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n).map(|_| (next() * 180.0 - 90.0, next() * 360.0 - 180.0)).collect()
    }

    #[tokio::test]
    async fn every_number_comes_back_exactly_as_sent() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let sent = coordinates(100);
        let base = now_ms() - 3_600_000;
        for (chunk, pairs) in sent.chunks(50).enumerate() {
            // Written by hand: the digits on the wire are exactly Rust's shortest round-trip form.
            let items: Vec<String> = pairs
                .iter()
                .enumerate()
                .map(|(i, (lat, lon))| {
                    let at = base + (chunk * 50 + i) as i64 * 1000;
                    format!(
                        r#"{{"timestamp":{at},"latitude":{lat:?},"longitude":{lon:?},"accuracy":{:?},"altitude":{lon:?},"bearing":{:?},"speed":{:?}}}"#,
                        lat.abs(),
                        lat.abs() * 2.0,
                        lon.abs()
                    )
                })
                .collect();
            let body = format!(r#"{{"device_id":"{device}","locations":[{}]}}"#, items.join(","));
            let response = api
                .post_body("/api/v1/locations/batch", body)
                .header("Content-Type", "application/json")
                .await;
            assert_eq!(response.status(), StatusCode::OK);
        }
        // The example of the report: 26.140666098065722 came back as 26.14066609806572.
        let example = json!({"device_id": device, "timestamp": base - 1000, "latitude": 26.140666098065722,
                             "longitude": 12.345678901234567, "accuracy": 4.1});
        upload(&api, &example).await;

        let export = json_body(api.get(&format!("/api/v1/devices/{device}/data-export")).await).await;
        let locations = export["locations"].as_array().unwrap();
        assert_eq!(locations.len(), 101);
        assert_eq!(locations[0]["latitude"].to_string(), "26.140666098065722");
        assert_eq!(locations[0]["longitude"].to_string(), "12.345678901234567");
        assert_eq!(locations[0]["accuracy"].to_string(), "4.1", "a measurement is a double, never widened");
        for (sent, got) in sent.iter().zip(&locations[1..]) {
            assert_eq!(got["latitude"].as_f64().unwrap().to_bits(), sent.0.to_bits(), "{got}");
            assert_eq!(got["longitude"].as_f64().unwrap().to_bits(), sent.1.to_bits(), "{got}");
            assert_eq!(got["accuracy"].as_f64().unwrap().to_bits(), sent.0.abs().to_bits(), "{got}");
            assert_eq!(got["bearing"].as_f64().unwrap().to_bits(), (sent.0.abs() * 2.0).to_bits(), "{got}");
            assert_eq!(got["speed"].as_f64().unwrap().to_bits(), sent.1.abs().to_bits(), "{got}");
            assert_eq!(got["altitude"].as_f64().unwrap().to_bits(), sent.1.to_bits(), "{got}");
        }
        // And the listing's last location.
        let members = api.list_group("fam").await;
        let last = &members[0]["last_location"];
        assert_eq!(last["accuracy"].as_f64().unwrap().to_bits(), sent[99].0.abs().to_bits(), "{last}");
    }

    #[tokio::test]
    async fn an_integral_number_is_an_integer() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let raw = format!(
            r#"{{"device_id":"{device}","timestamp":{}.0,"latitude":1,"longitude":1,"accuracy":1,"battery_level":82.0}}"#,
            now_ms()
        );
        let response =
            api.post_body("/api/v1/locations", raw).header("Content-Type", "application/json").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(stored(&app, device).await[0].5, Some(82));
        let fraction = format!(
            r#"{{"device_id":"{device}","timestamp":{},"latitude":1,"longitude":1,"accuracy":1,"battery_level":82.5}}"#,
            now_ms()
        );
        let response =
            api.post_body("/api/v1/locations", fraction).header("Content-Type", "application/json").await;
        let error = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(error["details"][0]["field"], "battery_level");
    }
}

#[tokio::test]
async fn names_sort_as_people_read_them() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    for name in ["Zoe", "alpha", "Delta", "émile", "Bravo", "charlie"] {
        api.register_device(Uuid::new_v4(), name, "names").await;
    }
    let listed: Vec<String> = api
        .list_group("names")
        .await
        .iter()
        .map(|d| d["display_name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(listed, ["alpha", "Bravo", "charlie", "Delta", "émile", "Zoe"]);
}

mod bodies {
    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn deflate(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    async fn post_encoded(api: &ApiClient, encoding: &str, body: Vec<u8>) -> reqwest::Response {
        api.post_bytes("/api/v1/locations", body)
            .header("Content-Type", "application/json")
            .header("Content-Encoding", encoding)
            .await
    }

    #[tokio::test]
    async fn gzip_and_deflate_bodies_are_decoded_others_are_415() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let plain = |seconds| serde_json::to_vec(&single(device, fix(seconds))).unwrap();
        assert_eq!(post_encoded(&api, "gzip", gzip(&plain(10))).await.status(), StatusCode::OK);
        assert_eq!(post_encoded(&api, "deflate", deflate(&plain(20))).await.status(), StatusCode::OK);
        assert_eq!(app.location_count(device).await, 2);
        let error = assert_error(
            post_encoded(&api, "br", plain(30)).await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert!(error["message"].as_str().unwrap().contains("gzip"), "{error}");
        assert_eq!(app.location_count(device).await, 2, "a body labelled br is never read as plain");
    }

    #[tokio::test]
    async fn the_limit_applies_to_the_decoded_body() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        // 2 MiB of spaces inside valid JSON, a few KiB compressed.
        let mut body = serde_json::to_vec(&single(device, fix(1))).unwrap();
        body.splice(1..1, std::iter::repeat_n(b' ', 2 << 20));
        let compressed = gzip(&body);
        assert!(compressed.len() < 10_000);
        let error = assert_error(
            post_encoded(&api, "gzip", compressed).await,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        )
        .await;
        assert_eq!(error["message"], "Request exceeds maximum size of 1048576 bytes");
    }

    #[tokio::test]
    async fn a_declared_length_over_the_limit_is_refused_before_the_body_is_sent() {
        let app = TestApp::spawn().await;
        let key = app.create_key(false).await.key;
        let request = format!(
            "POST /api/v1/locations/batch HTTP/1.1\r\nHost: test\r\nX-API-Key: {key}\r\n\
             Content-Type: application/json\r\nContent-Length: 2097152\r\nExpect: 100-continue\r\n\r\n"
        );
        let answer =
            raw_exchange(app.socket_addr, request.as_bytes(), std::time::Duration::from_secs(2)).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "413 at once, no 100 Continue: {answer}");
        assert!(!answer.contains("100 Continue"), "{answer}");
        assert!(answer.contains("payload_too_large"), "{answer}");
    }
}

#[tokio::test]
async fn retention_goes_by_capture_time() {
    let app = TestApp::spawn_with(|s| s.limits.location_retention_days = 5).await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    // Captured 6 days ago, received now: past the promise already.
    crate::helpers::create_partitions_back(&app.pool, 7).await;
    sqlx::query(
        "INSERT INTO locations (device_id, latitude, longitude, accuracy, captured_at)
         VALUES ($1, 1, 1, 1, now() - interval '6 days'), ($1, 1, 1, 1, now() - interval '4 days')",
    )
    .bind(device)
    .execute(&app.pool)
    .await
    .unwrap();
    let settings = crate::helpers::test_settings(&app.db.url);
    let mut settings = settings;
    settings.limits.location_retention_days = 5;
    let deleted = phone_manager::jobs::Job::LocationRetention.run_once(&app.pool, &settings).await.unwrap();
    assert_eq!(deleted, 1);
    assert_eq!(app.location_count(device).await, 1);
}

#[tokio::test]
async fn a_deactivated_key_stops_working_at_once_even_when_cached() {
    let app = TestApp::spawn_with(|s| s.security.api_key_cache_secs = 600).await;
    let issued = app.create_key(false).await;
    let api = app.client_with_key(&issued.key);
    assert_eq!(api.get("/api/v1/keys/current").await.status(), StatusCode::OK, "now cached");
    // Give the replica's listener a moment to be connected, as it is long before any request
    // in production.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    key_admin(&app.pool)
        .deactivate(&phone_manager::domain::api_keys::KeySelector::Id(issued.id))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    loop {
        let status = api.get("/api/v1/keys/current").await.status();
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(1), "still {status} after a second");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

mod idempotency {
    use super::*;

    #[tokio::test]
    async fn fingerprints_compare_requests_as_understood_not_as_spelled() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let at = now_ms() - 10_000;
        let spelled = |latitude: &str, battery: &str| {
            format!(
                r#"{{"device_id":"{device}","timestamp":{at},"latitude":{latitude},"longitude":11.5,"accuracy":5,"battery_level":{battery}}}"#
            )
        };
        let send = |body: String| {
            api.post_body("/api/v1/locations", body)
                .header("Content-Type", "application/json")
                .idempotency_key("same-fix")
        };
        assert_eq!(send(spelled("48.10", "-1")).await.status(), StatusCode::OK);
        let again = send(spelled("48.1", "-2147483648")).await;
        assert_eq!(again.status(), StatusCode::OK, "the same request, spelled differently");
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        let other = send(spelled("48.2", "-1")).await;
        assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

#[tokio::test]
async fn the_served_document_works_on_any_day() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let document = json_body(app.anonymous().get("/api-docs/openapi.json").await).await;
    let timestamp = &document["components"]["schemas"]["LocationRequest"]["properties"]["timestamp"];
    let maximum = timestamp["maximum"].as_i64().unwrap();
    let now = Utc::now().timestamp_millis();
    assert!((maximum - now - 300_000).abs() < 5_000, "now + 300 s: {maximum} vs {now}");
    // The example the document carries is accepted (and stored) whenever it is read.
    let example = &document["paths"]["/api/v1/locations"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let mut body = if example.get("$ref").is_some() {
        document["components"]["schemas"]["UploadLocationRequest"]["example"].clone()
    } else {
        example["example"].clone()
    };
    let device = api.registered_device("fam").await;
    body["device_id"] = json!(device);
    assert_eq!(counts(&upload(&api, &body).await), (1, 1, 0, 0), "{body}");
    let mut batch = document["components"]["schemas"]["UploadLocationBatchRequest"]["example"].clone();
    batch["device_id"] = json!(api.registered_device("fam").await);
    assert_eq!(counts(&upload_batch(&api, &batch, None).await).1, 2, "{batch}");
    // The committed document stays as it is (deterministic).
    let committed = phone_manager::openapi::spec_json();
    assert!(!committed.contains(&maximum.to_string()));
}
