pub mod devices;
pub mod health;
pub mod keys;
pub mod locations;
