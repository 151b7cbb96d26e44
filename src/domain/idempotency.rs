//! `Idempotency-Key`: a client's retry of an upload gets the first answer again instead of
//! storing the locations twice. Keys are scoped to the API key that sent them and live 24 h.

use sha2::{Digest, Sha256};

use crate::{
    db::idempotency::StoredResponse,
    domain::locations::Outcome,
    error::{ApiError, ApiResult, FieldError},
};

pub const HEADER: &str = "idempotency-key";
pub const MAX_LEN: usize = 255;

/// A validated key and the fingerprint of the request it came with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    /// SHA-256 (hex) of the header value: bounded size, and clients' values are not stored.
    pub key_hash: String,
    /// SHA-256 (hex) of the request's canonical JSON, to tell a retry from a different request.
    pub request_hash: String,
}

impl IdempotencyKey {
    /// 1–255 visible ASCII characters (a UUID is the usual choice).
    pub fn parse(header: &str, canonical_request: &[u8]) -> ApiResult<Self> {
        let valid = (1..=MAX_LEN).contains(&header.len()) && header.bytes().all(|b| b.is_ascii_graphic());
        if !valid {
            return Err(ApiError::invalid(vec![FieldError::new(
                "Idempotency-Key",
                format!("must be 1 to {MAX_LEN} visible ASCII characters"),
            )]));
        }
        Ok(Self { key_hash: sha256_hex(header.as_bytes()), request_hash: sha256_hex(canonical_request) })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The answer to a request whose key was already used: the stored answer if the request is
/// the same, 422 if the key is being reused for a different request.
pub fn replay(key: &IdempotencyKey, stored: StoredResponse) -> ApiResult<Outcome> {
    if stored.request_hash != key.request_hash {
        return Err(ApiError::IdempotencyKeyReused(
            "This Idempotency-Key was already used with a different request body".into(),
        ));
    }
    match (stored.response_status, stored.response_body) {
        (Some(status), Some(body)) => Ok(Outcome::Replayed { status: status as u16, body }),
        // Completed rows are written in the same transaction as the claim, so this is only
        // reachable if that invariant breaks: refuse rather than insert twice.
        _ => Err(ApiError::Conflict("A request with this Idempotency-Key is still being processed".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_visible_ascii() {
        assert!(IdempotencyKey::parse("550e8400-e29b-41d4-a716-446655440000", b"{}").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255), b"{}").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256), b"{}").is_err());
        assert!(IdempotencyKey::parse("", b"{}").is_err());
        assert!(IdempotencyKey::parse("has space", b"{}").is_err());
    }

    #[test]
    fn same_key_and_body_give_the_same_fingerprint() {
        let a = IdempotencyKey::parse("k1", b"{\"a\":1}").unwrap();
        let b = IdempotencyKey::parse("k1", b"{\"a\":1}").unwrap();
        let c = IdempotencyKey::parse("k1", b"{\"a\":2}").unwrap();
        assert_eq!((a.key_hash.clone(), a.request_hash.clone()), (b.key_hash, b.request_hash));
        assert_ne!(a.request_hash, c.request_hash);
    }
}
