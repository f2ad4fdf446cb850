//! dob: a birthday "hello" API on self-hosted PostgreSQL, and the toolkit that keeps
//! that database alive.
//!
//! The binaries in `bin/` are thin: they parse their command line ([`cli`]), read
//! configuration, build what this library provides and run it. The library is one folder
//! per subsystem, with the pieces they share at the top:
//!
//! - [`api`]: the HTTP API (`dob-api`): front, handlers, wire format, its database pool
//!   and queries, metrics.
//! - [`db`]: PostgreSQL for every binary: migrations, connection strings, TLS, and
//!   PostgreSQL's own programs.
//! - [`backup`]: backups to S3, restores, drills and point-in-time recovery
//!   (`dob-backup`, `dob-restore`).
//! - [`failover`]: promotion, switchover, cross-region takeover and write fencing
//!   (`dob-promote`).

// The HTTP API: connections, requests, handlers, its database, metrics, shutdown.
pub mod api;
// Backups, restores, drills and point-in-time recovery.
pub mod backup;
// Days until the next birthday, and the greeting: pure date arithmetic.
pub mod birthday;
// The command-line shape every binary shares: flags, `--help`, exit codes.
pub mod cli;
// Environment configuration, parsed and checked before any work starts.
pub mod config;
// PostgreSQL for every binary: migrations, connection strings, TLS, its programs.
pub mod db;
// `Username` and `DateOfBirth`: validated domain values.
pub mod domain;
// The EC2 calls that isolate the old region at a takeover: signed, bounded, parsed.
pub mod ec2;
// The crate's one error type, with its cause chain.
pub mod error;
// Promotion, planned switchover, cross-region takeover and the write fence.
pub mod failover;
// Logger set-up shared by the binaries.
pub mod logging;
// The S3 bucket: the few calls backup, restore and the fence need, SSE headers only where valid.
pub mod s3;
// SIGTERM/SIGINT delivered to one thread, so shutdown is an ordinary function call.
pub mod signals;
// Throwaway PostgreSQL servers and other test harness; only with feature `test-support`.
#[cfg(feature = "test-support")]
pub mod testing;

pub use error::{Error, Result};
