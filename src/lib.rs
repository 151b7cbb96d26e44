//! Phone Manager backend. Data flows one way: `http` → `domain` → `db`.

pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod startup;
pub mod state;
pub mod telemetry;
