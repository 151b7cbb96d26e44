//! Phone Manager backend. Data flows one way: `http` → `domain` → `db`; every layer may use
//! `model` (the shared types), `error`, `config` and `headers`. `infra` holds the tasks and
//! caches that `domain` services rely on. `tests/api/architecture.rs` keeps these arrows true.

pub mod cli;
pub mod config;
pub mod db;
pub mod domain;
pub mod error;
pub mod headers;
pub mod http;
pub mod infra;
pub mod jobs;
pub mod metrics;
pub mod model;
pub mod openapi;
pub mod startup;
pub mod state;
pub mod telemetry;
