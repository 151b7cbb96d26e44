pub mod auth;
pub mod errors;
pub mod metrics;
pub mod rate_limit;
pub mod request_log;
pub mod security_headers;
