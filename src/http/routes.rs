pub mod admin;
pub mod devices;
pub mod health;
pub mod keys;
pub mod legacy;
pub mod locations;
pub mod metrics;
pub mod privacy;
