//! Integration tests for dob-api against a real PostgreSQL, over real HTTP.

mod connections;
mod contract;
mod helpers;
mod process;
mod resilience;
mod tls;
