//! The promoted region's own point-in-time recovery, from the takeover on. Its Patroni
//! cluster already runs with `archive_mode` on and an `archive_command` into its own
//! pgBackRest repository (scripts/patroni-config.sh), idle while it follows; what the
//! takeover adds is the stanza there (created before the promotion, so the archiver's
//! first push after it finds it) and a full backup right after the promotion, the base
//! every recovery to a time after the takeover starts from.
//!
//! pgBackRest runs as the postgres user (dob-promote runs as root on the hosts), with
//! the configuration `DOB_PGBACKREST_CONFIG` names, else the hosts' own
//! (`/etc/pgbackrest/pgbackrest.conf`) when it exists.

use crate::backup::pitr::parse_info;
use crate::db::pgbin::as_postgres_user;
use crate::{Error, Result};
use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where role-setup.sh writes the hosts' configuration.
pub const DEFAULT_CONFIG: &str = "/etc/pgbackrest/pgbackrest.conf";
/// The longest a full backup may run, as dob-pgbackrest-backup@.service allows.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// The stanza check reads one file and one object store listing.
const STANZA_TIMEOUT: Duration = Duration::from_secs(120);
/// pgBackRest's error output kept for the report (its own log has the rest).
const STDERR_KEEP: usize = 4096;

/// The repository a promoted region archives into and backs up to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    pub program: PathBuf,
    pub config: PathBuf,
    pub stanza: String,
}

impl Repository {
    /// `DOB_PGBACKREST_CONFIG`, else [`DEFAULT_CONFIG`] when `exists` says so; `None`
    /// without either (no repository: nothing to back up to). `DOB_PGBACKREST_STANZA`
    /// (default `dob`) and `DOB_PGBACKREST` (default `pgbackrest`) as dob-restore reads
    /// them.
    pub fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
        exists: &impl Fn(&Path) -> bool,
    ) -> Option<Repository> {
        let set = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let config = set("DOB_PGBACKREST_CONFIG")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|p| exists(p)))?;
        Some(Repository {
            program: set("DOB_PGBACKREST").map_or_else(|| "pgbackrest".into(), PathBuf::from),
            config,
            stanza: set("DOB_PGBACKREST_STANZA").unwrap_or_else(|| "dob".to_owned()),
        })
    }

    fn command(&self, args: &[&str]) -> Result<Command> {
        let mut cmd = Command::new(&self.program);
        cmd.arg(format!("--config={}", self.config.display()))
            .arg(format!("--stanza={}", self.stanza))
            .arg("--log-level-console=warn")
            .args(args)
            .stdin(Stdio::null());
        as_postgres_user(&mut cmd)?;
        Ok(cmd)
    }
}

/// The promoted region's first backup, for the takeover's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BaseBackup {
    pub label: String,
    /// When it stopped (RFC 3339): a recovery can reach any time after this.
    pub stopped: String,
    pub config: String,
}

/// Before the promotion: the stanza in this region's repository. `--no-online` reads
/// the cluster's identity from its data directory, so it works while the server still
/// follows; on a stanza that exists it checks that it still matches this cluster.
pub fn create_stanza(repo: &Repository) -> Result<()> {
    run_bounded(
        repo.command(&["--no-online", "stanza-create"])?,
        "pgbackrest stanza-create",
        STANZA_TIMEOUT,
    )
    .map(drop)
}

/// After the promotion: a full backup of the new primary, bounded by `timeout`, and
/// the repository's newest backup once it is done.
pub fn full_backup(repo: &Repository, timeout: Duration) -> Result<BaseBackup> {
    run_bounded(
        repo.command(&["--type=full", "backup"])?,
        "pgbackrest backup --type=full",
        timeout,
    )?;
    let info = run_bounded(
        repo.command(&["info", "--output=json"])?,
        "pgbackrest info",
        STANZA_TIMEOUT,
    )?;
    let newest = parse_info(&info, &repo.stanza)?
        .backups
        .pop()
        .ok_or_else(|| {
            Error::other("pgbackrest backup ended, but the repository lists no backup")
        })?;
    Ok(BaseBackup {
        label: newest.label,
        stopped: newest.stopped.to_string(),
        config: repo.config.display().to_string(),
    })
}

/// Runs `cmd` to its end or to `timeout` (then kills it): its stdout, or an error with
/// the tail of its stderr.
fn run_bounded(mut cmd: Command, what: &str, timeout: Duration) -> Result<String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    let stdout = drain(child.stdout.take(), usize::MAX);
    let stderr = drain(child.stderr.take(), STDERR_KEEP);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::other(format!(
                    "{what} did not finish within {} s and was stopped",
                    timeout.as_secs()
                )));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(Error::io(format!("waiting for {what}"), e)),
        }
    };
    let out = stdout.join().unwrap_or_default();
    let err = stderr.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(Error::process(
            format!("{what} failed ({status})"),
            err.trim().to_owned(),
        ))
    }
}

/// Reads `pipe` to its end on a thread of its own (so a chatty child never blocks on a
/// full pipe while we poll), keeping its last `keep` bytes.
fn drain(pipe: Option<impl Read + Send + 'static>, keep: usize) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut pipe) = pipe {
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > keep {
                    kept.drain(..kept.len() - keep);
                }
            }
        }
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |key| {
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_repository_comes_from_the_environment_else_the_hosts_file() {
        let none = |_: &Path| false;
        let there = |p: &Path| p == Path::new(DEFAULT_CONFIG);
        assert_eq!(Repository::from_lookup(&lookup(&[]), &none), None);
        let hosts = Repository::from_lookup(&lookup(&[]), &there).unwrap();
        assert_eq!(hosts.config, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(hosts.stanza, "dob");
        assert_eq!(hosts.program, PathBuf::from("pgbackrest"));
        let set = Repository::from_lookup(
            &lookup(&[
                ("DOB_PGBACKREST_CONFIG", "/x/own.conf"),
                ("DOB_PGBACKREST_STANZA", "s"),
                ("DOB_PGBACKREST", "/opt/pgbackrest"),
            ]),
            &none,
        )
        .unwrap();
        assert_eq!(set.config, PathBuf::from("/x/own.conf"));
        assert_eq!(set.stanza, "s");
        assert_eq!(set.program, PathBuf::from("/opt/pgbackrest"));
        // Blank is unset.
        assert_eq!(
            Repository::from_lookup(&lookup(&[("DOB_PGBACKREST_CONFIG", " ")]), &none),
            None
        );
    }

    #[test]
    fn a_bounded_run_returns_output_fails_with_stderr_and_stops_at_its_deadline() {
        let mut ok = Command::new("sh");
        ok.args(["-c", "echo out; echo noise >&2"]);
        assert_eq!(
            run_bounded(ok, "ok", Duration::from_secs(10)).unwrap(),
            "out\n"
        );
        let mut bad = Command::new("sh");
        bad.args(["-c", "echo why >&2; exit 3"]);
        let err = run_bounded(bad, "bad", Duration::from_secs(10))
            .unwrap_err()
            .chain();
        assert!(err.contains("bad failed") && err.contains("why"), "{err}");
        let mut slow = Command::new("sleep");
        slow.arg("30");
        let started = Instant::now();
        let err = run_bounded(slow, "slow", Duration::from_millis(300))
            .unwrap_err()
            .chain();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
