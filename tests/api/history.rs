//! A device's trail: keyset pages in both orders, inclusive ranges, simplification, and the
//! GeoJSON and GPX downloads read back by independent readers.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ApiClient, TestApp, assert_error, json_body, now_ms};

/// Uploads `points` (latitude, longitude) as fixes one minute apart ending an hour ago; returns
/// their timestamps (ms), oldest first.
async fn walk(api: &ApiClient, device: Uuid, points: &[(f64, f64)]) -> Vec<i64> {
    let start = now_ms() - 3_600_000 - points.len() as i64 * 60_000;
    let stamps: Vec<i64> = (0..points.len()).map(|i| start + i as i64 * 60_000).collect();
    for (chunk, pairs) in points.chunks(50).enumerate() {
        let locations: Vec<Value> = pairs
            .iter()
            .enumerate()
            .map(|(i, (lat, lon))| {
                json!({"timestamp": stamps[chunk * 50 + i], "latitude": lat, "longitude": lon, "accuracy": 5.0,
                       "altitude": 500.0 + i as f64})
            })
            .collect();
        let response = api
            .post_json("/api/v1/locations/batch", &json!({"device_id": device, "locations": locations}))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    stamps
}

fn path(device: Uuid, query: &str) -> String {
    format!("/api/v1/devices/{device}/locations{query}")
}

fn millis(value: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap()).unwrap().timestamp_millis()
}

#[tokio::test]
async fn pages_walk_the_whole_trail_in_both_orders_without_gaps_or_repeats() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let points: Vec<(f64, f64)> = (0..250).map(|i| (48.0 + i as f64 * 0.0001, 11.0)).collect();
    let stamps = walk(&api, device, &points).await;
    for (order, expected) in [("asc", stamps.clone()), ("desc", stamps.iter().rev().copied().collect())] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let query = match &cursor {
                None => format!("?order={order}&limit=40"),
                Some(cursor) => format!("?order={order}&limit=40&cursor={cursor}"),
            };
            let page = json_body(api.get(&path(device, &query)).await).await;
            pages += 1;
            let locations = page["locations"].as_array().unwrap();
            seen.extend(locations.iter().map(|l| millis(&l["captured_at"])));
            assert!(page["distance_m"].as_f64().unwrap() > 0.0);
            assert!(
                locations.iter().all(|l| l["created_at"].is_string() && l["accuracy"] == 5.0),
                "every field"
            );
            match page["pagination"]["next_cursor"].as_str() {
                Some(next) => {
                    assert_eq!(page["pagination"]["has_more"], true);
                    cursor = Some(next.to_owned());
                }
                None => {
                    assert_eq!(page["pagination"]["has_more"], false);
                    break;
                }
            }
        }
        assert_eq!(pages, 7, "{order}: 6 full pages and one of 10");
        assert_eq!(seen, expected, "{order}: every fix once, in order");
    }
    // The default: newest first, 100 a page.
    let page = json_body(api.get(&path(device, "")).await).await;
    assert_eq!(page["locations"].as_array().unwrap().len(), 100);
    assert_eq!(millis(&page["locations"][0]["captured_at"]), stamps[249]);
}

#[tokio::test]
async fn from_and_to_are_inclusive_at_the_millisecond() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let stamps = walk(&api, device, &[(1.0, 1.0), (1.1, 1.0), (1.2, 1.0), (1.3, 1.0)]).await;
    let count = |query: String| {
        let api = api.clone();
        async move { json_body(api.get(&path(device, &query)).await).await["locations"].as_array().unwrap().len() }
    };
    assert_eq!(count(format!("?from={}&to={}", stamps[1], stamps[2])).await, 2);
    assert_eq!(count(format!("?from={}&to={}", stamps[1] + 1, stamps[2] - 1)).await, 0);
    assert_eq!(count(format!("?from={}&to={}", stamps[1], stamps[1])).await, 1);
    assert_eq!(count(format!("?from={}", stamps[3])).await, 1);
    assert_eq!(count(format!("?to={}", stamps[0])).await, 1);
}

