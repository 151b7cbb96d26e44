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

/// One type per field: a property or parameter name has the same type and format (nullability
/// aside) wherever the document uses it, so that a generated client has one Kotlin type for
/// `battery_level` or `accuracy` in uploads, listings, history and exports. The exceptions are
/// named fields that mean different things, each with its reason.
#[test]
fn each_field_name_has_one_type_everywhere() {
    use std::collections::{BTreeMap, BTreeSet};

    /// Names used for two different things, on purpose.
    const DIFFERENT_THINGS: [(&str, &str); 3] = [
        // What a phone sends is milliseconds since the epoch (its clock's native unit); what the
        // server answers is RFC 3339 like every other time in a response (docs/decisions.md).
        ("timestamp", "a fix's capture time: integer ms in uploads, date-time in answers"),
        // The admin statistics count devices; a group listing lists them.
        ("devices", "StatsResponse.devices is a count, DeviceListResponse.devices the list"),
        // A batch carries fixes as a phone sends them; history and exports answer stored fixes
        // (capture and receipt times, RFC 3339). Their common fields have one type each.
        ("locations", "fixes to upload (LocationRequest) or stored (ExportedLocationResponse)"),
    ];

    /// `type` without `null` and `format`, or the referenced schema: what a generator maps to
    /// one language type.
    fn kind(schema: &serde_json::Value) -> String {
        if let Some(reference) = schema["$ref"].as_str() {
            return reference.to_owned();
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(variants) = schema[key].as_array() {
                let kinds: Vec<String> = variants.iter().filter(|v| v["type"] != "null").map(kind).collect();
                return kinds.join(" | ");
            }
        }
        let types: Vec<&str> = match &schema["type"] {
            serde_json::Value::String(t) => vec![t.as_str()],
            serde_json::Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
            _ => vec![],
        };
        let types: Vec<&str> = types.into_iter().filter(|t| *t != "null").collect();
        let plain = format!("{}/{}", types.join("+"), schema["format"].as_str().unwrap_or("-"));
        if types == ["array"] { format!("{plain} of {}", kind(&schema["items"])) } else { plain }
    }

    fn collect(
        schema: &serde_json::Value,
        at: &str,
        seen: &mut BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    ) {
        if !schema.is_object() {
            return;
        }
        if let Some(properties) = schema["properties"].as_object() {
            for (name, property) in properties {
                let place = format!("{at}.{name}");
                seen.entry(name.clone())
                    .or_default()
                    .entry(kind(property))
                    .or_default()
                    .insert(place.clone());
                collect(property, &place, seen);
            }
        }
        collect_nested(schema, at, seen);
    }
    fn collect_nested(
        schema: &serde_json::Value,
        at: &str,
        seen: &mut BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    ) {
        collect(&schema["items"], &format!("{at}[]"), seen);
        for key in ["oneOf", "anyOf", "allOf"] {
            for variant in schema[key].as_array().into_iter().flatten() {
                collect(variant, at, seen);
            }
        }
    }

    let spec: serde_json::Value = serde_json::from_str(&openapi::spec_json()).unwrap();
    let mut seen = BTreeMap::new();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        collect(schema, name, &mut seen);
    }
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{method} {path}");
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap().to_owned();
                let place = format!("{at} ({} parameter)", parameter["in"].as_str().unwrap());
                seen.entry(name).or_default().entry(kind(&parameter["schema"])).or_default().insert(place);
            }
            let bodies = operation["requestBody"]["content"].as_object().into_iter().chain(
                operation["responses"]
                    .as_object()
                    .unwrap()
                    .values()
                    .filter_map(|response| response["content"].as_object()),
            );
            for content in bodies {
                for (media_type, media) in content {
                    collect(&media["schema"], &format!("{at} {media_type}"), &mut seen);
                }
            }
        }
    }
    let different: Vec<&str> = DIFFERENT_THINGS.iter().map(|(name, _)| *name).collect();
    let mut mixed = Vec::new();
    for (name, kinds) in &seen {
        if kinds.len() > 1 && !different.contains(&name.as_str()) {
            mixed.push(format!("{name}: {kinds:?}"));
        }
    }
    assert!(mixed.is_empty(), "fields with more than one type:\n{}", mixed.join("\n"));
    for name in different {
        assert!(seen.get(name).is_some_and(|kinds| kinds.len() > 1), "{name} is no exception any more");
    }
}
