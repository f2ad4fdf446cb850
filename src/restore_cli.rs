//! The `dob-restore` command line: its arguments, what a run does with them, and how
//! the result is reported (summary line, `--json`, Prometheus textfile, exit status).
//! The restore itself is [`crate::restore`]; the binary only does the printing.

use crate::catalog::BackupEntry;
use crate::config::{check_database_url, RestoreConfig};
use crate::restore::{DrillReport, RestoreReport, Selector};
use crate::s3::ObjectStore;
use crate::textfile::JobMetrics;
use crate::{Error, Result};
use std::fmt::Write as _;
use std::path::PathBuf;

pub const HELP: &str = "\
dob-restore: list, restore and drill the backups dob-backup wrote to S3

USAGE:
  dob-restore --list [--json]
  dob-restore [latest|BACKUP_ID] [--target-url URL] [--drop-previous]
              [--allow-older-timeline] [--json] [--metrics-file PATH]
  dob-restore --drill [latest|BACKUP_ID] [--target-url URL] [--allow-older-timeline]
              [--json] [--metrics-file PATH]

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
  --json               print a machine-readable report on stdout
  --metrics-file PATH  write a Prometheus textfile (result, duration, bytes, times)

A restore goes into a fresh database first; only when the dump's size and SHA-256 match
its manifest, pg_restore succeeded, every table has the manifest's row count and the
canary user is back, the live database is swapped out (its connections are closed).

Environment: DOB_DATABASE_URL, DOB_S3_BUCKET, DOB_S3_PREFIX, DOB_S3_REGION,
DOB_S3_ENDPOINT, DOB_TIMEZONE (for the canary greeting), DOB_PG_BIN. AWS credentials:
the standard chain (environment, profile, EC2 instance profile).

Exit status: 0 success (verification included); 1 failure (S3, PostgreSQL,
pg_restore); 2 bad command line; 3 configuration error; 4 refused: no such backup, an
incomplete one (no manifest), or one that failed verification (corrupt, truncated,
wrong checksum or row counts). On 1 and 4 the target database is unchanged.";

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    List,
    Restore,
    Drill,
}

impl Mode {
    /// The word for a failure message: "restore FAILED: ...".
    pub fn noun(self) -> &'static str {
        match self {
            Mode::List => "listing",
            Mode::Restore => "restore",
            Mode::Drill => "drill",
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
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Help,
    Version,
    Run(Args),
}

/// Parses the arguments (without the program name). The error is a usage message
/// (exit 2).
pub fn parse_args(argv: &[String]) -> std::result::Result<Command, String> {
    let mut args = Args {
        mode: Mode::Restore,
        selector: Selector::Latest,
        target_url: None,
        drop_previous: false,
        allow_older_timeline: false,
        json: false,
        metrics_file: None,
    };
    let mut list = false;
    let mut drill = false;
    let mut selector = None;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> std::result::Result<String, String> {
            inline
                .or_else(|| it.next().map(String::as_str))
                .map(str::to_owned)
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "-V" | "--version" => return Ok(Command::Version),
            "--list" => list = true,
            "--drill" => drill = true,
            "--json" => args.json = true,
            "--drop-previous" => args.drop_previous = true,
            "--allow-older-timeline" => args.allow_older_timeline = true,
            "--target-url" => args.target_url = Some(value("--target-url")?),
            "--metrics-file" => args.metrics_file = Some(PathBuf::from(value("--metrics-file")?)),
            other if other.starts_with('-') => return Err(format!("unknown flag {other:?}")),
            other => {
                if selector.is_some() {
                    return Err(format!(
                        "unexpected argument {other:?}: one backup at a time"
                    ));
                }
                selector = Some(Selector::parse(other).map_err(|e| e.to_string())?);
            }
        }
    }
    args.mode = match (list, drill) {
        (true, true) => return Err("--list and --drill do not go together".into()),
        (true, false) => Mode::List,
        (false, true) => Mode::Drill,
        (false, false) => Mode::Restore,
    };
    if args.mode == Mode::List && (selector.is_some() || args.target_url.is_some()) {
        return Err("--list takes no backup id and no --target-url".into());
    }
    if args.drop_previous && args.mode != Mode::Restore {
        return Err("--drop-previous applies to a restore only".into());
    }
    if let Some(selector) = selector {
        args.selector = selector;
    }
    Ok(Command::Run(args))
}

/// What a successful run produced.
pub enum Done {
    List(Vec<BackupEntry>),
    Restore(Box<RestoreReport>),
    Drill(Box<DrillReport>),
}

/// Runs `args` with the configuration from the environment, `now` being the time the run
/// started (a drill's RPO is measured from it).
pub fn run(args: &Args, now: jiff::Timestamp) -> Result<Done> {
    let config = RestoreConfig::from_env()?;
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
    let store = ObjectStore::connect(&config.s3)?;
    // Today where the API computes birthdays, for the canary greeting.
    let today = config.timezone.to_datetime(now).date();
    match args.mode {
        Mode::List => crate::catalog::list(&store).map(Done::List),
        Mode::Restore => crate::restore::restore(
            &store,
            &args.selector,
            &need_url()?,
            crate::restore::RestoreOptions {
                drop_previous: args.drop_previous,
                allow_older_timeline: args.allow_older_timeline,
            },
            today,
        )
        .map(|r| Done::Restore(Box::new(r))),
        Mode::Drill => crate::restore::drill(
            &store,
            &args.selector,
            &need_url()?,
            args.allow_older_timeline,
            now,
            today,
        )
        .map(|r| Done::Drill(Box::new(r))),
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
        }
    }

    /// Bytes restored, for the textfile.
    pub fn bytes(&self) -> u64 {
        match self {
            Done::List(_) => 0,
            Done::Restore(r) => r.verified.bytes,
            Done::Drill(d) => d.bytes,
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
            _ => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::BackupId;

    fn parse(args: &[&str]) -> std::result::Result<Command, String> {
        let argv: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        parse_args(&argv)
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Command::Run(args)) => args,
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
    fn help_and_version_win_over_everything_else() {
        assert_eq!(parse(&["--list", "--help"]), Ok(Command::Help));
        assert_eq!(parse(&["-V"]), Ok(Command::Version));
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
            (&["--force"][..], "unknown flag"),
            (&["yesterday"][..], "yesterday"),
        ] {
            match parse(args) {
                Err(message) => assert!(
                    message.contains(expected),
                    "{args:?}: {message:?} lacks {expected:?}"
                ),
                Ok(command) => panic!("{args:?} was accepted as {command:?}"),
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
