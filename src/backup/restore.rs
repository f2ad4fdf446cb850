//! Restores and restore drills. A backup is streamed from S3 into `pg_restore` while it
//! is hashed; it always goes into a FRESH database first, because the SHA-256 is known
//! only at the end of the stream. Only when size and checksum match the manifest,
//! pg_restore succeeded, every table has the manifest's row count and the canary user
//! is back, is anything made live:
//!
//! - restore: the live database is renamed to `<db>_before_<time>` (or dropped with
//!   `--drop-previous`), after its connections are closed, and the fresh one takes its
//!   name. Clients such as dob-api reconnect by themselves.
//! - drill: the fresh (scratch) database is checked, timed and dropped.
//!
//! Any refusal or failure drops the fresh database; the live one is never touched.

use crate::backup::catalog::{self, BackupEntry};
use crate::backup::dump::{collect_stderr, count_rows, quote_ident, tool_version};
use crate::backup::manifest::{self, hex, BackupId, Manifest, TableCount};
use crate::db::conninfo;
use crate::db::pgbin::PgBin;
use crate::s3::ObjectStore;
use crate::{Error, Result};
use jiff::Timestamp;
use postgres::Client;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Which backup: the newest complete one, or a named one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Id(BackupId),
}

impl Selector {
    pub fn parse(raw: &str) -> Result<Selector> {
        if raw == "latest" {
            Ok(Selector::Latest)
        } else {
            BackupId::parse(raw).map(Selector::Id)
        }
    }
}

/// Finds the backup and reads its manifest; refuses anything not complete.
pub fn resolve(store: &ObjectStore, selector: &Selector) -> Result<Manifest> {
    let entries = catalog::list(store)?;
    let where_ = format!("s3://{}/{}", store.bucket_name(), store.root());
    let entry: &BackupEntry = match selector {
        Selector::Latest => catalog::latest_complete(&entries).ok_or_else(|| {
            Error::refused(
                format!("no complete backup in {where_}"),
                "nothing to restore (dob-restore --list shows what is there)",
            )
        })?,
        Selector::Id(id) => entries
            .iter()
            .find(|e| &e.id == id)
            .ok_or_else(|| Error::refused(format!("backup {id} not found in {where_}"), ""))?,
    };
    if !entry.is_complete() {
        return Err(Error::refused(
            format!("backup {} is incomplete", entry.id),
            if entry.dump_bytes.is_none() {
                "its dump is missing"
            } else {
                "it has no manifest (the backup failed or is still running); it is never restored"
            },
        ));
    }
    let root = store.root();
    let manifest_key = entry.id.manifest_key(&root);
    let bytes = store
        .get_small(&manifest_key)?
        .ok_or_else(|| Error::refused(format!("backup {} has no manifest", entry.id), ""))?;
    let manifest = Manifest::from_json(&bytes, &entry.id, &manifest_key)?;
    if manifest.dump_key != entry.id.dump_key(&root) {
        return Err(Error::refused(
            format!("manifest {manifest_key} names dump {}", manifest.dump_key),
            format!("expected {}", entry.id.dump_key(&root)),
        ));
    }
    Ok(manifest)
}

/// What a verified restore into a fresh database measured.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub backup_id: BackupId,
    pub bytes: u64,
    pub sha256: String,
    pub tables_checked: usize,
    pub rows_checked: i64,
    pub canary: Option<CanaryCheck>,
    /// From the start of the download to the end of verification.
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CanaryCheck {
    pub username: String,
    pub date_of_birth: String,
    /// The greeting the API would answer today for this user.
    pub greeting: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub backup_id: BackupId,
    pub database: String,
    /// Where the previous database went (`None` when there was none or it was dropped).
    pub previous_database: Option<String>,
    pub previous_dropped: bool,
    pub verified: Verified,
    pub backup_finished_at: String,
    pub duration_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DrillReport {
    pub backup_id: BackupId,
    pub backup_finished_at: String,
    pub scratch_database: String,
    /// Age of the backup when the drill started: the data a disaster now would lose.
    pub rpo_seconds: f64,
    /// Seconds from the drill's start to a verified restore.
    pub rto_seconds: f64,
    pub bytes: u64,
    pub throughput_mb_per_s: f64,
    pub verified: Verified,
}

/// How a restore treats what it replaces and where the dump comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Drop the replaced database instead of keeping it renamed.
    pub drop_previous: bool,
    /// Restore a dump from an earlier timeline of the target's cluster anyway.
    pub allow_older_timeline: bool,
}

