//! Point-in-time recovery from the pgBackRest repository: `dob-restore --to-time` and
//! `--to-lsn`. pgBackRest restores the physical backup before the target into a scratch
//! data directory and writes the recovery settings; a scratch PostgreSQL (Unix socket in
//! that directory only, its own port, archiving off) replays archived WAL up to the
//! target and promotes. Only when recovery reached the target, `pg_controldata` says the
//! scratch cluster is in production, and its tables and canary user are read back, is
//! anything made live, exactly as a logical restore does it: the database is copied
//! (`pg_dump | pg_restore`) into a fresh database of the live cluster, checked against
//! the scratch copy (every table's row count, the canary), and swapped in (the previous
//! one kept as `<db>_before_<time>`). With `--keep-running` the scratch server is left
//! running for the operator instead and nothing live is touched.
//!
//! Copying the database rather than replacing the live data directory keeps the
//! cluster, its replicas and Patroni as they are: the swap is SQL, replicated like any
//! other write. Writes acknowledged after the target are in the kept previous database.
//!
//! Refused before anything is written (exit 4): a target in the future, one before the
//! end of the oldest backup, an empty repository; after the scratch replay: a target the
//! archive does not reach (missing WAL). Pure logic (target parsing, the repository's
//! `info`, the checks) takes its inputs; the rest runs the tools.

use crate::backup::dump::{collect_stderr, snapshot_contents, SnapshotContents};
use crate::backup::restore::{check_contents, connect as connect_url, db_name, Admin, CanaryCheck};
use crate::db::conninfo;
use crate::db::pgbin::{as_postgres_user, PgBin};
use crate::{Error, Result};
use jiff::Timestamp;
use serde::Serialize;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A WAL position, `X/Y` in hexadecimal as PostgreSQL writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(u64);

