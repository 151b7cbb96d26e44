//! The rules of the service: validation, key handling, device and location policies.
//! No SQL (that is `db`) and no HTTP types (that is `http`).

pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod devices;
pub mod health;
pub mod idempotency;
pub mod ingest;
pub mod key_cache;
pub mod last_seen;
pub mod locations;
pub mod privacy;
pub mod text;
