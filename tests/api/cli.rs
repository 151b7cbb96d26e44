//! The `phone-manager` binary itself: key management, configuration errors. Serving and
//! signals, and the wait for an absent database, are in the slow lane (`tests/slow/cli.rs`).

use std::process::Output;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestDatabase, binary, json_body};

async fn run(database_url: &str, args: &[&str]) -> Output {
    binary(database_url).args(args).output().await.expect("binary runs")
}

fn stdout_json(output: &Output) -> Value {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("stdout is one JSON document ({e}): {}", String::from_utf8_lossy(&output.stdout))
    })
}

#[tokio::test]
async fn key_cli_round_trip_create_list_rotate_deactivate() {
    let app = TestApp::spawn().await;
    let url = app.db.url.clone();

    let created = stdout_json(&run(&url, &["keys", "create", "--name", "t", "--json"]).await);
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(key.len(), 48);
    assert!(key.starts_with("pm_"));
    assert_eq!(created["prefix"], &key[..8]);
    assert_eq!(created["name"], "t");
    assert_eq!(created["is_admin"], false);
    assert!(created["expires_at"].is_null());
    assert!(created["id"].is_i64());
    assert_eq!(app.client_with_key(&key).get("/api/v1/keys/current").await.status(), StatusCode::OK);

    let listed = stdout_json(&run(&url, &["keys", "list", "--json"]).await);
    let entry = &listed.as_array().unwrap()[0];
    assert_eq!(entry["prefix"], created["prefix"]);
    assert_eq!(entry["is_active"], true);
    let text = String::from_utf8(run(&url, &["keys", "list"]).await.stdout).unwrap();
    assert!(text.contains(created["prefix"].as_str().unwrap()), "{text}");
    assert!(!listed.to_string().contains(&key) && !text.contains(&key), "list never shows the key");
    assert!(!listed.to_string().contains("hash"), "list never shows the hash");

    let prefix = created["prefix"].as_str().unwrap();
    let rotated = stdout_json(&run(&url, &["keys", "rotate", "--prefix", prefix, "--json"]).await);
    let new_key = rotated["new_key"]["key"].as_str().unwrap().to_owned();
    assert_eq!(rotated["new_key"]["name"], "t");
    assert_ne!(new_key, key);
    assert_eq!(
        app.client_with_key(&key).get("/api/v1/keys/current").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.client_with_key(&new_key).get("/api/v1/keys/current").await.status(), StatusCode::OK);

    let new_id = rotated["new_key"]["id"].as_i64().unwrap().to_string();
    let deactivated = stdout_json(&run(&url, &["keys", "deactivate", "--id", &new_id, "--json"]).await);
    assert_eq!(deactivated["is_active"], false);
    assert_eq!(
        app.client_with_key(&new_key).get("/api/v1/keys/current").await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Deactivating again is harmless.
    assert!(run(&url, &["keys", "deactivate", "--id", &new_id]).await.status.success());
}

#[tokio::test]
async fn admin_keys_with_expiry_are_created_as_asked() {
    let app = TestApp::spawn().await;
    let created = stdout_json(
        &run(
            &app.db.url,
            &["keys", "create", "--name", "ops", "--admin", "--expires-in-days", "30", "--json"],
        )
        .await,
    );
    assert_eq!(created["is_admin"], true);
    let expires = chrono::DateTime::parse_from_rfc3339(created["expires_at"].as_str().unwrap()).unwrap();
    let days = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_days();
    assert!((29..=30).contains(&days), "{days}");
    let api = app.client_with_key(created["key"].as_str().unwrap());
    let body = json_body(api.get("/api/v1/keys/current").await).await;
    assert_eq!(body["is_admin"], true);
}

#[tokio::test]
async fn unknown_and_ambiguous_prefixes_fail_clearly() {
    let app = TestApp::spawn().await;
    let url = app.db.url.clone();
    let unknown = run(&url, &["keys", "rotate", "--prefix", "pm_zzzzz"]).await;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("no API key with prefix pm_zzzzz"), "{stderr}");

    // Two keys sharing a prefix: force it by editing one key's prefix.
    let a = app.create_key(false).await;
    let b = app.create_key(false).await;
    sqlx::query("UPDATE api_keys SET key_prefix = $1 WHERE id = $2")
        .bind(&a.prefix)
        .bind(b.id)
        .execute(&app.pool)
        .await
        .unwrap();
    let ambiguous = run(&url, &["keys", "deactivate", "--prefix", &a.prefix]).await;
    assert!(!ambiguous.status.success());
    let stderr = String::from_utf8_lossy(&ambiguous.stderr);
    assert!(stderr.contains("matches 2 keys") && stderr.contains("--id"), "{stderr}");

    let bad_expiry = run(&url, &["keys", "create", "--name", "x", "--expires-in-days", "0"]).await;
    assert!(!bad_expiry.status.success());
    assert!(String::from_utf8_lossy(&bad_expiry.stderr).contains("--expires-in-days"));
}

#[tokio::test]
async fn bad_configuration_stops_start_up_with_one_line_naming_the_key() {
    let db = TestDatabase::create().await;
    for (variable, value, expected) in [
        ("PM__SERVER__PORT", "eighty", "server.port"),
        ("PM__DATABASE__MAX_CONNECTIONS", "0", "database.max_connections"),
        ("PM__DATABASE__URL", "mysql://nope", "database.url"),
        ("PM__LOGGING__FORMAT", "xml", "xml"),
        ("PM__LIMITS__MAX_BATCH_SIZE", "-3", "limits.max_batch_size"),
    ] {
        let output = binary(&db.url).env(variable, value).arg("serve").output().await.unwrap();
        assert_eq!(output.status.code(), Some(2), "{variable}={value}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert!(
            stderr.starts_with("configuration error:") && stderr.contains(expected),
            "{variable}: {stderr}"
        );
    }
}

#[tokio::test]
async fn openapi_command_needs_no_database() {
    let output = run("postgres://postgres@127.0.0.1:1/none", &["openapi"]).await;
    let spec = stdout_json(&output);
    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(String::from_utf8(output.stdout).unwrap(), phone_manager::openapi::spec_json());
}
