//! The rules of the service and the services that apply them: validation, key handling,
//! device, upload and privacy policies. No SQL (that is `db`) and no HTTP (that is `http`);
//! tasks and caches they rely on live in `infra`.

pub mod access;
pub mod admin;
pub mod api_keys;
pub mod audit;
pub mod credentials;
pub mod devices;
pub mod health;
pub mod history;
pub mod idempotency;
pub mod live;
pub mod privacy;
pub mod secrets;
pub mod text;
pub mod uploads;
