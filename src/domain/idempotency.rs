//! `Idempotency-Key`: a client's retry of an upload gets the first answer again instead of
//! storing the locations twice. Keys are scoped to the API key that sent them and live 24 h.

use sha2::{Digest, Sha256};

use crate::{
    error::{ApiError, ApiResult, FieldError},
    model::{IdempotencyKey, StoredResponse},
};

pub const MAX_LEN: usize = 255;

/// Validates the header (1–255 visible ASCII characters; a UUID is the usual choice) and
/// fingerprints the request it came with (`canonical_request`: the request as the server
/// understood it, so spelling differences do not matter).
pub fn parse_key(header: &str, canonical_request: &[u8]) -> ApiResult<IdempotencyKey> {
    let valid = (1..=MAX_LEN).contains(&header.len()) && header.bytes().all(|b| b.is_ascii_graphic());
    if !valid {
        return Err(ApiError::invalid(vec![FieldError::new(
            "Idempotency-Key",
            format!("must be 1 to {MAX_LEN} visible ASCII characters"),
        )]));
    }
    Ok(IdempotencyKey {
        key_hash: sha256_hex(header.as_bytes()),
        request_hash: sha256_hex(canonical_request),
    })
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The answer to a request whose key was already used: the stored status and body if the
/// request is the same, 422 if the key is being reused for a different request.
pub fn replay(key: &IdempotencyKey, stored: StoredResponse) -> ApiResult<(u16, serde_json::Value)> {
    if stored.request_hash != key.request_hash {
        return Err(ApiError::IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request body".into(),
        ));
    }
    let status = u16::try_from(stored.response_status).unwrap_or(200);
    Ok((status, stored.response_body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(parse_key("550e8400-e29b-41d4-a716-446655440000", b"{}").is_ok());
        assert!(parse_key(&"k".repeat(255), b"{}").is_ok());
        assert!(parse_key(&"k".repeat(256), b"{}").is_err());
        assert!(parse_key("", b"{}").is_err());
        assert!(parse_key("has space", b"{}").is_err());
    }

    #[test]
    fn same_key_and_body_give_the_same_fingerprint() {
        let a = parse_key("k1", b"{\"a\":1}").unwrap();
        let b = parse_key("k1", b"{\"a\":1}").unwrap();
        let c = parse_key("k1", b"{\"a\":2}").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.key_hash, c.key_hash);
        assert_ne!(a.request_hash, c.request_hash);
    }

    #[test]
    fn a_different_request_under_the_same_key_is_refused() {
        let key = parse_key("k1", b"{\"a\":1}").unwrap();
        let body = serde_json::json!({"success": true, "processed_count": 1});
        let stored = StoredResponse {
            request_hash: key.request_hash.clone(),
            response_status: 200,
            response_body: body.clone(),
        };
        assert_eq!(replay(&key, stored.clone()).unwrap(), (200, body));
        let other = StoredResponse { request_hash: "0".repeat(64), ..stored };
        assert!(matches!(replay(&key, other), Err(ApiError::IdempotencyKeyReused(_))));
    }
}
