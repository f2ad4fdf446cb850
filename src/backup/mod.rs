//! Backups and what they are for: `dob-backup` (a logical dump streamed to S3 with its
//! manifest, then retention) and `dob-restore` (restores and drills from those dumps, and
//! point-in-time recovery from the pgBackRest repository), with the Prometheus
//! textfiles both jobs write.
//!
//! The bucket itself is [`crate::s3`]; PostgreSQL's programs are found by
//! [`crate::db::pgbin`].

// The backups a bucket holds, which are complete, and retention.
pub mod catalog;
// One backup: pg_dump streamed into an S3 multipart upload, then its manifest.
pub mod dump;
// Backup ids, object keys and the manifest that makes a dump a backup.
pub mod manifest;
// Point-in-time recovery from the pgBackRest repository (`dob-restore --to-time`).
pub mod pitr;
// Restores and drills: S3 into a fresh database, verified, then swapped in or dropped.
pub mod restore;
// The dob-restore command line: arguments, the run, its reports and exit status.
pub mod restore_cli;
// Prometheus textfiles written by the batch jobs (result, duration, bytes, times).
pub mod textfile;
