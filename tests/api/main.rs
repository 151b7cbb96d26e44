//! Integration tests, fast lane: the real server over real HTTP against a real PostgreSQL.
//! One test binary (one link step) with a module per concern; `cargo test --test api`.
//!
//! Tests that run server processes, need Redis, export 100k rows or wait out timers of a
//! second or more live in the slow lane, `tests/slow` (`cargo test --test slow`). Plain
//! `cargo test` runs both.

mod admin;
mod architecture;
mod auth;
mod cli;
mod contract;
mod devices;
mod errors;
mod fidelity;
mod hardening;
mod health;
// Shared with tests/slow, which uses other parts of it.
#[allow(dead_code)]
mod helpers;
mod history;
mod live;
mod locations;
mod observability;
mod partitions;
mod privacy;
