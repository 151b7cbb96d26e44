//! The contract: the document the code generates must equal the committed `openapi/v1.json`
//! and the insta snapshot. Pure: no server, no database.
//!
//! To accept a change: `scripts/update-openapi.sh` (rewrites both), then review the diff.

use phone_manager::openapi;

const COMMITTED: &str = "openapi/v1.json";
const REGENERATE: &str = "scripts/update-openapi.sh";

#[test]
fn committed_openapi_document_is_current() {
    let generated = openapi::spec_json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/v1.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, &generated).expect("write openapi/v1.json");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "{COMMITTED} differs from the document the code generates.\nRegenerate it (and the snapshot) with: {REGENERATE}"
    );
}

#[test]
fn openapi_snapshot() {
    let spec: serde_json::Value = serde_json::from_str(&openapi::spec_json()).unwrap();
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        description => format!("Regenerate with {REGENERATE}"),
    }, {
        insta::assert_json_snapshot!("openapi_v1", spec);
    });
}

#[test]
fn every_authenticated_operation_declares_the_key_and_its_errors() {
    let spec: serde_json::Value = serde_json::from_str(&openapi::spec_json()).unwrap();
    let paths = spec["paths"].as_object().unwrap();
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                operation["description"].is_string() || operation["summary"].is_string(),
                "{method} {path}: described"
            );
            for (status, response) in responses {
                assert!(
                    response.get("description").is_some() || response.get("$ref").is_some(),
                    "{method} {path} {status}"
                );
            }
            if path.starts_with("/api/v1/") {
                // Every way in needs the key; a device token may come with it (app keys).
                let ways =
                    operation["security"].as_array().unwrap_or_else(|| panic!("{method} {path}: security"));
                assert!(!ways.is_empty(), "{method} {path}: X-API-Key");
                for way in ways {
                    assert_eq!(way["api_key"], serde_json::json!([]), "{method} {path}: X-API-Key in {way}");
                    let schemes: Vec<&String> = way.as_object().unwrap().keys().collect();
                    assert!(
                        schemes.iter().all(|s| *s == "api_key" || *s == "device_token"),
                        "{method} {path}: {way}"
                    );
                }
                assert!(responses.contains_key("401"), "{method} {path}: documents 401");
            }
        }
    }
}

/// The patterns in the document are the ones the code enforces (utoipa needs literals, so the
/// document carries copies; this keeps them equal).
#[test]
fn documented_patterns_are_the_enforced_ones() {
    use phone_manager::domain::{devices::DISPLAY_NAME_PATTERN, text::NO_CONTROL_CHARACTERS};
    let spec: serde_json::Value = serde_json::from_str(&openapi::spec_json()).unwrap();
    let schemas = &spec["components"]["schemas"];
    assert_eq!(
        schemas["RegisterDeviceRequest"]["properties"]["display_name"]["pattern"],
        DISPLAY_NAME_PATTERN
    );
    for (schema, field) in [
        ("RegisterDeviceRequest", "fcm_token"),
        ("UploadLocationRequest", "provider"),
        ("UploadLocationRequest", "network_type"),
        ("LocationRequest", "provider"),
        ("LocationRequest", "network_type"),
    ] {
        assert_eq!(
            schemas[schema]["properties"][field]["pattern"], NO_CONTROL_CHARACTERS,
            "{schema}.{field}"
        );
    }
}

/// Every `$ref` names something the document defines (a parameter's schema is not collected by
/// utoipa-axum on its own: `Order` was once referenced and missing).
#[test]
fn every_reference_resolves() {
    fn walk(node: &serde_json::Value, spec: &serde_json::Value, missing: &mut Vec<String>) {
        match node {
            serde_json::Value::Object(object) => {
                if let Some(reference) = object.get("$ref").and_then(|r| r.as_str()) {
                    let pointer = reference.strip_prefix('#').unwrap_or(reference);
                    if spec.pointer(pointer).is_none() {
                        missing.push(reference.to_owned());
                    }
                }
                object.values().for_each(|value| walk(value, spec, missing));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, spec, missing)),
            _ => {}
        }
    }
    let spec: serde_json::Value = serde_json::from_str(&openapi::spec_json()).unwrap();
    let mut missing = Vec::new();
    walk(&spec, &spec, &mut missing);
    assert!(missing.is_empty(), "unresolved references: {missing:?}");
}