#[tokio::test]
async fn bad_parameters_are_400_and_unknown_devices_404() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    walk(&api, device, &[(1.0, 1.0), (1.1, 1.0), (1.2, 1.0)]).await;
    let first = json_body(api.get(&path(device, "?limit=1")).await).await;
    let cursor = first["pagination"]["next_cursor"].as_str().unwrap().to_owned();
    let mut tampered = cursor.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let other = api.registered_device("fam").await;
    for (query, field) in [
        ("?limit=0".to_owned(), "limit"),
        ("?limit=1001".to_owned(), "limit"),
        ("?limit=ten".to_owned(), "limit"),
        ("?from=10&to=9".to_owned(), "from"),
        ("?from=-1".to_owned(), "from"),
        ("?order=sideways".to_owned(), "order"),
        ("?tolerance=0".to_owned(), "tolerance"),
        ("?tolerance=-5".to_owned(), "tolerance"),
        ("?tolerance=10000.5".to_owned(), "tolerance"),
        ("?tolerance=5&limit=10".to_owned(), "tolerance"),
        ("?cursor=garbage".to_owned(), "cursor"),
        (format!("?cursor={tampered}"), "cursor"),
        (format!("?order=asc&cursor={cursor}"), "cursor"),
    ] {
        let error =
            assert_error(api.get(&path(device, &query)).await, StatusCode::BAD_REQUEST, "validation_error")
                .await;
        assert_eq!(error["details"][0]["field"], field, "{query}: {error}");
    }
    // A cursor of one device is no cursor for another.
    let error = assert_error(
        api.get(&path(other, &format!("?cursor={cursor}"))).await,
        StatusCode::BAD_REQUEST,
        "validation_error",
    )
    .await;
    assert_eq!(error["details"][0]["field"], "cursor");
    assert_error(api.get(&path(Uuid::new_v4(), "")).await, StatusCode::NOT_FOUND, "not_found").await;
    assert_error(
        api.get(&path(device, "")).header("Accept", "text/csv").await,
        StatusCode::NOT_ACCEPTABLE,
        "not_acceptable",
    )
    .await;
}

#[tokio::test]
async fn a_straight_line_simplifies_to_its_ends_and_a_zigzag_keeps_its_corners() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let line = api.registered_device("fam").await;
    // 50 collinear fixes along a meridian-crossing line far north, where a degree of longitude
    // is short: the tolerance is metres at every latitude.
    let points: Vec<(f64, f64)> = (0..50).map(|i| (69.6, 18.9 + i as f64 * 0.001)).collect();
    walk(&api, line, &points).await;
    let simplified = json_body(api.get(&path(line, "?tolerance=1&order=asc")).await).await;
    let kept = simplified["locations"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{simplified}");
    assert_eq!(kept[0]["longitude"], 18.9);
    assert_eq!(
        simplified["simplification"],
        json!({"tolerance_m": 1.0, "original_count": 50, "returned_count": 2})
    );
    assert_eq!(simplified["pagination"], json!({"next_cursor": null, "has_more": false}));
    let length = simplified["distance_m"].as_f64().unwrap();
    // 0.049° of longitude at 69.6°N: about 1.9 km.
    assert!((length - 1_897.0).abs() < 20.0, "{length}");

    let zigzag = api.registered_device("fam").await;
    // Corners 50 m (0.00045° of latitude) off the line between their neighbours.
    let points: Vec<(f64, f64)> =
        (0..9).map(|i| (69.6 + if i % 2 == 0 { 0.0 } else { 0.00045 }, 18.9 + i as f64 * 0.002)).collect();
    walk(&api, zigzag, &points).await;
    let kept = json_body(api.get(&path(zigzag, "?tolerance=10")).await).await;
    assert_eq!(kept["simplification"]["returned_count"], 9, "every corner stays at 10 m");
    let smoothed = json_body(api.get(&path(zigzag, "?tolerance=100")).await).await;
    assert_eq!(smoothed["simplification"]["returned_count"], 2, "none at 100 m");
}

