//! `Idempotency-Key` records: the answer to an upload, kept 24 h for its retries.

/// A client's `Idempotency-Key`, validated, and the fingerprint of the request it came with.
/// Both are SHA-256 (hex): bounded in size, and the client's values are never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    pub key_hash: String,
    /// Of the request as the server understood it, to tell a retry from a different request.
    pub request_hash: String,
}

/// The live record holding a key: the request it answered and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResponse {
    pub request_hash: String,
    pub response_status: i16,
    pub response_body: serde_json::Value,
}
