//! PostgreSQL's programs on this host, and the account they run as.
//!
//! Backup, restore and point-in-time recovery run `pg_dump`, `pg_restore`, `pg_ctl`
//! and `pg_controldata`; [`PgBin`] finds them. PostgreSQL refuses to run as root, so when
//! this process is root the server-side tools run as the `postgres` user
//! ([`as_postgres_user`]) and the files they must read are given to it
//! ([`give_to_postgres_user`]).

use crate::{Error, Result};
use std::ffi::CString;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The PostgreSQL server binaries: `DOB_PG_BIN`, else the newest
/// `/usr/lib/postgresql/<major>/bin` (Debian/Ubuntu layout).
#[derive(Debug, Clone)]
pub struct PgBin(PathBuf);

impl PgBin {
    pub fn locate() -> Result<PgBin> {
        if let Some(dir) = std::env::var_os("DOB_PG_BIN") {
            return Ok(PgBin(PathBuf::from(dir)));
        }
        let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .map_err(|e| Error::io("looking for PostgreSQL in /usr/lib/postgresql (install postgresql, or set DOB_PG_BIN)", e))?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = entry.path().join("bin");
                bin.join("initdb").exists().then_some((major, bin))
            })
            .collect();
        candidates.sort();
        candidates
            .pop()
            .map(|(_, bin)| PgBin(bin))
            .ok_or_else(|| Error::other("no PostgreSQL server found under /usr/lib/postgresql (install postgresql, or set DOB_PG_BIN)"))
    }

    pub fn tool(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn dir(&self) -> &Path {
        &self.0
    }
}

/// The account PostgreSQL runs as: `postgres` when we are root, else ourselves.
#[derive(Debug, Clone, Copy)]
struct RunAs {
    uid: libc::uid_t,
    gid: libc::gid_t,
}

fn run_as_user() -> Result<Option<RunAs>> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: getpwnam returns a pointer to static storage or NULL; we copy the two
    // fields out immediately, before any other call could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        return Err(Error::other(
            "running as root, but there is no `postgres` user to run PostgreSQL as (install the postgresql package)",
        ));
    }
    // SAFETY: non-null pointer from getpwnam, read at once.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some(RunAs { uid, gid }))
}

/// Gives `path` to the account PostgreSQL runs as (when we are root): a data directory
/// or a file the server must be able to read.
pub fn give_to_postgres_user(path: &Path) -> Result<()> {
    match run_as_user()? {
        Some(user) => chown(path, &user),
        None => Ok(()),
    }
}

fn chown(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid))
        .map_err(|e| Error::io(format!("giving {} to the postgres user", path.display()), e))
}

/// Makes `cmd` run as the postgres user when we are root.
pub fn as_postgres_user(cmd: &mut Command) -> Result<()> {
    if let Some(RunAs { uid, gid }) = run_as_user()? {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    Ok(())
}