#[tokio::test]
async fn the_geojson_download_is_rfc_7946_with_longitude_first() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let points = [(48.1371, 11.5753), (48.1374, 11.5755), (48.1380, 11.5760)];
    let stamps = walk(&api, device, &points).await;
    let response = api.get(&path(device, "")).header("Accept", "application/geo+json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/geo+json");
    let text = response.text().await.unwrap();
    let collection: geojson::FeatureCollection =
        text.parse::<geojson::GeoJson>().unwrap().try_into().unwrap();
    let features = collection.features;
    assert_eq!(features.len(), 4, "the trail and a point per fix");
    let trail = features[0].geometry.as_ref().unwrap();
    let geojson::GeometryValue::LineString { coordinates } = &trail.value else { panic!("{trail:?}") };
    let expected: Vec<Vec<f64>> =
        points.iter().enumerate().map(|(i, (lat, lon))| vec![*lon, *lat, 500.0 + i as f64]).collect();
    let got: Vec<Vec<f64>> = coordinates.iter().map(|p| p.as_slice().to_vec()).collect();
    assert_eq!(got, expected, "[longitude, latitude, altitude], oldest first");
    let point = &features[1];
    assert_eq!(millis(&point.properties.as_ref().unwrap()["captured_at"]), stamps[0]);
    let document: Value = serde_json::from_str(&text).unwrap();
    let distance = document["distance_m"].as_f64().unwrap();
    assert!(distance > 100.0 && distance < 130.0, "{distance}");
    assert_eq!(document["features"][0]["properties"]["distance_m"], document["distance_m"]);
}

#[tokio::test]
async fn the_gpx_download_reads_back_with_the_same_points_and_times() {
    let app = TestApp::spawn().await;
    let api = app.client().await;
    let device = api.registered_device("fam").await;
    let points: Vec<(f64, f64)> =
        (0..120).map(|i| (48.1 + i as f64 * 0.0003, 11.5 - i as f64 * 0.0002)).collect();
    let stamps = walk(&api, device, &points).await;
    let response = api.get(&path(device, "")).header("Accept", "application/gpx+xml").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/gpx+xml");
    let bytes = response.bytes().await.unwrap();
    let document = gpx::read(bytes.as_ref()).expect("a GPX reader accepts it");
    assert_eq!(document.version, gpx::GpxVersion::Gpx11);
    let segment = &document.tracks[0].segments[0];
    assert_eq!(segment.points.len(), 120);
    for (i, waypoint) in segment.points.iter().enumerate() {
        let position = waypoint.point();
        assert_eq!((position.y(), position.x()), points[i], "lat/lon of {i}");
        assert_eq!(waypoint.elevation, Some(500.0 + (i % 50) as f64));
        let time = waypoint.time.as_ref().unwrap().format().unwrap();
        let time = chrono::DateTime::parse_from_rfc3339(&time).unwrap();
        assert_eq!(time.timestamp_millis(), stamps[i], "time of {i}");
    }
}

#[tokio::test]
async fn history_is_for_the_group_only() {
    let app = TestApp::spawn().await;
    let key = app.app_client().await;
    let register = |group: &str| {
        let key = key.clone();
        let group = group.to_owned();
        async move {
            let device = Uuid::new_v4();
            let body = json_body(
                key.register(json!({"device_id": device, "display_name": "Phone", "group_id": group})).await,
            )
            .await;
            (device, key.with_device_token(body["device_token"].as_str().unwrap()))
        }
    };
    let (alice, alice_api) = register("family").await;
    let (_mallory, mallory_api) = register("elsewhere").await;
    walk(&alice_api, alice, &[(1.0, 1.0), (1.1, 1.0)]).await;
    assert_eq!(alice_api.get(&path(alice, "")).await.status(), StatusCode::OK);
    for accept in ["application/json", "application/geo+json", "application/gpx+xml"] {
        let response = mallory_api.get(&path(alice, "")).header("Accept", accept).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}
