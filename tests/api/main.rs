//! Integration tests for dob-api against a real PostgreSQL, over real HTTP.

mod connections;
mod contract;
mod front;
mod helpers;
mod hostile;
mod process;
mod resilience;
mod tls;