impl Lsn {
    pub fn parse(raw: &str) -> Option<Lsn> {
        let (high, low) = raw.split_once('/')?;
        let part = |s: &str| {
            (!s.is_empty() && s.len() <= 8)
                .then(|| u32::from_str_radix(s, 16).ok())
                .flatten()
        };
        Some(Lsn((u64::from(part(high)?) << 32) | u64::from(part(low)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// Where recovery stops: just before the first transaction committed after a time, or
/// at a WAL position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Time(Timestamp),
    Lsn(Lsn),
}

impl Target {
    /// An RFC 3339 time with its offset (`2026-12-05T10:31:05.658Z`, `...+01:00`).
    pub fn parse_time(raw: &str) -> std::result::Result<Target, String> {
        raw.parse::<Timestamp>().map(Target::Time).map_err(|_| {
            format!("--to-time {raw:?} is not an RFC 3339 time with an offset, like 2026-12-05T10:31:05Z")
        })
    }

    pub fn parse_lsn(raw: &str) -> std::result::Result<Target, String> {
        Lsn::parse(raw)
            .map(Target::Lsn)
            .ok_or_else(|| format!("--to-lsn {raw:?} is not a WAL position like 0/3000100"))
    }

    /// pgBackRest's `--type` and `--target`.
    fn pgbackrest_args(&self) -> [String; 2] {
        match self {
            Target::Time(t) => [
                "--type=time".into(),
                // UTC with microseconds: what PostgreSQL's recovery_target_time parses.
                format!(
                    "--target={}",
                    t.to_zoned(jiff::tz::TimeZone::UTC)
                        .strftime("%Y-%m-%d %H:%M:%S%.6f+00")
                ),
            ],
            Target::Lsn(lsn) => ["--type=lsn".into(), format!("--target={lsn}")],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Time(t) => write!(f, "time {t}"),
            Target::Lsn(lsn) => write!(f, "LSN {lsn}"),
        }
    }
}

/// One backup of the repository, as `pgbackrest info` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoBackup {
    pub label: String,
    pub stopped: Timestamp,
    pub stop_lsn: Lsn,
}

/// What the repository holds for the stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// Oldest first.
    pub backups: Vec<RepoBackup>,
    /// The newest archived WAL segment's name.
    pub newest_wal: Option<String>,
}

/// Parses `pgbackrest info --output=json` for `stanza`.
pub fn parse_info(json: &str, stanza: &str) -> Result<RepoInfo> {
    let bad = |why: &str| Error::other(format!("pgbackrest info: {why}"));
    let all: serde_json::Value =
        serde_json::from_str(json).map_err(|e| bad(&format!("not JSON ({e})")))?;
    let entry = all
        .as_array()
        .and_then(|stanzas| stanzas.iter().find(|s| s["name"] == stanza))
        .ok_or_else(|| bad(&format!("no stanza {stanza:?} in the repository")))?;
    let mut backups = Vec::new();
    for backup in entry["backup"].as_array().into_iter().flatten() {
        if backup["error"].as_bool() == Some(true) {
            continue;
        }
        let label = backup["label"].as_str().unwrap_or_default().to_owned();
        let stopped = backup["timestamp"]["stop"]
            .as_i64()
            .and_then(|s| Timestamp::from_second(s).ok())
            .ok_or_else(|| bad(&format!("backup {label} has no stop time")))?;
        let stop_lsn = backup["lsn"]["stop"]
            .as_str()
            .and_then(Lsn::parse)
            .ok_or_else(|| bad(&format!("backup {label} has no stop LSN")))?;
        backups.push(RepoBackup {
            label,
            stopped,
            stop_lsn,
        });
    }
    backups.sort_by_key(|b| b.stopped);
    let newest_wal = entry["archive"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["max"].as_str())
        .max()
        .map(str::to_owned);
    Ok(RepoInfo {
        backups,
        newest_wal,
    })
}

/// Refuses a target no backup of `info` can reach, or one not yet lived: recovery can
/// only go forward from the end of a backup.
pub fn check_target(target: &Target, info: &RepoInfo, now: Timestamp) -> Result<()> {
    let Some(oldest) = info.backups.first() else {
        return Err(Error::refused(
            "the pgBackRest repository holds no backup",
            "point-in-time recovery starts from a physical backup; take one (pgbackrest backup) first",
        ));
    };
    match target {
        Target::Time(t) if *t > now => Err(Error::refused(
            format!("--to-time {t} is in the future"),
            format!("it is {now} now: recovery can only stop at a time already lived"),
        )),
        Target::Time(t) if !after_backup(*t, oldest) => Err(Error::refused(
            format!("--to-time {t} is before the oldest backup"),
            format!(
                "backup {} finished at {} (pgBackRest counts whole seconds): nothing earlier can be recovered",
                oldest.label, oldest.stopped
            ),
        )),
        Target::Lsn(lsn) if *lsn < oldest.stop_lsn => Err(Error::refused(
            format!("--to-lsn {lsn} is before the oldest backup"),
            format!(
                "backup {} ends at {}: nothing earlier can be recovered",
                oldest.label, oldest.stop_lsn
            ),
        )),
        _ => Ok(()),
    }
}

/// Whether recovery to `t` can start from `backup`: pgBackRest records stop times in
/// whole seconds and wants one before the target's second.
fn after_backup(t: Timestamp, backup: &RepoBackup) -> bool {
    t.as_second() > backup.stopped.as_second()
}

/// The backup recovery starts from: the newest one that ended before the target.
pub fn base_backup<'a>(target: &Target, info: &'a RepoInfo) -> Option<&'a RepoBackup> {
    info.backups.iter().rev().find(|b| match target {
        Target::Time(t) => after_backup(*t, b),
        Target::Lsn(lsn) => b.stop_lsn <= *lsn,
    })
}

/// The scratch server's log line that says the archive ended before the target.
pub fn missing_wal(log: &str) -> bool {
    log.contains("recovery ended before configured recovery target was reached")
}