/// Restores `selector` into the database `target_url` names, swapping it in only once
/// verified. `today` is for the canary greeting.
pub fn restore(
    store: &ObjectStore,
    selector: &Selector,
    target_url: &str,
    options: RestoreOptions,
    today: jiff::civil::Date,
) -> Result<RestoreReport> {
    let RestoreOptions {
        drop_previous,
        allow_older_timeline,
    } = options;
    let started = Instant::now();
    let manifest = resolve(store, selector)?;
    let live = conninfo::database_name(target_url)?;
    let mut admin = Admin::connect(target_url, &live)?;
    admin.check_lineage(&manifest, allow_older_timeline)?;
    let fresh = db_name(&live, "_restore_", &manifest.id.db_suffix());
    log::info!(
        "restoring backup {} ({} bytes) into fresh database {fresh}",
        manifest.id,
        manifest.size_bytes
    );
    let owner = admin.owner_of(&live)?;
    admin.create_fresh(&fresh, &manifest.encoding, owner.as_deref())?;
    let verified = match load_and_verify(store, &manifest, target_url, &fresh, today) {
        Ok(v) => v,
        Err(err) => {
            admin.drop_quietly(&fresh);
            return Err(err);
        }
    };
    let stamp = Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%dt%H%M%Sz")
        .to_string();
    let before = db_name(&live, "_before_", &stamp);
    let swap = admin.swap_in(&fresh, &live, &before, drop_previous);
    let previous = match swap {
        Ok(previous) => previous,
        Err(err) => {
            // The fresh copy goes only if the live database is (back) in place.
            if admin.exists(&live).unwrap_or(false) {
                admin.drop_quietly(&fresh);
                return Err(err);
            }
            return Err(Error::with_source(
                format!("database {live} is gone and the verified restore is in database {fresh}: rename it to {live} by hand"),
                err,
            ));
        }
    };
    Ok(RestoreReport {
        backup_id: manifest.id.clone(),
        database: live,
        previous_dropped: drop_previous && previous.is_some(),
        previous_database: previous.filter(|_| !drop_previous),
        verified,
        backup_finished_at: manifest.finished_at.clone(),
        duration_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores `selector` into a scratch database on the server `server_url` points at,
/// verifies it, drops it and reports RPO and RTO.
pub fn drill(
    store: &ObjectStore,
    selector: &Selector,
    server_url: &str,
    allow_older_timeline: bool,
    now: Timestamp,
    today: jiff::civil::Date,
) -> Result<DrillReport> {
    let started = Instant::now();
    let manifest = resolve(store, selector)?;
    let base = conninfo::database_name(server_url).unwrap_or_else(|_| "dob".into());
    let scratch = db_name(
        &manifest.database,
        "_drill_",
        &format!("{:08x}", crate::backup::dump::random_u32()),
    );
    let mut admin = Admin::connect(server_url, &base)?;
    admin.check_lineage(&manifest, allow_older_timeline)?;
    admin.create_fresh(&scratch, &manifest.encoding, None)?;
    let verified = load_and_verify(store, &manifest, server_url, &scratch, today);
    let rto = started.elapsed().as_secs_f64();
    admin.drop_quietly(&scratch);
    let verified = verified?;
    let finished = manifest.finished().ok_or_else(|| {
        Error::refused(
            format!("manifest of {} has no valid finished_at", manifest.id),
            manifest.finished_at.clone(),
        )
    })?;
    let rpo = now.duration_since(finished).as_secs_f64().max(0.0);
    Ok(DrillReport {
        backup_id: manifest.id.clone(),
        backup_finished_at: manifest.finished_at.clone(),
        scratch_database: scratch,
        rpo_seconds: rpo,
        rto_seconds: rto,
        bytes: verified.bytes,
        throughput_mb_per_s: verified.bytes as f64 / 1e6 / rto.max(1e-6),
        verified,
    })
}

/// `<base><infix><suffix>`, shortening `base` so the name fits PostgreSQL's 63 bytes.
pub(crate) fn db_name(base: &str, infix: &str, suffix: &str) -> String {
    let room = 63usize.saturating_sub(infix.len() + suffix.len());
    let mut cut = base.len().min(room);
    while !base.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{infix}{suffix}", &base[..cut])
}

/// Hashes and counts every byte on its way to pg_restore; keeps hashing when
/// pg_restore has stopped reading, so a corrupt dump is reported as corrupt.
struct HashingSink<W: Write> {
    inner: Option<W>,
    hasher: Sha256,
    bytes: u64,
    write_error: Option<std::io::Error>,
}

impl<W: Write> Write for HashingSink<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        if let Some(inner) = self.inner.as_mut() {
            if let Err(e) = inner.write_all(buf) {
                self.write_error = Some(e);
                self.inner = None;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if let Some(inner) = self.inner.as_mut() {
            if let Err(e) = inner.flush() {
                self.write_error = Some(e);
                self.inner = None;
            }
        }
        Ok(())
    }
}

fn load_and_verify(
    store: &ObjectStore,
    manifest: &Manifest,
    server_url: &str,
    fresh: &str,
    today: jiff::civil::Date,
) -> Result<Verified> {
    let started = Instant::now();
    let pg_restore = PgBin::locate()?.tool("pg_restore");
    let (url, password) = conninfo::split_password(&conninfo::with_database(server_url, fresh));
    let mut cmd = Command::new(&pg_restore);
    cmd.arg("--exit-on-error")
        .arg("--no-password")
        .arg(format!("--dbname={url}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    crate::db::dbtls::configure_libpq(&mut cmd);
    log::debug!("{}", tool_version(&pg_restore).unwrap_or_default());
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("starting {}", pg_restore.display()), e))?;
    let stderr = collect_stderr(child.stderr.take().expect("piped stderr"));
    let mut sink = HashingSink {
        inner: Some(std::io::BufWriter::with_capacity(
            256 * 1024,
            child.stdin.take().expect("piped stdin"),
        )),
        hasher: Sha256::new(),
        bytes: 0,
        write_error: None,
    };
    let downloaded = store.get_to_writer(&manifest.dump_key, &mut sink);
    let _ = sink.flush();
    drop(sink.inner.take()); // EOF for pg_restore
    let status = child
        .wait()
        .map_err(|e| Error::io("waiting for pg_restore", e))?;
    let stderr = stderr.join().unwrap_or_default();
    downloaded?;
    let sha256 = hex(&sink.hasher.finalize());
    // The checksum first: when the dump is corrupt, that is the cause of whatever
    // pg_restore said.
    if sink.bytes != manifest.size_bytes {
        return Err(Error::refused(
            format!("backup {} is truncated or padded", manifest.id),
            format!(
                "the dump has {} bytes, its manifest says {}; nothing was changed",
                sink.bytes, manifest.size_bytes
            ),
        ));
    }
    if sha256 != manifest.sha256 {
        return Err(Error::refused(
            format!("backup {} is corrupt", manifest.id),
            format!(
                "SHA-256 of the dump is {sha256}, its manifest says {}; nothing was changed",
                manifest.sha256
            ),
        ));
    }
    if !status.success() {
        return Err(Error::process(
            format!("pg_restore failed ({status}); nothing was changed"),
            stderr.trim().to_owned(),
        ));
    }
    if let Some(e) = sink.write_error {
        return Err(Error::io("feeding pg_restore", e));
    }

    let mut client = connect(&conninfo::with_database(server_url, fresh))?;
    let what = format!("backup {}", manifest.id);
    let (rows_checked, canary) = check_contents(
        &mut client,
        &manifest.tables,
        manifest.canary.as_ref(),
        today,
        &what,
    )?;
    Ok(Verified {
        backup_id: manifest.id.clone(),
        bytes: sink.bytes,
        sha256,
        tables_checked: manifest.tables.len(),
        rows_checked,
        canary,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Every table of `tables` must have its row count, and the canary user (if any) be
/// back, in the database `client` is connected to; `what` names the source in errors.
/// Returns the rows checked and the canary's greeting.
pub(crate) fn check_contents(
    client: &mut Client,
    tables: &[TableCount],
    canary: Option<&crate::backup::manifest::Canary>,
    today: jiff::civil::Date,
    what: &str,
) -> Result<(i64, Option<CanaryCheck>)> {
    let mut rows_checked = 0;
    for table in tables {
        let rows = count_rows(client, &table.schema, &table.table).map_err(|e| {
            Error::refused(
                format!(
                    "table {}.{} of {what} did not come back",
                    table.schema, table.table
                ),
                e.chain(),
            )
        })?;
        if rows != table.rows {
            return Err(Error::refused(
                format!(
                    "table {}.{} has {rows} rows after the restore",
                    table.schema, table.table
                ),
                format!("{what} has {}", table.rows),
            ));
        }
        rows_checked += rows;
    }
    let canary = match canary {
        Some(canary) => Some(check_canary(client, canary, today)?),
        None => None,
    };
    Ok((rows_checked, canary))
}

/// The canary user must be back with the same date of birth; its greeting is computed
/// as the API would.
fn check_canary(
    client: &mut Client,
    canary: &crate::backup::manifest::Canary,
    today: jiff::civil::Date,
) -> Result<CanaryCheck> {
    let row = client
        .query_opt(
            "SELECT date_of_birth FROM public.users WHERE username = $1",
            &[&canary.username],
        )
        .map_err(|e| Error::db("reading the canary user", e))?
        .ok_or_else(|| {
            Error::refused(
                format!(
                    "canary user {} is missing after the restore",
                    canary.username
                ),
                "",
            )
        })?;
    let dob: jiff::civil::Date = row.get(0);
    if dob.to_string() != canary.date_of_birth {
        return Err(Error::refused(
            format!("canary user {} came back changed", canary.username),
            format!(
                "date of birth {dob}, the manifest says {}",
                canary.date_of_birth
            ),
        ));
    }
    let days = crate::birthday::days_until_birthday(dob, today);
    let mut json = String::new();
    crate::birthday::write_greeting_json(&mut json, &canary.username, days);
    let greeting = serde_json::from_str::<serde_json::Value>(&json)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_owned))
        .unwrap_or(json);
    Ok(CanaryCheck {
        username: canary.username.clone(),
        date_of_birth: canary.date_of_birth.clone(),
        greeting,
    })
}

pub(crate) fn connect(url: &str) -> Result<Client> {
    let (mut config, tls) = crate::db::dbtls::client_config(url, "database URL")?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config
        .connect(tls)
        .map_err(|e| Error::db(format!("connecting to {}", conninfo::redacted(url)), e))
}

/// A connection to the server's maintenance database, for CREATE/DROP/RENAME.
pub(crate) struct Admin {
    client: Client,
}

impl Admin {
    pub(crate) fn connect(url: &str, avoid: &str) -> Result<Admin> {
        // Never the database being replaced: it cannot be renamed while we sit in it.
        let maintenance = if avoid == "postgres" {
            "template1"
        } else {
            "postgres"
        };
        Ok(Admin {
            client: connect(&conninfo::with_database(url, maintenance))?,
        })
    }

    /// Refuses, before anything is created, a dump from an earlier timeline of this
    /// server's cluster (see [`manifest::check_lineage`]).
    fn check_lineage(&mut self, manifest: &Manifest, allow_older_timeline: bool) -> Result<()> {
        let live = crate::backup::dump::lineage(&mut self.client)?;
        manifest::check_lineage(
            &manifest.id,
            manifest.source.lineage.as_ref(),
            &live,
            allow_older_timeline,
        )
    }

    fn exists(&mut self, db: &str) -> Result<bool> {
        self.client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&db])
            .map(|row| row.is_some())
            .map_err(|e| Error::db(format!("looking for database {db}"), e))
    }

    pub(crate) fn owner_of(&mut self, db: &str) -> Result<Option<String>> {
        self.client
            .query_opt(
                "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1",
                &[&db],
            )
            .map(|row| row.map(|r| r.get(0)))
            .map_err(|e| Error::db(format!("reading the owner of {db}"), e))
    }

    pub(crate) fn create_fresh(
        &mut self,
        db: &str,
        encoding: &str,
        owner: Option<&str>,
    ) -> Result<()> {
        if self.exists(db)? {
            // Our own naming scheme: a leftover of an interrupted run of this backup.
            log::warn!("dropping {db}, left by an interrupted restore");
            self.drop(db)?;
        }
        let mut sql = format!(
            "CREATE DATABASE {} TEMPLATE template0 ENCODING '{}'",
            quote_ident(db),
            encoding.replace('\'', "''")
        );
        if let Some(owner) = owner {
            sql.push_str(&format!(" OWNER {}", quote_ident(owner)));
        }
        self.client
            .batch_execute(&sql)
            .map_err(|e| Error::db(format!("creating database {db}"), e))
    }

    fn drop(&mut self, db: &str) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote_ident(db)
            ))
            .map_err(|e| Error::db(format!("dropping database {db}"), e))
    }

    pub(crate) fn drop_quietly(&mut self, db: &str) {
        match self.drop(db) {
            Ok(()) => log::info!("dropped {db}"),
            Err(e) => log::warn!("could not drop {db}: {}", e.chain()),
        }
    }

    fn allow_connections(&mut self, db: &str, allow: bool) -> Result<()> {
        self.client
            .batch_execute(&format!(
                "ALTER DATABASE {} ALLOW_CONNECTIONS {allow}",
                quote_ident(db)
            ))
            .map_err(|e| Error::db(format!("setting ALLOW_CONNECTIONS on {db}"), e))
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let sql = format!(
            "ALTER DATABASE {} RENAME TO {}",
            quote_ident(from),
            quote_ident(to)
        );
        // Terminated backends take a moment to exit; new ones are refused meanwhile
        // (ALLOW_CONNECTIONS false), so this converges quickly.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            self.client
                .execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                      WHERE datname = $1 AND pid <> pg_backend_pid()",
                    &[&from],
                )
                .map_err(|e| Error::db(format!("closing connections to {from}"), e))?;
            match self.client.batch_execute(&sql) {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() < deadline && is_in_use(&e) => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => return Err(Error::db(format!("renaming database {from} to {to}"), e)),
            }
        }
    }

    /// Makes `fresh` the database called `live`. Returns the previous database's new
    /// name (or `live` itself when it was dropped), `None` when there was none.
    pub(crate) fn swap_in(
        &mut self,
        fresh: &str,
        live: &str,
        before: &str,
        drop_previous: bool,
    ) -> Result<Option<String>> {
        let previous = if self.exists(live)? {
            self.allow_connections(live, false)?;
            let moved = if drop_previous {
                self.drop(live).map(|()| live.to_owned())
            } else {
                self.rename(live, before).map(|()| before.to_owned())
            };
            match moved {
                Ok(name) => {
                    if !drop_previous {
                        self.allow_connections(&name, true)?;
                    }
                    Some(name)
                }
                Err(err) => {
                    let _ = self.allow_connections(live, true);
                    return Err(err);
                }
            }
        } else {
            None
        };
        if let Err(err) = self.rename(fresh, live) {
            if let (Some(name), false) = (&previous, drop_previous) {
                if let Err(e) = self.rename(name, live) {
                    log::error!("could not move {name} back to {live}: {}", e.chain());
                }
            }
            return Err(err);
        }
        log::info!("database {live} is now the restored backup");
        Ok(previous)
    }
}

fn is_in_use(err: &postgres::Error) -> bool {
    err.code() == Some(&postgres::error::SqlState::OBJECT_IN_USE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_fit_in_63_bytes() {
        assert_eq!(db_name("dob", "_before_", "x"), "dob_before_x");
        let long = "d".repeat(80);
        let name = db_name(&long, "_restore_", "20261121t174501_007z_0a1b2c3d");
        assert_eq!(name.len(), 63);
        assert!(name.ends_with("_restore_20261121t174501_007z_0a1b2c3d"));
    }

    #[test]
    fn latest_or_an_id_is_accepted() {
        assert_eq!(Selector::parse("latest").unwrap(), Selector::Latest);
        assert!(Selector::parse("20261121T174501.007Z-0a1b2c3d").is_ok());
        assert!(Selector::parse("yesterday").unwrap_err().is_refusal());
    }
}
