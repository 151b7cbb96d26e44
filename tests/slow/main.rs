//! Integration tests, slow lane (`cargo test --test slow`; plain `cargo test` runs it too):
//! tests that start server processes of their own, need Redis, export 100k rows, or wait out
//! timers and timeouts of a second or more. Each module is named after its fast-lane
//! counterpart in `tests/api`, whose harness (`helpers.rs`) this binary shares.

mod admin;
mod auth;
mod cli;
mod hardening;
mod health;
// The fast lane's harness; this binary uses only part of it.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod live;
mod locations;
mod tracing;