/// How to reach pgBackRest and where the scratch server goes.
#[derive(Debug, Clone)]
pub struct PitrSettings {
    pub pgbackrest: PathBuf,
    /// `--config` for pgBackRest; `None`: its default (/etc/pgbackrest/pgbackrest.conf).
    pub pgbackrest_config: Option<PathBuf>,
    pub stanza: String,
    /// Created by the run; must not exist or be empty.
    pub scratch_dir: PathBuf,
    pub scratch_port: u16,
    /// The longest the replay may take.
    pub recovery_timeout: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PitrOptions {
    /// Leave the scratch server running for the operator; touch nothing live.
    pub keep_running: bool,
    pub drop_previous: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PitrReport {
    pub target: String,
    /// The physical backup recovery started from.
    pub base_backup: String,
    /// The newest archived WAL segment when the run started.
    pub newest_archived_wal: Option<String>,
    pub scratch_dir: PathBuf,
    pub scratch_port: u16,
    /// The scratch server is still running (`--keep-running`).
    pub scratch_running: bool,
    /// The recovered cluster's timeline (a new one: recovery ends with a promotion).
    pub timeline: i32,
    /// Where recovery stopped, as the server logged it.
    pub stopped_at: Option<String>,
    pub tables_checked: usize,
    pub rows_checked: i64,
    pub canary: Option<CanaryCheck>,
    /// The live database replaced (`None` with `--keep-running`).
    pub database: Option<String>,
    pub previous_database: Option<String>,
    pub previous_dropped: bool,
    /// From the start of the run to a verified recovery made live (or left running).
    pub rto_seconds: f64,
}

/// Recovers the database `target_url` names to `target` (see the module docs).
pub fn recover(
    settings: &PitrSettings,
    target: &Target,
    target_url: &str,
    options: PitrOptions,
    now: Timestamp,
    today: jiff::civil::Date,
) -> Result<PitrReport> {
    let started = Instant::now();
    let live = conninfo::database_name(target_url)?;
    let info = parse_info(&pgbackrest_info(settings)?, &settings.stanza)?;
    check_target(target, &info, now)?;
    let base = base_backup(target, &info)
        .map(|b| b.label.clone())
        .unwrap_or_default();
    // Nothing live is read before this point; now the live server must answer, before
    // minutes go into a replay.
    let mut admin = if options.keep_running {
        None
    } else {
        Some(Admin::connect(target_url, &live)?)
    };
    let scratch = Scratch::create(settings)?;
    log::info!(
        "recovering {target} from backup {base} into {} (port {})",
        scratch.dir.display(),
        scratch.port
    );
    let recovered =
        scratch
            .recover(settings, target, &live)
            .and_then(|(stopped_at, timeline, mut client)| {
                let contents = snapshot_contents(&mut client)?;
                Ok((stopped_at, timeline, contents))
            });
    let (stopped_at, timeline, contents) = match recovered {
        Ok(r) => r,
        Err(err) => {
            scratch.discard();
            return Err(err);
        }
    };
    let rows: i64 = contents.tables.iter().map(|t| t.rows).sum();
    let mut report = PitrReport {
        target: target.to_string(),
        base_backup: base,
        newest_archived_wal: info.newest_wal.clone(),
        scratch_dir: scratch.dir.clone(),
        scratch_port: scratch.port,
        scratch_running: options.keep_running,
        timeline,
        stopped_at,
        tables_checked: contents.tables.len(),
        rows_checked: rows,
        canary: None,
        database: None,
        previous_database: None,
        previous_dropped: false,
        rto_seconds: 0.0,
    };
    let Some(admin) = admin.as_mut() else {
        report.rto_seconds = started.elapsed().as_secs_f64();
        log::info!(
            "recovered to {target}; the scratch server keeps running: psql -h {} -p {} -U postgres {live}",
            scratch.dir.display(),
            scratch.port
        );
        return Ok(report);
    };
    let swapped = swap_in_copy(
        admin, &scratch, target_url, &live, &contents, options, today,
    );
    scratch.discard();
    let (canary, previous) = swapped?;
    report.canary = canary;
    report.database = Some(live);
    report.previous_dropped = options.drop_previous && previous.is_some();
    report.previous_database = previous.filter(|_| !options.drop_previous);
    report.rto_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// What a point-in-time recovery drill measured.
#[derive(Debug, Clone, Serialize)]
pub struct PitrDrillReport {
    /// The recorded point: after the first marker's commit, before the second's.
    pub target: String,
    pub base_backup: String,
    pub timeline: i32,
    /// Age of the newest archived WAL segment when the drill started
    /// (`pg_stat_archiver`): what recovery from the archive alone would lose now.
    pub rpo_seconds: f64,
    /// Seconds from the start of the recovery to the recovered markers read back.
    pub rto_seconds: f64,
    pub stopped_at: Option<String>,
}

/// The table the drill's markers go into, in the maintenance database `postgres` (never
/// the application's: its backups and row counts stay the application's own).
const MARKER_TABLE: &str = "public.dob_pitr_drill_marker";

/// The nightly point-in-time recovery drill, on the primary `primary_url` (any database
/// of it: the markers go into `postgres`): writes marker A, records the time, writes
/// marker B, waits until the WAL holding B is archived, recovers the cluster to the
/// recorded time in a scratch directory, and passes only if A is there and B is not.
/// Nothing live is changed except the two marker rows (and older markers, deleted).
pub fn drill(
    settings: &PitrSettings,
    primary_url: &str,
    now: Timestamp,
) -> Result<PitrDrillReport> {
    let maintenance = conninfo::with_database(primary_url, "postgres");
    let mut client = connect_url(&maintenance)?;
    let archiver = client
        .query_one(
            "SELECT pg_is_in_recovery(), extract(epoch FROM last_archived_time)::float8
               FROM pg_stat_archiver",
            &[],
        )
        .map_err(|e| Error::db("reading pg_stat_archiver", e))?;
    if archiver.get::<_, bool>(0) {
        return Err(Error::refused(
            "the drill needs the primary",
            "this server is in recovery: run the drill where writes go (the backup units' condition)",
        ));
    }
    let last_archived: Option<f64> = archiver.get(1);
    let rpo_seconds = last_archived.map_or(f64::INFINITY, |t| {
        (now.as_millisecond() as f64 / 1000.0 - t).max(0.0)
    });
    let run = format!("{:08x}", crate::backup::dump::random_u32());
    let marker = |client: &mut postgres::Client, which: &str| -> Result<String> {
        client
            .query_one(
                &format!(
                    "INSERT INTO {MARKER_TABLE} (marker) VALUES ($1)
                     RETURNING to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                ),
                &[&format!("{run}-{which}")],
            )
            .map(|row| row.get(0))
            .map_err(|e| Error::db(format!("writing drill marker {which}"), e))
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {MARKER_TABLE} (marker text PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp());
             DELETE FROM {MARKER_TABLE} WHERE at < now() - interval '7 days'"
        ))
        .map_err(|e| Error::db("preparing the drill's marker table", e))?;
    // A commits, then the clock is read: recovery to that time includes A (committed
    // before it) and stops before B (committed after it).
    marker(&mut client, "a")?;
    let target_raw: String = client
        .query_one(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .map_err(|e| Error::db("reading the clock", e))?
        .get(0);
    std::thread::sleep(Duration::from_millis(100));
    marker(&mut client, "b")?;
    // The segment holding B (pg_switch_wal's own answer names where the next begins).
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_current_wal_insert_lsn())", &[])
        .map_err(|e| Error::db("reading the current WAL segment", e))?
        .get(0);
    client
        .batch_execute("SELECT pg_switch_wal()")
        .map_err(|e| Error::db("switching to a new WAL segment", e))?;
    wait_archived(&mut client, &segment, settings.recovery_timeout)?;
    let target = Target::parse_time(&target_raw).map_err(Error::other)?;
    let started = Instant::now();
    let info = parse_info(&pgbackrest_info(settings)?, &settings.stanza)?;
    check_target(&target, &info, Timestamp::now())?;
    let base = base_backup(&target, &info)
        .map(|b| b.label.clone())
        .unwrap_or_default();
    let scratch = Scratch::create(settings)?;
    let checked = scratch
        .recover(settings, &target, "postgres")
        .and_then(|(stopped_at, timeline, mut recovered)| {
            let found: Vec<String> = recovered
                .query(
                    &format!("SELECT marker FROM {MARKER_TABLE} WHERE marker LIKE $1 ORDER BY 1"),
                    &[&format!("{run}-%")],
                )
                .map_err(|e| Error::db("reading the recovered markers", e))?
                .iter()
                .map(|row| row.get(0))
                .collect();
            if found != [format!("{run}-a")] {
                return Err(Error::refused(
                    format!("the recovery to {target} is wrong"),
                    format!(
                        "markers found: {found:?}; expected only {run}-a (committed before the target), not {run}-b (after it)"
                    ),
                ));
            }
            Ok((stopped_at, timeline))
        });
    let rto_seconds = started.elapsed().as_secs_f64();
    scratch.discard();
    let (stopped_at, timeline) = checked?;
    Ok(PitrDrillReport {
        target: target_raw,
        base_backup: base,
        timeline,
        rpo_seconds,
        rto_seconds,
        stopped_at,
    })
}

/// Waits until `segment` is archived (`pg_stat_archiver`), within `timeout`.
fn wait_archived(client: &mut postgres::Client, segment: &str, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let row = client
            .query_one(
                "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, '')
                   FROM pg_stat_archiver",
                &[],
            )
            .map_err(|e| Error::db("reading pg_stat_archiver", e))?;
        let archived: String = row.get(0);
        // Segment names of one timeline sort by position.
        if archived.as_str() >= segment {
            return Ok(());
        }
        if Instant::now() > deadline {
            let failed: String = row.get(1);
            return Err(Error::other(format!(
                "WAL segment {segment} was not archived within {} s (last archived {archived:?}, last failed {failed:?}): archiving is broken or far behind",
                timeout.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn pgbackrest(settings: &PitrSettings) -> Command {
    let mut cmd = Command::new(&settings.pgbackrest);
    if let Some(config) = &settings.pgbackrest_config {
        cmd.arg(format!("--config={}", config.display()));
    }
    cmd.arg(format!("--stanza={}", settings.stanza))
        .arg("--log-level-console=warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` to the end; its stdout, or its stderr in the error.
fn output_of(mut cmd: Command, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| Error::io(format!("running {what}"), e))?;
    if !out.status.success() {
        return Err(Error::process(
            format!("{what} failed ({})", out.status),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn pgbackrest_info(settings: &PitrSettings) -> Result<String> {
    let mut cmd = pgbackrest(settings);
    cmd.args(["info", "--output=json"]);
    as_postgres_user(&mut cmd)?;
    output_of(cmd, "pgbackrest info")
}

/// The scratch data directory and the server recovering in it.
struct Scratch {
    dir: PathBuf,
    port: u16,
    bin: PgBin,
}

/// The scratch server's whole configuration: the live one's would name the live
/// host's addresses, certificates and archive. Unix socket in the scratch directory
/// only (0700, the postgres user's), so `trust` on it admits only that user and root.
/// `hot_standby` off: nothing may read a half-recovered state, and the settings a
/// hot standby must match on the primary do not apply.
const SCRATCH_CONF: &str = "\
# Written by dob-restore for a point-in-time recovery; the restored postgresql.conf
# (if any) is kept beside this file as postgresql.conf.restored.
listen_addresses = ''
archive_mode = off
hot_standby = off
max_connections = 100
shared_buffers = 128MB
logging_collector = off
ssl = off
";

impl Scratch {
    fn create(settings: &PitrSettings) -> Result<Scratch> {
        let dir = settings.scratch_dir.clone();
        let in_use = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some());
        if in_use {
            return Err(Error::refused(
                format!("scratch directory {} is not empty", dir.display()),
                "another recovery may be running there, or one was kept: stop it (pg_ctl stop -D DIR) and remove the directory, or pass another --scratch-dir",
            ));
        }
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(format!("setting the mode of {}", dir.display()), e))?;
        crate::db::pgbin::give_to_postgres_user(&dir)?;
        Ok(Scratch {
            dir,
            port: settings.scratch_port,
            bin: PgBin::locate()?,
        })
    }

    fn restore(&self, settings: &PitrSettings, target: &Target) -> Result<()> {
        let mut cmd = pgbackrest(settings);
        cmd.arg("restore")
            .arg(format!("--pg1-path={}", self.dir.display()))
            .args(target.pgbackrest_args())
            .arg("--target-action=promote")
            // The recovered copy must never push WAL into the live stanza's archive.
            .arg("--archive-mode=off");
        as_postgres_user(&mut cmd)?;
        output_of(cmd, "pgbackrest restore")?;
        let conf = self.dir.join("postgresql.conf");
        if conf.exists() {
            std::fs::rename(&conf, self.dir.join("postgresql.conf.restored"))
                .map_err(|e| Error::io("setting the restored postgresql.conf aside", e))?;
        }
        let conf_text = format!(
            "{SCRATCH_CONF}port = {}\nunix_socket_directories = '{}'\n",
            self.port,
            self.dir.display().to_string().replace('\'', "''")
        );
        for (name, text) in [
            ("postgresql.conf", conf_text.as_str()),
            ("pg_hba.conf", "local all all trust\n"),
            ("pg_ident.conf", ""),
        ] {
            let path = self.dir.join(name);
            std::fs::write(&path, text)
                .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
            crate::db::pgbin::give_to_postgres_user(&path)?;
        }
        Ok(())
    }

    /// Restores, replays to `target` and promotes, checks the control file, and connects
    /// to `db` of the recovered cluster. Returns where recovery stopped, the new
    /// timeline and the connection.
    fn recover(
        &self,
        settings: &PitrSettings,
        target: &Target,
        db: &str,
    ) -> Result<(Option<String>, i32, postgres::Client)> {
        self.restore(settings, target)?;
        let stopped_at = self.start(settings.recovery_timeout, target, db)?;
        self.check_controldata()?;
        let mut client = self.connect(db)?;
        // The current WAL file's timeline: the checkpoint's lags a promotion.
        let timeline: i32 = client
            .query_one(crate::backup::dump::LINEAGE_SQL, &[])
            .map_err(|e| Error::db("reading the recovered cluster's timeline", e))?
            .get(1);
        Ok((stopped_at, timeline, client))
    }

    fn log_file(&self) -> PathBuf {
        self.dir.join("dob-pitr.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Starts the server and waits until it has replayed to the target and promoted.
    /// Returns where recovery stopped, as logged.
    fn start(&self, timeout: Duration, target: &Target, db: &str) -> Result<Option<String>> {
        let mut cmd = Command::new(self.bin.tool("pg_ctl"));
        cmd.arg("start")
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(self.log_file())
            // pg_ctl only launches it; the loop below follows the replay.
            .arg("-W")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_postgres_user(&mut cmd)?;
        output_of(cmd, "pg_ctl start")?;
        let deadline = Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(self.log_file()).unwrap_or_default();
            if missing_wal(&log) {
                return Err(Error::refused(
                    format!("the WAL archive does not reach {target}"),
                    "recovery replayed every archived segment and stopped before the target (missing WAL: a target later than the last archived commit, or archiving is behind); nothing was changed",
                ));
            }
            if log.contains("database system is shut down") {
                return Err(Error::process(
                    "the scratch server stopped during recovery",
                    self.log_tail(),
                ));
            }
            // Connections are refused until the replay ends (hot_standby off).
            let promoted = self.connect(db).ok().and_then(|mut client| {
                client
                    .query_one("SELECT NOT pg_is_in_recovery()", &[])
                    .ok()
                    .map(|row| row.get::<_, bool>(0))
            });
            if promoted == Some(true) {
                return Ok(log
                    .lines()
                    .find(|l| l.contains("recovery stopping"))
                    .map(|l| l.split("LOG:").last().unwrap_or(l).trim().to_owned()));
            }
            if Instant::now() > deadline {
                return Err(Error::process(
                    format!(
                        "recovery did not finish within {} s (--recovery-timeout)",
                        timeout.as_secs()
                    ),
                    self.log_tail(),
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The recovered cluster must be in production (recovery ended with a promotion).
    fn check_controldata(&self) -> Result<()> {
        // The control file records the promotion just after the server starts taking
        // writes: allow it a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.controldata_state() {
                Ok(()) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn controldata_state(&self) -> Result<()> {
        let mut cmd = Command::new(self.bin.tool("pg_controldata"));
        cmd.arg("-D").arg(&self.dir).env("LC_ALL", "C");
        let text = output_of(cmd, "pg_controldata")?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim_start_matches(':').trim().to_owned())
        };
        let state = field("Database cluster state").unwrap_or_default();
        if state != "in production" {
            return Err(Error::refused(
                "the recovered cluster is not in production",
                format!("pg_controldata says {state:?}: recovery did not end with a promotion"),
            ));
        }
        Ok(())
    }

    fn url(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db} sslmode=disable",
            self.dir.display(),
            self.port
        )
    }

    fn connect(&self, db: &str) -> Result<postgres::Client> {
        let config: postgres::Config = self
            .url(db)
            .parse()
            .map_err(|e| Error::db("the scratch server's connection string", e))?;
        config
            .connect(postgres::NoTls)
            .map_err(|e| Error::db(format!("connecting to the recovered copy of {db}"), e))
    }

    /// Stops the server and removes the directory (a failed or finished recovery).
    fn discard(&self) {
        let mut cmd = Command::new(self.bin.tool("pg_ctl"));
        cmd.arg("stop")
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "immediate", "-w"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if as_postgres_user(&mut cmd).is_ok() {
            let _ = cmd.status();
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            log::warn!("could not remove {}: {e}", self.dir.display());
        }
    }
}

/// Copies the recovered database into a fresh database of the live cluster, checks it
/// against the scratch copy, and swaps it in.
fn swap_in_copy(
    admin: &mut Admin,
    scratch: &Scratch,
    target_url: &str,
    live: &str,
    contents: &SnapshotContents,
    options: PitrOptions,
    today: jiff::civil::Date,
) -> Result<(Option<CanaryCheck>, Option<String>)> {
    let stamp = Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .strftime("%Y%m%dt%H%M%Sz")
        .to_string();
    let fresh = db_name(live, "_pitr_", &stamp);
    let owner = admin.owner_of(live)?;
    let encoding: String = scratch
        .connect(live)?
        .query_one(
            "SELECT pg_encoding_to_char(encoding)::text FROM pg_database WHERE datname = current_database()",
            &[],
        )
        .map_err(|e| Error::db("reading the recovered database's encoding", e))?
        .get(0);
    admin.create_fresh(&fresh, &encoding, owner.as_deref())?;
    let copied = copy_database(scratch, live, target_url, &fresh).and_then(|()| {
        let mut client = connect_url(&conninfo::with_database(target_url, &fresh))?;
        check_contents(
            &mut client,
            &contents.tables,
            contents.canary.as_ref(),
            today,
            "the recovered copy",
        )
    });
    let (_, canary) = match copied {
        Ok(checked) => checked,
        Err(err) => {
            admin.drop_quietly(&fresh);
            return Err(err);
        }
    };
    let before = db_name(live, "_before_", &stamp);
    let previous = admin.swap_in(&fresh, live, &before, options.drop_previous)?;
    Ok((canary, previous))
}

/// `pg_dump` of the scratch copy straight into `pg_restore` on the live server.
fn copy_database(scratch: &Scratch, db: &str, target_url: &str, fresh: &str) -> Result<()> {
    let mut dump = Command::new(scratch.bin.tool("pg_dump"));
    dump.arg("--format=custom")
        .arg(format!("--dbname={}", scratch.url(db)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    as_postgres_user(&mut dump)?;
    let mut dump = dump
        .spawn()
        .map_err(|e| Error::io("starting pg_dump of the recovered copy", e))?;
    let dump_err = collect_stderr(dump.stderr.take().expect("piped stderr"));
    let (url, password) = conninfo::split_password(&conninfo::with_database(target_url, fresh));
    let mut restore = Command::new(scratch.bin.tool("pg_restore"));
    restore
        .arg("--exit-on-error")
        .arg("--no-password")
        .arg(format!("--dbname={url}"))
        .stdin(Stdio::from(dump.stdout.take().expect("piped stdout")))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(password) = password {
        restore.env("PGPASSWORD", password);
    }
    crate::db::dbtls::configure_libpq(&mut restore);
    let restored = restore
        .output()
        .map_err(|e| Error::io("running pg_restore into the live server", e));
    let dumped = dump
        .wait()
        .map_err(|e| Error::io("waiting for pg_dump", e))?;
    let dump_err = dump_err.join().unwrap_or_default();
    let restored = restored?;
    if !dumped.success() {
        return Err(Error::process(
            format!("pg_dump of the recovered copy failed ({dumped}); nothing was changed"),
            dump_err.trim().to_owned(),
        ));
    }
    if !restored.status.success() {
        return Err(Error::process(
            format!(
                "pg_restore into {fresh} failed ({}); nothing was changed",
                restored.status
            ),
            String::from_utf8_lossy(&restored.stderr).trim().to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const INFO: &str = r#"[{"name":"dob","archive":[{"id":"15-1","max":"000000010000000000000004","min":"000000010000000000000001"}],
        "backup":[
          {"label":"20261205-060000F_20261205-070000D","error":false,"timestamp":{"start":1796454000,"stop":1796454060},"lsn":{"start":"0/5000028","stop":"0/5000100"}},
          {"label":"20261205-060000F","error":false,"timestamp":{"start":1796450400,"stop":1796450405},"lsn":{"start":"0/3000028","stop":"0/3000100"}},
          {"label":"broken","error":true,"timestamp":{"start":1,"stop":2},"lsn":{"start":"0/1","stop":"0/2"}}
        ]},{"name":"other","backup":[]}]"#;

    #[test]
    fn lsns_parse_compare_and_print_as_postgresql_writes_them() {
        let a = Lsn::parse("0/3000100").unwrap();
        let b = Lsn::parse("1/0").unwrap();
        assert!(a < b);
        assert_eq!(a.to_string(), "0/3000100");
        assert_eq!(Lsn::parse("A/ff").unwrap().to_string(), "A/FF");
        for bad in ["", "0", "0/", "/1", "g/1", "123456789/0", "0/1/2"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn targets_parse_and_become_pgbackrest_arguments() {
        let t = Target::parse_time("2026-12-05T10:31:05.658037+01:00").unwrap();
        assert_eq!(
            t.pgbackrest_args(),
            [
                "--type=time".to_owned(),
                "--target=2026-12-05 09:31:05.658037+00".to_owned()
            ]
        );
        let err = Target::parse_time("2026-12-05 10:31").unwrap_err();
        assert!(err.contains("RFC 3339"), "{err}");
        assert!(Target::parse_time("yesterday").is_err());
        let l = Target::parse_lsn("0/3000100").unwrap();
        assert_eq!(l.pgbackrest_args()[1], "--target=0/3000100");
        assert!(Target::parse_lsn("3000100").is_err());
    }

    #[test]
    fn the_repository_info_lists_good_backups_oldest_first() {
        let info = parse_info(INFO, "dob").unwrap();
        let labels: Vec<&str> = info.backups.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(
            labels,
            ["20261205-060000F", "20261205-060000F_20261205-070000D"]
        );
        assert_eq!(info.newest_wal.as_deref(), Some("000000010000000000000004"));
        assert!(parse_info(INFO, "missing").is_err());
        assert!(parse_info("not json", "dob").is_err());
        assert!(parse_info(INFO, "other").unwrap().backups.is_empty());
    }

    #[test]
    fn targets_outside_what_the_repository_can_reach_are_refused() {
        let info = parse_info(INFO, "dob").unwrap();
        let oldest_end = Timestamp::from_second(1796450405).unwrap();
        let now = Timestamp::from_second(1796460000).unwrap();
        let check = |target: Target| check_target(&target, &info, now);
        assert!(check(Target::Time(
            oldest_end + jiff::SignedDuration::from_secs(1)
        ))
        .is_ok());
        let same_second = check(Target::Time(oldest_end)).unwrap_err();
        assert!(
            same_second.chain().contains("whole seconds"),
            "{}",
            same_second.chain()
        );
        let future = check(Target::Time(now + jiff::SignedDuration::from_secs(1))).unwrap_err();
        assert!(future.is_refusal() && future.chain().contains("in the future"));
        let early = check(Target::Time(
            oldest_end - jiff::SignedDuration::from_secs(1),
        ))
        .unwrap_err();
        assert!(early.is_refusal() && early.chain().contains("before the oldest backup"));
        let early_lsn = check(Target::Lsn(Lsn::parse("0/3000000").unwrap())).unwrap_err();
        assert!(early_lsn.chain().contains("before the oldest backup"));
        assert!(check(Target::Lsn(Lsn::parse("0/4000000").unwrap())).is_ok());
        let empty = parse_info(INFO, "other").unwrap();
        let none =
            check_target(&Target::Time(ts("2026-12-05T07:00:00Z")), &empty, now).unwrap_err();
        assert!(none.is_refusal() && none.chain().contains("no backup"));
    }

    #[test]
    fn recovery_starts_from_the_newest_backup_that_ended_before_the_target() {
        let info = parse_info(INFO, "dob").unwrap();
        let between = Target::Time(Timestamp::from_second(1796452000).unwrap());
        assert_eq!(
            base_backup(&between, &info).unwrap().label,
            "20261205-060000F"
        );
        let later = Target::Time(Timestamp::from_second(1796459000).unwrap());
        assert_eq!(
            base_backup(&later, &info).unwrap().label,
            "20261205-060000F_20261205-070000D"
        );
        let by_lsn = Target::Lsn(Lsn::parse("0/5000100").unwrap());
        assert_eq!(
            base_backup(&by_lsn, &info).unwrap().label,
            "20261205-060000F_20261205-070000D"
        );
    }

    #[test]
    fn the_missing_wal_message_is_recognised() {
        assert!(missing_wal(
            "2026-12-05 05:31:17.519 UTC [3470] FATAL:  recovery ended before configured recovery target was reached\n"
        ));
        assert!(!missing_wal(
            "LOG:  recovery stopping before commit of transaction 739"
        ));
    }
}
