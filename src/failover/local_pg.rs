//! One query on this host's own PostgreSQL server, as `dob-promote --takeover` needs
//! to see its WAL receiver: through `psql` on the server's Unix socket as the
//! `postgres` user (peer authentication, as Patroni's hosts allow it), so the takeover
//! still needs no URL and no password. `DOB_PG_SOCKET_DIR` (default
//! `/var/run/postgresql`) and `DOB_PG_BIN` say where.

use crate::db::pgbin::{as_postgres_user, PgBin};
use crate::{Error, Result};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Debian's socket directory.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The local server's socket directory: `DOB_PG_SOCKET_DIR`, else Debian's.
pub fn socket_dir(lookup: &impl Fn(&str) -> Option<String>) -> PathBuf {
    lookup("DOB_PG_SOCKET_DIR")
        .filter(|v| !v.trim().is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SOCKET_DIR), PathBuf::from)
}

/// Runs `sql` (one statement, no parameters) in database `postgres` and returns its
/// rows, each as its `|`-separated fields. Bounded: `statement_timeout` 5 s and a 5 s
/// connect timeout.
pub fn query(socket_dir: &std::path::Path, sql: &str) -> Result<Vec<Vec<String>>> {
    let psql = PgBin::locate()?.tool("psql");
    let mut cmd = Command::new(&psql);
    cmd.arg("-h")
        .arg(socket_dir)
        .args([
            "-d",
            "postgres",
            "-XAtq",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ])
        .env("PGCONNECT_TIMEOUT", "5")
        .env("PGOPTIONS", "-c statement_timeout=5000")
        .stdin(Stdio::null());
    as_postgres_user(&mut cmd)?;
    let output = cmd
        .output()
        .map_err(|e| Error::io(format!("running {}", psql.display()), e))?;
    if !output.status.success() {
        return Err(Error::other(format!(
            "psql on {} failed ({}): {}",
            socket_dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect())
}
