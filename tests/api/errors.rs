use reqwest::StatusCode;

use crate::helpers::{TestApp, assert_error};

#[tokio::test]
async fn unknown_routes_get_a_json_404() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    assert_error(anonymous.get("/no/such/route").await, StatusCode::NOT_FOUND, "not_found").await;
    // Unknown paths under the authenticated prefix are 404 too, not 401.
    assert_error(anonymous.get("/api/v1/nothing-here").await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn wrong_methods_get_a_json_405() {
    let app = TestApp::spawn().await;
    let anonymous = app.anonymous();
    let response = anonymous.delete("/api/health").await;
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    let response = anonymous.request(reqwest::Method::POST, "/api/v1/keys/current").await;
    assert_error(response, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

mod bad_requests {
    //! Every way a client can get a request wrong gets a 400 `validation_error` with details.
    use reqwest::StatusCode;
    use serde_json::json;

    use crate::helpers::{ApiClient, TestApp, assert_error};

    async fn post_raw(api: &ApiClient, content_type: Option<&str>, body: &str) -> reqwest::Response {
        let mut request = api.post_body("/api/v1/devices/register", body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.await
    }

    #[tokio::test]
    async fn malformed_json() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response = post_raw(&api, Some("application/json"), r#"{"device_id": "#).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["message"], "Request body is not valid JSON");
        assert_eq!(body["details"][0]["field"], "body");
        let response = post_raw(&api, Some("application/json"), "").await;
        assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    }

    #[tokio::test]
    async fn wrong_or_missing_content_type() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let valid =
            r#"{"device_id": "550e8400-e29b-41d4-a716-446655440000", "display_name": "P", "group_id": "g1"}"#;
        for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
            let response = post_raw(&api, content_type, valid).await;
            let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
            assert_eq!(
                body["details"],
                json!([{"field": "Content-Type", "message": "must be application/json"}])
            );
        }
        // Parameters on the media type are fine.
        let response = post_raw(&api, Some("application/json; charset=utf-8"), valid).await;
        assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await; // "P" is too short
    }

    #[tokio::test]
    async fn wrong_field_types() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response =
            api.register(json!({"device_id": 42, "display_name": "Phone", "group_id": "fam"})).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "device_id");
        assert!(
            body["details"][0]["message"].as_str().unwrap().starts_with("invalid type: integer `42`"),
            "{body}"
        );
        let response = api.register(json!(["not", "an", "object"])).await;
        assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
    }

    #[tokio::test]
    async fn missing_fields() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response = api.register(json!({"display_name": "Phone", "group_id": "fam"})).await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"], json!([{"field": "device_id", "message": "is required"}]));
    }

    #[tokio::test]
    async fn bad_path_parameter() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response = api.deactivate("not-a-uuid").await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "device_id");
        assert_eq!(body["details"][0]["message"], "\"not-a-uuid\" is not a valid UUID");
    }

    #[tokio::test]
    async fn bad_query_parameter() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response = api.get("/api/v1/devices?group_id=x").await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "group_id");
    }

    #[tokio::test]
    async fn oversized_bodies_get_413() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let huge = format!(r#"{{"display_name": "{}"}}"#, "x".repeat(1_100_000));
        let response = post_raw(&api, Some("application/json"), &huge).await;
        let body = assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
        assert_eq!(body["message"], "Request exceeds maximum size of 1048576 bytes");
    }
}

mod found_by_fuzzing {
    //! Inputs schemathesis found the server mishandling; each must be a clean 400 now.
    use reqwest::StatusCode;
    use serde_json::json;
    use uuid::Uuid;

    use crate::helpers::{TestApp, assert_error};

    #[tokio::test]
    async fn nul_characters_are_refused_not_500() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let response = api
            .register(json!({"device_id": Uuid::new_v4(), "display_name": "Phone", "group_id": "fam", "fcm_token": "a\u{0}b"}))
            .await;
        let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        assert_eq!(body["details"][0]["field"], "fcm_token");
        let admin = app.admin_client().await;
        for filter in ["resource_id", "action", "resource_type"] {
            let response = admin.get(&format!("/api/v1/admin/audit?{filter}=%00")).await;
            let body = assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
            assert_eq!(body["details"][0]["field"], filter);
        }
    }

    #[tokio::test]
    async fn fcm_token_length_counts_characters() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let token = "é".repeat(4096);
        let response =
            api.register(json!({"device_id": Uuid::new_v4(), "display_name": "Phone", "group_id": "fam", "fcm_token": token})).await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn huge_measurements_say_what_is_wrong() {
        let app = TestApp::spawn().await;
        let api = app.client().await;
        let device = api.registered_device("fam").await;
        let body = json!({"device_id": device, "timestamp": chrono::Utc::now().timestamp_millis(),
                          "latitude": 1.0, "longitude": 1.0, "accuracy": 1e39});
        let error = assert_error(
            api.post_json("/api/v1/locations", &body).await,
            StatusCode::BAD_REQUEST,
            "validation_error",
        )
        .await;
        assert_eq!(error["details"][0]["message"], "Accuracy must be at most 3.4e38");
    }

    #[tokio::test]
    async fn cursors_must_be_canonical() {
        let app = TestApp::spawn().await;
        let admin = app.admin_client().await;
        for cursor in ["01", "0", "1234567890123456789", "-5"] {
            let response = admin.get(&format!("/api/v1/admin/audit?cursor={cursor}")).await;
            assert_error(response, StatusCode::BAD_REQUEST, "validation_error").await;
        }
        assert_eq!(admin.get("/api/v1/admin/audit?cursor=12").await.status(), StatusCode::OK);
    }
}
