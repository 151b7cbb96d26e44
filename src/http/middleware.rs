pub mod auth;
pub mod errors;
pub mod request_log;
