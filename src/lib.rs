//! dob: a birthday "hello" API on self-hosted PostgreSQL, and the toolkit that keeps
//! that database alive.
//!
//! The binaries in `bin/` are thin: they read configuration, build what this library
//! provides and run it. Each module owns one concern:

/// One backup: pg_dump streamed into an S3 multipart upload, then its manifest.
pub mod backup;
/// Days until the next birthday, and the greeting: pure date arithmetic.
pub mod birthday;
/// A circuit breaker that fails database requests fast while it is unreachable.
pub mod breaker;
/// The backups a bucket holds, which are complete, and retention.
pub mod catalog;
/// Concurrent GET lookups coalesced into one query under load.
pub mod coalesce;
/// Environment configuration, parsed and checked before any work starts.
pub mod config;
/// PostgreSQL connection strings: another database, the password out of argv.
pub mod conninfo;
/// TLS to PostgreSQL for every binary: verified against a CA file, or unverified.
pub mod dbtls;
/// `Username` and `DateOfBirth`: validated domain values.
pub mod domain;
/// The crate's one error type, with its cause chain.
pub mod error;
/// Cross-region write fencing: the promotion epoch in S3 and the write lease.
pub mod fence;
/// The HTTP/1.1 front: connections, their limits and deadlines, requests in order.
pub mod front;
/// Request routing and handlers: from a request and the app state to a response.
pub mod http;
/// The listening socket: systemd socket activation or a fresh bind.
pub mod listener;
/// Logger set-up shared by the binaries.
pub mod logging;
/// Backup ids, object keys and the manifest that makes a dump a backup.
pub mod manifest;
/// Prometheus counters and histograms, rendered as text.
pub mod metrics;
/// Forward-only SQL migrations from `sql/`, applied under an advisory lock.
pub mod migrate;
/// Starting and stopping local PostgreSQL servers (tests, benchmarks, local stack).
pub mod pg;
/// dob-promote: checks that promoting the local replica is safe, promotes, verifies.
/// Point-in-time recovery from the pgBackRest repository (`dob-restore --to-time`).
pub mod pitr;
pub mod promote;
/// Restores and drills: S3 into a fresh database, verified, then swapped in or dropped.
pub mod restore;
/// The dob-restore command line: arguments, the run, its reports and exit status.
pub mod restore_cli;
/// The S3 bucket: the few calls backup and restore need, SSE headers only where valid.
pub mod s3;
/// The API server: the front serving the handlers, and graceful shutdown.
pub mod server;
/// SIGTERM/SIGINT delivered to one thread, so shutdown is an ordinary function call.
pub mod signals;
/// The PostgreSQL connection pool and the two queries the API needs.
pub mod store;
/// `dob-promote --switchover`: a planned change of leader through Patroni.
pub mod switchover;
/// `dob-promote --takeover`: the DR standby cluster promoted after the old region is fenced.
pub mod takeover;
/// Prometheus textfiles written by the batch jobs (result, duration, bytes, times).
pub mod textfile;
/// HTTP/1.1 bytes: bounded head parsing, chunked decoding, response writing.
pub mod wire;

pub use error::{Error, Result};
