//! The `dob-restore` command line: its arguments, what a run does with them, and how
//! the result is reported (summary line, `--json`, Prometheus textfile, exit status).
//! The restore itself is [`crate::backup::restore`]; the binary only does the printing.

use crate::backup::catalog::BackupEntry;
use crate::backup::pitr::{PitrDrillReport, PitrReport, PitrSettings, Target};
use crate::backup::restore::{DrillReport, RestoreReport, Selector};
use crate::backup::textfile::JobMetrics;
use crate::cli::{self, Arg, Help, Parser, Stop};
use crate::config::{check_database_url, RestoreConfig};
use crate::s3::ObjectStore;
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

pub const HELP: Help = Help {
    name: "dob-restore",
    about: "list, restore and drill the backups dob-backup wrote to S3

A restore goes into a fresh database first; only when the dump's size and SHA-256 match
its manifest, pg_restore succeeded, every table has the manifest's row count and the
canary user is back, the live database is swapped out (its connections are closed).
A point-in-time recovery is refused (exit 4) before anything is written for a time in
the future or before the oldest physical backup, and after the replay when the WAL
archive does not reach the target; the live database is then unchanged.",
    usage: "\
dob-restore --list [--json]
dob-restore [latest|BACKUP_ID] [--target-url URL] [--drop-previous]
            [--allow-older-timeline] [--json] [--metrics-file PATH]
dob-restore --drill [latest|BACKUP_ID] [--target-url URL] [--allow-older-timeline]
            [--json] [--metrics-file PATH]
dob-restore --pitr-drill [--target-url URL] [--scratch-dir DIR] [--scratch-port PORT]
            [--stanza NAME] [--pgbackrest-config PATH] [--recovery-timeout SECONDS]
            [--json] [--metrics-file PATH]
dob-restore --to-time RFC3339|--to-lsn LSN [--target-url URL] [--drop-previous]
            [--keep-running] [--scratch-dir DIR] [--scratch-port PORT]
            [--stanza NAME] [--pgbackrest-config PATH] [--recovery-timeout SECONDS]
            [--json] [--metrics-file PATH]",
    flags: "\
--list               every backup: id, time, size, complete or not
latest|BACKUP_ID     which backup (default latest: the newest complete one)
--target-url URL     database to restore into (default DOB_DATABASE_URL); for a drill,
                     the server the scratch database is created on
--drop-previous      drop the replaced database instead of keeping it as
                     <db>_before_<time>
--allow-older-timeline
                     use a dump taken on an earlier timeline of the target's
                     cluster (before a failover); refused (exit 4) otherwise
--drill              restore into a scratch database, verify, drop it, report RPO/RTO
--to-time T          point-in-time recovery from the pgBackRest repository: the
                     database as it was at T (RFC 3339 with an offset), recovered in a
                     scratch cluster, verified, then copied in and swapped in
--to-lsn LSN         the same, up to a WAL position (0/3000100)
--pitr-drill         the nightly point-in-time recovery drill, on the primary: writes a
                     marker, records the time, writes a second, waits for its WAL to
                     be archived, recovers to the time in a scratch cluster, passes
                     only with the first marker and without the second; reports RPO
                     (newest archived WAL age) and RTO; changes nothing else
--keep-running       leave the recovered scratch server running (socket in the scratch
                     directory, --scratch-port) and change nothing live
--scratch-dir DIR    where the scratch cluster goes; must not exist or be empty
                     (default /var/lib/postgresql/dob-pitr)
--scratch-port PORT  its port (default 5434; Unix socket only)
--stanza NAME        pgBackRest stanza (default DOB_PGBACKREST_STANZA, else dob)
--pgbackrest-config PATH
                     pgBackRest configuration (default DOB_PGBACKREST_CONFIG, else
                     pgBackRest's own default)
--recovery-timeout SECONDS
                     longest the WAL replay may take (default 3600)
--json               print a machine-readable report on stdout
--metrics-file PATH  write a Prometheus textfile (result, duration, bytes, times)
-h, --help           print this help
-V, --version        print the version",
    environment: "\
Read at start (on hosts: /etc/dob/dob.env):
DOB_DATABASE_URL            the live database (required unless --target-url is given)
DOB_DATABASE_PASSWORD_FILE  file whose first line is the password the URL lacks
DOB_DATABASE_CA_FILE        CA that signed the server's certificate (sslmode=verify-full)
DOB_S3_BUCKET, DOB_S3_PREFIX, DOB_S3_REGION, DOB_S3_ENDPOINT, DOB_S3_SSE,
DOB_S3_KMS_KEY_ID           the bucket, as for dob-backup (not for --to-time/--to-lsn
                            and --pitr-drill)
DOB_TIMEZONE                IANA zone of \"today\" for the canary greeting (default UTC)
DOB_PG_BIN                  directory of pg_restore (default: newest
                            /usr/lib/postgresql/*/bin)
DOB_PGBACKREST              the pgbackrest program (default: pgbackrest on PATH)
DOB_PGBACKREST_STANZA       default --stanza;  DOB_PGBACKREST_CONFIG  default
                            --pgbackrest-config
RUST_LOG                    log level (default info)
AWS credentials: the standard chain (environment, profile, EC2 instance profile).",
    exit_codes: "\
0  success (verification included)
1  failure (S3, PostgreSQL, pg_restore); the target database is unchanged
2  bad command line
3  configuration error (a DOB_* variable)
4  refused: no such backup, an incomplete one (no manifest), or one that failed
   verification (corrupt, truncated, wrong checksum or row counts); the target
   database is unchanged",
};

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    List,
    Restore,
    Drill,
    /// Point-in-time recovery from the pgBackRest repository.
    Pitr,
    /// The point-in-time recovery drill.
    PitrDrill,
}

impl Mode {
    /// The word for a failure message: "restore FAILED: ...".
    pub fn noun(self) -> &'static str {
        match self {
            Mode::List => "listing",
            Mode::Restore => "restore",
            Mode::Drill => "drill",
            Mode::Pitr => "point-in-time recovery",
            Mode::PitrDrill => "point-in-time recovery drill",
        }
    }
}

/// A parsed command line that runs something.
#[derive(Debug, PartialEq)]
pub struct Args {
    pub mode: Mode,
    pub selector: Selector,
    pub target_url: Option<String>,
    pub drop_previous: bool,
    /// Use a dump from an earlier timeline of the target's cluster anyway.
    pub allow_older_timeline: bool,
    pub json: bool,
    pub metrics_file: Option<PathBuf>,
    /// `--to-time`/`--to-lsn`.
    pub pitr_target: Option<Target>,
    pub pitr: PitrFlags,
}

/// The point-in-time recovery's own flags (defaults filled in by [`run`]).
#[derive(Debug, Default, PartialEq)]
pub struct PitrFlags {
    pub keep_running: bool,
    pub scratch_dir: Option<PathBuf>,
    pub scratch_port: Option<u16>,
    pub stanza: Option<String>,
    pub pgbackrest_config: Option<PathBuf>,
    pub recovery_timeout_s: Option<u64>,
}

/// Reads the command line (`--help`, `--version` and mistakes end it through [`Stop`]).
pub fn parse_args(parser: &mut Parser) -> std::result::Result<Args, Stop> {
    let mut args = Args {
        mode: Mode::Restore,
        selector: Selector::Latest,
        target_url: None,
        drop_previous: false,
        allow_older_timeline: false,
        json: false,
        metrics_file: None,
        pitr_target: None,
        pitr: PitrFlags::default(),
    };
    let mut list = false;
    let mut drill = false;
    let mut pitr_drill = false;
    let mut selector = None;
    while let Some(arg) = parser.next_arg()? {
        let flag = match arg {
            Arg::Flag(flag) => flag,
            Arg::Positional(other) => {
                if selector.is_some() {
                    return Err(
                        format!("unexpected argument {other:?}: one backup at a time").into(),
                    );
                }
                selector = Some(Selector::parse(&other).map_err(|e| Stop::Usage(e.to_string()))?);
                continue;
            }
        };
        match flag.as_str() {
            "--list" => list = true,
            "--drill" => drill = true,
            "--pitr-drill" => pitr_drill = true,
            "--json" => args.json = true,
            "--drop-previous" => args.drop_previous = true,
            "--allow-older-timeline" => args.allow_older_timeline = true,
            "--target-url" => args.target_url = Some(parser.value()?),
            "--metrics-file" => args.metrics_file = Some(PathBuf::from(parser.value()?)),
            "--to-time" | "--to-lsn" => {
                if args.pitr_target.is_some() {
                    return Err("one --to-time or --to-lsn at a time".into());
                }
                let raw = parser.value()?;
                args.pitr_target = Some(if flag.as_str() == "--to-time" {
                    Target::parse_time(&raw).map_err(Stop::Usage)?
                } else {
                    Target::parse_lsn(&raw).map_err(Stop::Usage)?
                });
            }
            "--keep-running" => args.pitr.keep_running = true,
            "--scratch-dir" => args.pitr.scratch_dir = Some(PathBuf::from(parser.value()?)),
            "--scratch-port" => {
                let raw = parser.value()?;
                args.pitr.scratch_port =
                    Some(raw.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                        Stop::Usage(format!("--scratch-port {raw:?} is not a port (1-65535)"))
                    })?);
            }
            "--stanza" => args.pitr.stanza = Some(parser.value()?),
            "--pgbackrest-config" => {
                args.pitr.pgbackrest_config = Some(PathBuf::from(parser.value()?))
            }
            "--recovery-timeout" => {
                let raw = parser.value()?;
                args.pitr.recovery_timeout_s = Some(
                    raw.parse()
                        .ok()
                        .filter(|s| (1..=86_400).contains(s))
                        .ok_or_else(|| {
                            Stop::Usage(format!(
                                "--recovery-timeout {raw:?} is not 1 to 86400 seconds"
                            ))
                        })?,
                );
            }
            _ => return Err(cli::unknown_flag(&flag)),
        }
    }
    if pitr_drill {
        if list
            || drill
            || args.pitr_target.is_some()
            || selector.is_some()
            || args.drop_previous
            || args.pitr.keep_running
        {
            return Err(
                "--pitr-drill takes only --target-url, the scratch, pgBackRest and report flags"
                    .into(),
            );
        }
        args.mode = Mode::PitrDrill;
        return Ok(args);
    }
    args.mode = match (list, drill, args.pitr_target.is_some()) {
        (true, true, _) => return Err("--list and --drill do not go together".into()),
        (true, _, true) | (_, true, true) => {
            return Err("--to-time/--to-lsn go with neither --list nor --drill".into())
        }
        (true, false, false) => Mode::List,
        (false, true, false) => Mode::Drill,
        (false, false, true) => Mode::Pitr,
        (false, false, false) => Mode::Restore,
    };
    if args.mode == Mode::Pitr && selector.is_some() {
        return Err("--to-time/--to-lsn choose their own physical backup: no backup id".into());
    }
    if args.mode != Mode::Pitr && args.pitr != PitrFlags::default() {
        return Err("--keep-running, --scratch-*, --stanza, --pgbackrest-config and --recovery-timeout go with --to-time/--to-lsn only".into());
    }
    if args.mode == Mode::Pitr && args.pitr.keep_running && args.drop_previous {
        return Err("--keep-running changes nothing live: no --drop-previous".into());
    }
    if args.mode == Mode::List && (selector.is_some() || args.target_url.is_some()) {
        return Err("--list takes no backup id and no --target-url".into());
    }
    if args.drop_previous && !matches!(args.mode, Mode::Restore | Mode::Pitr) {
        return Err("--drop-previous applies to a restore only".into());
    }
    if let Some(selector) = selector {
        args.selector = selector;
    }
    Ok(args)
}

/// What a successful run produced.
pub enum Done {
    List(Vec<BackupEntry>),
    Restore(Box<RestoreReport>),
    Drill(Box<DrillReport>),
    Pitr(Box<PitrReport>),
    PitrDrill(Box<PitrDrillReport>),
}

/// Runs `args` with the configuration from the environment, `now` being the time the run
/// started (a drill's RPO is measured from it).
pub fn run(args: &Args, now: jiff::Timestamp) -> Result<Done> {
    let config = RestoreConfig::from_env(!matches!(args.mode, Mode::Pitr | Mode::PitrDrill))?;
    let target_url = match (&args.target_url, &config.database_url) {
        (Some(url), _) => {
            check_database_url("--target-url", url)?;
            Some(url.clone())
        }
        (None, url) => url.clone(),
    };
    let need_url = || {
        target_url
            .clone()
            .ok_or_else(|| Error::config("DOB_DATABASE_URL", "is required (or pass --target-url)"))
    };
    // Today where the API computes birthdays, for the canary greeting.
    let today = config.timezone.to_datetime(now).date();
    let Some(s3) = &config.s3 else {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.trim().is_empty());
        let flags = &args.pitr;
        let settings = PitrSettings {
            pgbackrest: env("DOB_PGBACKREST").map_or_else(|| "pgbackrest".into(), PathBuf::from),
            pgbackrest_config: flags
                .pgbackrest_config
                .clone()
                .or_else(|| env("DOB_PGBACKREST_CONFIG").map(PathBuf::from)),
            stanza: flags
                .stanza
                .clone()
                .or_else(|| env("DOB_PGBACKREST_STANZA"))
                .unwrap_or_else(|| "dob".into()),
            scratch_dir: flags
                .scratch_dir
                .clone()
                .unwrap_or_else(|| "/var/lib/postgresql/dob-pitr".into()),
            scratch_port: flags.scratch_port.unwrap_or(5434),
            recovery_timeout: std::time::Duration::from_secs(
                flags.recovery_timeout_s.unwrap_or(3600),
            ),
        };
        if args.mode == Mode::PitrDrill {
            return crate::backup::pitr::drill(&settings, &need_url()?, now)
                .map(|r| Done::PitrDrill(Box::new(r)));
        }
        let target = args.pitr_target.as_ref().expect("--to-time/--to-lsn");
        return crate::backup::pitr::recover(
            &settings,
            target,
            &need_url()?,
            crate::backup::pitr::PitrOptions {
                keep_running: flags.keep_running,
                drop_previous: args.drop_previous,
            },
            now,
            today,
        )
        .map(|r| Done::Pitr(Box::new(r)));
    };
    let store = ObjectStore::connect(s3)?;
    match args.mode {
        Mode::List => crate::backup::catalog::list(&store).map(Done::List),
        Mode::Restore => crate::backup::restore::restore(
            &store,
            &args.selector,
            &need_url()?,
            crate::backup::restore::RestoreOptions {
                drop_previous: args.drop_previous,
                allow_older_timeline: args.allow_older_timeline,
            },
            today,
        )
        .map(|r| Done::Restore(Box::new(r))),
        Mode::Drill => crate::backup::restore::drill(
            &store,
            &args.selector,
            &need_url()?,
            args.allow_older_timeline,
            now,
            today,
        )
        .map(|r| Done::Drill(Box::new(r))),
        Mode::Pitr | Mode::PitrDrill => {
            unreachable!("a point-in-time recovery reads no S3 configuration")
        }
    }
}

/// Exit status for a failed run: 3 configuration, 4 refused (no such backup, incomplete
/// or failing verification), 1 anything else.
pub fn exit_code(err: &Error) -> u8 {
    if err.is_config() {
        3
    } else if err.is_refusal() {
        4
    } else {
        1
    }
}

/// The `--json` report of a failed run.
pub fn failure_json(err: &Error) -> serde_json::Value {
    serde_json::json!({ "result": "failure", "error": err.chain() })
}

/// The textfile metrics of a restore or drill (a listing writes none).
pub fn job_metrics(
    mode: Mode,
    outcome: &Result<Done>,
    finished_unix: f64,
    duration_seconds: f64,
) -> Option<JobMetrics> {
    let job = match mode {
        Mode::List => return None,
        Mode::Restore => "dob_restore",
        Mode::Drill => "dob_restore_drill",
        Mode::Pitr => "dob_restore_pitr",
        Mode::PitrDrill => "dob_restore_pitr_drill",
    };
    let (bytes, extra) = outcome
        .as_ref()
        .map_or((0, vec![]), |done| (done.bytes(), done.extra()));
    Some(JobMetrics {
        job,
        success: outcome.is_ok(),
        finished_unix,
        duration_seconds,
        bytes,
        extra,
    })
}

/// The `--list` table, one backup per line.
pub fn list_table(entries: &[BackupEntry]) -> String {
    let mut out = format!(
        "{:<30} {:<24} {:>14}  STATE\n",
        "ID", "STARTED (UTC)", "BYTES"
    );
    for e in entries {
        let started =
            e.id.started()
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%S").to_string())
                .unwrap_or_default();
        let size = e.dump_bytes.map_or("-".to_owned(), |b| b.to_string());
        let state = if e.is_complete() {
            "complete"
        } else {
            "INCOMPLETE (never restored)"
        };
        let _ = writeln!(
            out,
            "{:<30} {:<24} {:>14}  {state}",
            e.id.as_str(),
            started,
            size
        );
    }
    out
}

impl Done {
    /// The one-line result for stderr.
    pub fn summary(&self) -> String {
        match self {
            Done::List(entries) => {
                // The table itself goes to stdout (unless --json).
                let complete = entries.iter().filter(|e| e.is_complete()).count();
                format!("{} backup(s), {complete} complete", entries.len())
            }
            Done::Restore(r) => format!(
                "restored backup {} into {} ({:.1} MB, sha256 verified, {} table(s) / {} row(s) checked) in {:.1} s; previous database {}",
                r.backup_id,
                r.database,
                r.verified.bytes as f64 / 1e6,
                r.verified.tables_checked,
                r.verified.rows_checked,
                r.duration_seconds,
                match (&r.previous_database, r.previous_dropped) {
                    (_, true) => "dropped".to_owned(),
                    (Some(name), false) => format!("kept as {name}"),
                    (None, false) => "did not exist".to_owned(),
                }
            ),
            Done::Pitr(p) => format!(
                "recovered to {} from physical backup {} (timeline {}{}), {} table(s) / {} row(s) checked, in {:.1} s; {}",
                p.target,
                p.base_backup,
                p.timeline,
                p.stopped_at.as_ref().map_or(String::new(), |s| format!(", {s}")),
                p.tables_checked,
                p.rows_checked,
                p.rto_seconds,
                match (&p.database, &p.previous_database, p.previous_dropped) {
                    (None, _, _) => format!(
                        "the scratch server keeps running on port {} (socket in {})",
                        p.scratch_port,
                        p.scratch_dir.display()
                    ),
                    (Some(db), _, true) => format!("{db} swapped in, the previous one dropped"),
                    (Some(db), Some(before), false) => {
                        format!("{db} swapped in, the previous one kept as {before}")
                    }
                    (Some(db), None, false) => format!("{db} created"),
                }
            ),
            Done::PitrDrill(d) => format!(
                "point-in-time recovery drill passed: recovered to {} from physical backup {} (timeline {}), the marker before it back and the one after it not; RPO {:.0} s (newest archived WAL age), RTO {:.1} s",
                d.target, d.base_backup, d.timeline, d.rpo_seconds, d.rto_seconds
            ),
            Done::Drill(d) => format!(
                "drill of backup {} passed: RPO {:.0} s (backup age), RTO {:.1} s (to a verified restore), {:.1} MB at {:.1} MB/s, {} table(s) / {} row(s) checked, canary: {}",
                d.backup_id,
                d.rpo_seconds,
                d.rto_seconds,
                d.bytes as f64 / 1e6,
                d.throughput_mb_per_s,
                d.verified.tables_checked,
                d.verified.rows_checked,
                d.verified
                    .canary
                    .as_ref()
                    .map_or("no users in the backup".to_owned(), |c| c.greeting.clone())
            ),
        }
    }

    /// The `--json` report.
    pub fn json(&self) -> serde_json::Value {
        match self {
            Done::List(entries) => serde_json::json!({
                "result": "success",
                "backups": entries.iter().map(|e| serde_json::json!({
                    "id": e.id,
                    "time": e.id.started().map(|t| t.to_string()),
                    "size_bytes": e.dump_bytes,
                    "complete": e.is_complete(),
                })).collect::<Vec<_>>(),
            }),
            Done::Restore(r) => serde_json::json!({ "result": "success", "restore": r }),
            Done::Drill(d) => serde_json::json!({ "result": "success", "drill": d }),
            Done::Pitr(p) => serde_json::json!({ "result": "success", "pitr": p }),
            Done::PitrDrill(d) => serde_json::json!({ "result": "success", "pitr_drill": d }),
        }
    }

    /// Bytes restored, for the textfile.
    pub fn bytes(&self) -> u64 {
        match self {
            Done::List(_) => 0,
            Done::Restore(r) => r.verified.bytes,
            Done::Drill(d) => d.bytes,
            Done::Pitr(_) | Done::PitrDrill(_) => 0,
        }
    }

    /// Extra textfile gauges: RPO, RTO and the backup's time for a drill.
    pub fn extra(&self) -> Vec<(&'static str, &'static str, f64)> {
        match self {
            Done::Drill(d) => vec![
                (
                    "rpo_seconds",
                    "Age of the drilled backup when the drill started.",
                    d.rpo_seconds,
                ),
                (
                    "rto_seconds",
                    "Seconds from the drill's start to a verified restore.",
                    d.rto_seconds,
                ),
                (
                    "backup_finished_timestamp_seconds",
                    "When the drilled backup finished (Unix time).",
                    d.backup_finished_at
                        .parse::<jiff::Timestamp>()
                        .map_or(0.0, |t| t.as_millisecond() as f64 / 1000.0),
                ),
            ],
            Done::Pitr(p) => vec![(
                "rto_seconds",
                "Seconds from the start to a verified recovery made live.",
                p.rto_seconds,
            )],
            Done::PitrDrill(d) => vec![
                (
                    "rpo_seconds",
                    "Age of the newest archived WAL segment when the drill started.",
                    d.rpo_seconds,
                ),
                (
                    "rto_seconds",
                    "Seconds from the start of the recovery to the markers read back.",
                    d.rto_seconds,
                ),
            ],
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::manifest::BackupId;

    fn parse(args: &[&str]) -> std::result::Result<Args, Stop> {
        parse_args(&mut Parser::new(args.iter().copied()))
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args) {
            Ok(args) => args,
            other => panic!("{args:?} gave {other:?}"),
        }
    }

    const ID: &str = "20261121T201954.806Z-50455c55";

    #[test]
    fn no_arguments_restore_the_latest_backup() {
        let args = run_args(&[]);
        assert_eq!(args.mode, Mode::Restore);
        assert_eq!(args.selector, Selector::Latest);
        assert!(!args.drop_previous && !args.json);
        assert_eq!(args.target_url, None);
    }

    #[test]
    fn a_drill_takes_an_id_and_flag_values_in_both_spellings() {
        let args = run_args(&[
            "--drill",
            ID,
            "--target-url=postgresql://h/db",
            "--metrics-file",
            "/tmp/m.prom",
            "--json",
        ]);
        assert_eq!(args.mode, Mode::Drill);
        assert_eq!(args.selector, Selector::Id(BackupId::parse(ID).unwrap()));
        assert_eq!(args.target_url.as_deref(), Some("postgresql://h/db"));
        assert_eq!(args.metrics_file, Some(PathBuf::from("/tmp/m.prom")));
        assert!(args.json);
    }

    #[test]
    fn a_point_in_time_recovery_takes_its_target_and_scratch_settings() {
        let args = run_args(&[
            "--to-time",
            "2026-12-05T10:31:05.5+01:00",
            "--scratch-dir=/srv/pitr",
            "--scratch-port",
            "6543",
            "--stanza",
            "main",
            "--keep-running",
            "--json",
        ]);
        assert_eq!(args.mode, Mode::Pitr);
        assert_eq!(
            args.pitr_target,
            Some(Target::Time("2026-12-05T09:31:05.5Z".parse().unwrap()))
        );
        assert_eq!(args.pitr.scratch_dir, Some(PathBuf::from("/srv/pitr")));
        assert_eq!(args.pitr.scratch_port, Some(6543));
        assert_eq!(args.pitr.stanza.as_deref(), Some("main"));
        assert!(args.pitr.keep_running && args.json);
        let drill = run_args(&["--pitr-drill", "--scratch-port", "5999", "--json"]);
        assert_eq!(drill.mode, Mode::PitrDrill);
        assert_eq!(drill.pitr.scratch_port, Some(5999));
        let by_lsn = run_args(&["--to-lsn", "0/3000100", "--drop-previous"]);
        assert_eq!(by_lsn.mode, Mode::Pitr);
        assert!(by_lsn.drop_previous);
    }

    #[test]
    fn help_and_version_win_over_everything_else() {
        assert_eq!(parse(&["--list", "--help"]), Err(Stop::Help));
        assert_eq!(
            parse(&["--bogus", "--help"]),
            Err(Stop::Usage(r#"unknown flag "--bogus""#.into()))
        );
        assert_eq!(parse(&["-V"]), Err(Stop::Version));
    }

    #[test]
    fn contradictory_or_malformed_command_lines_are_usage_errors() {
        for (args, expected) in [
            (&["--list", "--drill"][..], "do not go together"),
            (&["--list", "latest"][..], "--list takes no backup id"),
            (
                &["--list", "--target-url", "postgresql://h/db"][..],
                "no --target-url",
            ),
            (&["--drill", "--drop-previous"][..], "restore only"),
            (&["latest", ID][..], "one backup at a time"),
            (&["--target-url"][..], "--target-url needs a value"),
            (&["--force"][..], r#"unknown flag "--force""#),
            (&["--json=yes"][..], "--json takes no value"),
            (&["--to-time", "yesterday"][..], "RFC 3339"),
            (&["--to-lsn", "12"][..], "WAL position"),
            (
                &["--to-time", "2026-12-05T10:00:00Z", "--drill"][..],
                "neither --list nor --drill",
            ),
            (
                &["--to-time", "2026-12-05T10:00:00Z", ID][..],
                "no backup id",
            ),
            (
                &["--to-time", "2026-12-05T10:00:00Z", "--to-lsn", "0/1"][..],
                "one --to-time",
            ),
            (&["--keep-running"][..], "with --to-time/--to-lsn only"),
            (&["--pitr-drill", "--drill"][..], "--pitr-drill takes only"),
            (
                &["--pitr-drill", "--to-lsn", "0/1"][..],
                "--pitr-drill takes only",
            ),
            (
                &["--to-lsn", "0/1", "--keep-running", "--drop-previous"][..],
                "no --drop-previous",
            ),
            (
                &["--to-lsn", "0/1", "--scratch-port", "0"][..],
                "not a port",
            ),
            (
                &["--to-lsn", "0/1", "--recovery-timeout", "100000"][..],
                "1 to 86400",
            ),
            (&["yesterday"][..], "yesterday"),
        ] {
            match parse(args) {
                Err(Stop::Usage(message)) => assert!(
                    message.contains(expected),
                    "{args:?}: {message:?} lacks {expected:?}"
                ),
                other => panic!("{args:?} was accepted as {other:?}"),
            }
        }
    }

    #[test]
    fn the_table_marks_incomplete_backups_and_unknown_sizes() {
        let entries = [
            BackupEntry {
                id: BackupId::parse(ID).unwrap(),
                dump_bytes: Some(2840),
                has_manifest: true,
            },
            BackupEntry {
                id: BackupId::parse("20261122T020000.000Z-0a0b0c0d").unwrap(),
                dump_bytes: None,
                has_manifest: false,
            },
        ];
        let table = list_table(&entries);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID "));
        assert!(lines[1].starts_with(ID) && lines[1].contains("2026-11-21 20:19:54"));
        assert!(lines[1].contains(" 2840  complete"));
        assert!(lines[2].contains(" -  INCOMPLETE"));
    }

    #[test]
    fn a_listing_writes_no_textfile_and_a_failure_writes_zero_bytes() {
        let failed: Result<Done> = Err(Error::config("DOB_S3_BUCKET", "is required"));
        assert!(job_metrics(Mode::List, &failed, 1.0, 0.5).is_none());
        let metrics = job_metrics(Mode::Drill, &failed, 1.0, 0.5).unwrap();
        assert_eq!(metrics.job, "dob_restore_drill");
        assert!(!metrics.success);
        assert_eq!(metrics.bytes, 0);
        assert_eq!(failed.as_ref().err().map(exit_code), Some(3));
    }
}
