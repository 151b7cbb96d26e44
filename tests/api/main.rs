//! Integration tests: the real server over real HTTP against a real PostgreSQL.
//! One test binary (one link step) with a module per concern.

mod admin;
mod architecture;
mod auth;
mod cli;
mod contract;
mod devices;
mod errors;
mod hardening;
mod health;
mod helpers;
mod locations;
mod observability;
mod tracing;
