//! `dob-restore`: list backups, restore one (into a fresh database, verified, then
//! swapped in), or run a restore drill. See README "dob-restore".

use dob::catalog::BackupEntry;
use dob::config::{check_database_url, RestoreConfig};
use dob::restore::{DrillReport, RestoreReport, Selector};
use dob::s3::ObjectStore;
use dob::textfile::JobMetrics;
use dob::{Error, Result};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const HELP: &str = "\
dob-restore: list, restore and drill the backups dob-backup wrote to S3

USAGE:
  dob-restore --list [--json]
  dob-restore [latest|BACKUP_ID] [--target-url URL] [--drop-previous] [--json] [--metrics-file PATH]
  dob-restore --drill [latest|BACKUP_ID] [--target-url URL] [--json] [--metrics-file PATH]

  --list               every backup: id, time, size, complete or not
  latest|BACKUP_ID     which backup (default latest: the newest complete one)
  --target-url URL     database to restore into (default DOB_DATABASE_URL); for a drill,
                       the server the scratch database is created on
  --drop-previous      drop the replaced database instead of keeping it as
                       <db>_before_<time>
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

#[derive(Debug, PartialEq)]
enum Mode {
    List,
    Restore,
    Drill,
}

struct Args {
    mode: Mode,
    selector: Selector,
    target_url: Option<String>,
    drop_previous: bool,
    json: bool,
    metrics_file: Option<PathBuf>,
}

fn parse_args() -> std::result::Result<Option<Args>, String> {
    let mut args = Args {
        mode: Mode::Restore,
        selector: Selector::Latest,
        target_url: None,
        drop_previous: false,
        json: false,
        metrics_file: None,
    };
    let mut list = false;
    let mut drill = false;
    let mut selector = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> std::result::Result<String, String> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                return Ok(None);
            }
            "-V" | "--version" => {
                println!("dob-restore {}", env!("CARGO_PKG_VERSION"));
                return Ok(None);
            }
            "--list" => list = true,
            "--drill" => drill = true,
            "--json" => args.json = true,
            "--drop-previous" => args.drop_previous = true,
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
    Ok(Some(args))
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => return ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("dob-restore: {message}; see --help");
            return ExitCode::from(2);
        }
    };
    dob::logging::init();
    let started = Instant::now();
    let outcome = run(&args);
    let duration = started.elapsed().as_secs_f64();
    let (code, bytes, extra) = match &outcome {
        Ok(done) => {
            eprintln!("dob-restore: {}", done.summary());
            if args.json {
                println!("{}", done.json());
            } else if let Done::List(entries) = done {
                print_table(entries);
            }
            (0, done.bytes(), done.extra())
        }
        Err(err) => {
            let what = match args.mode {
                Mode::List => "listing",
                Mode::Restore => "restore",
                Mode::Drill => "drill",
            };
            eprintln!("dob-restore: {what} FAILED: {}", err.chain());
            if args.json {
                let json = serde_json::json!({ "result": "failure", "error": err.chain() });
                println!("{json}");
            }
            let code = if err.is_config() {
                3
            } else if err.is_refusal() {
                4
            } else {
                1
            };
            (code, 0, vec![])
        }
    };
    if let (Some(path), false) = (&args.metrics_file, args.mode == Mode::List) {
        let metrics = JobMetrics {
            job: if args.mode == Mode::Drill {
                "dob_restore_drill"
            } else {
                "dob_restore"
            },
            success: code == 0,
            finished_unix: jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
            duration_seconds: duration,
            bytes,
            extra,
        };
        if let Err(err) = metrics.write(path) {
            eprintln!("dob-restore: {}", err.chain());
            return ExitCode::from(if code == 0 { 1 } else { code });
        }
    }
    ExitCode::from(code)
}

enum Done {
    List(Vec<BackupEntry>),
    Restore(Box<RestoreReport>),
    Drill(Box<DrillReport>),
}

fn run(args: &Args) -> Result<Done> {
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
    let now = jiff::Timestamp::now();
    let today = today()?;
    match args.mode {
        Mode::List => dob::catalog::list(&store).map(Done::List),
        Mode::Restore => dob::restore::restore(
            &store,
            &args.selector,
            &need_url()?,
            args.drop_previous,
            today,
        )
        .map(|r| Done::Restore(Box::new(r))),
        Mode::Drill => dob::restore::drill(&store, &args.selector, &need_url()?, now, today)
            .map(|r| Done::Drill(Box::new(r))),
    }
}

fn print_table(entries: &[BackupEntry]) {
    println!(
        "{:<30} {:<24} {:>14}  STATE",
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
        println!(
            "{:<30} {:<24} {:>14}  {state}",
            e.id.as_str(),
            started,
            size
        );
    }
}

/// Today where the API computes birthdays (DOB_TIMEZONE, default UTC).
fn today() -> Result<jiff::civil::Date> {
    let (zone, _) = dob::config::timezone(
        std::env::var("DOB_TIMEZONE")
            .ok()
            .filter(|v| !v.trim().is_empty()),
    )?;
    Ok(zone.to_datetime(jiff::Timestamp::now()).date())
}

impl Done {
    fn summary(&self) -> String {
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

    fn json(&self) -> serde_json::Value {
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

    fn bytes(&self) -> u64 {
        match self {
            Done::List(_) => 0,
            Done::Restore(r) => r.verified.bytes,
            Done::Drill(d) => d.bytes,
        }
    }

    fn extra(&self) -> Vec<(&'static str, &'static str, f64)> {
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
