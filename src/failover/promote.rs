//! `dob-promote`: turning a streaming replica into the primary, safely.
//!
//! The work is split so the decisions can be tested without servers: the binary
//! measures ([`LocalState`], [`PrimaryProbe`]), pure functions judge the measurements
//! ([`measure_lag`], [`judge`]), and only then does anything change (replay resumed and
//! awaited, `pg_promote`, a write to prove it). Every refusal has its own exit code
//! ([`Outcome::exit_code`]), and `--dry-run` stops after the judgement.

use crate::{Error, Result};
use postgres::Client;
use serde_json::json;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default `--max-lag-bytes`: one WAL segment.
pub const DEFAULT_MAX_LAG_BYTES: u64 = 16 * 1024 * 1024;

/// A WAL position, as PostgreSQL prints it (`16/B374D848`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lsn(pub u64);

impl Lsn {
    pub fn parse(text: &str) -> Option<Lsn> {
        let (high, low) = text.trim().split_once('/')?;
        let high = u64::from_str_radix(high, 16).ok()?;
        let low = u64::from_str_radix(low, 16).ok()?;
        (high <= u32::MAX as u64 && low <= u32::MAX as u64).then_some(Lsn(high << 32 | low))
    }

    /// Bytes from `self` forward to `later`; zero when `later` is not later.
    pub fn bytes_until(self, later: Lsn) -> u64 {
        later.0.saturating_sub(self.0)
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// What the command line asks for (see [`crate::failover::promote_cli`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub database_url: String,
    pub primary_urls: Vec<String>,
    pub max_lag_bytes: u64,
    pub force: bool,
    pub allow_data_loss: bool,
    pub dry_run: bool,
    pub json: bool,
    pub replay_timeout: Duration,
    pub metrics_file: Option<PathBuf>,
}

/// The local server, as measured before anything changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalState {
    pub in_recovery: bool,
    /// Last WAL received and flushed by the walreceiver (None: nothing streamed yet,
    /// e.g. a replica restored from an archive).
    pub receive_lsn: Option<Lsn>,
    /// Last WAL applied.
    pub replay_lsn: Option<Lsn>,
    pub replay_paused: bool,
    /// Timeline of the last checkpoint or restartpoint.
    pub timeline: u32,
    /// The replica's `primary_conninfo` (readable by superusers and pg_read_all_settings).
    pub primary_conninfo: Option<String>,
}

/// What one old-primary host answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAnswer {
    /// Nothing answered within the timeout, or the server is starting or stopping.
    Unreachable(String),
    /// It answered and is in recovery itself: not a competing primary.
    Replica,
    /// It answered and accepts writes: promoting now would split the brain.
    Primary { current_lsn: Lsn },
    /// It answered but its role could not be read (authentication, permissions): it
    /// may still be a primary.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimaryProbe {
    pub host: String,
    pub answer: ProbeAnswer,
}

/// How far behind the replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lag {
    /// WAL received but not yet applied (applied before promotion: not lost, but it must
    /// be replayed first).
    pub received_not_replayed: u64,
    /// WAL the old primary had written that this replica never received (lost by a
    /// promotion); `None` when no old primary answered.
    pub not_received: Option<u64>,
    /// Distance from the newest known position to the applied one: what the bound is
    /// checked against.
    pub total: u64,
}

/// Lag from the measurements: the newest known position is the furthest of what the
/// replica received and what any answering primary reports.
pub fn measure_lag(local: &LocalState, probes: &[PrimaryProbe]) -> Lag {
    let replay = local.replay_lsn.unwrap_or(Lsn(0));
    let received = local.receive_lsn.unwrap_or(replay).max(replay);
    let primary_position = probes
        .iter()
        .filter_map(|p| match p.answer {
            ProbeAnswer::Primary { current_lsn } => Some(current_lsn),
            _ => None,
        })
        .max();
    let newest = primary_position.map_or(received, |p| p.max(received));
    Lag {
        received_not_replayed: replay.bytes_until(received),
        not_received: primary_position.map(|p| received.bytes_until(p)),
        total: replay.bytes_until(newest),
    }
}

/// Why dob-promote did not (or, dry-run, would not) promote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    NotAReplica,
    PrimaryStillUp { hosts: Vec<String> },
    LagTooHigh { lag: u64, max: u64 },
}

impl Refusal {
    pub fn exit_code(&self) -> u8 {
        match self {
            Refusal::NotAReplica => 3,
            Refusal::PrimaryStillUp { .. } => 4,
            Refusal::LagTooHigh { .. } => 5,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::NotAReplica => "not_a_replica",
            Refusal::PrimaryStillUp { .. } => "primary_still_up",
            Refusal::LagTooHigh { .. } => "lag_too_high",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAReplica => f.write_str(
                "the local server is not in recovery: it is already a primary, nothing to promote",
            ),
            Refusal::PrimaryStillUp { hosts } => write!(
                f,
                "the old primary still answers as a primary (or could not be ruled out) at {}: stop it first, or pass --force if it is fenced off",
                hosts.join(", ")
            ),
            Refusal::LagTooHigh { lag, max } => write!(
                f,
                "the replica is {lag} bytes of WAL behind, more than --max-lag-bytes {max}: pass --allow-data-loss to promote anyway"
            ),
        }
    }
}

/// The checks, in order, over the measurements. Overrides (`--force`,
/// `--allow-data-loss`) turn a refusal into a warning.
pub fn judge(
    options: &Options,
    local: &LocalState,
    probes: &[PrimaryProbe],
    lag: &Lag,
) -> std::result::Result<Vec<String>, Refusal> {
    let mut warnings = Vec::new();
    if !local.in_recovery {
        return Err(Refusal::NotAReplica);
    }
    let live: Vec<String> = probes
        .iter()
        .filter_map(|p| match &p.answer {
            ProbeAnswer::Primary { .. } => Some(format!("{} (primary)", p.host)),
            ProbeAnswer::Unknown(why) => {
                Some(format!("{} (answered, role unknown: {why})", p.host))
            }
            _ => None,
        })
        .collect();
    if !live.is_empty() {
        let refusal = Refusal::PrimaryStillUp { hosts: live };
        if !options.force {
            return Err(refusal);
        }
        warnings.push(format!("--force: {refusal}"));
    }
    if probes.is_empty() {
        warnings.push(
            "no old primary to check (no --primary-url and no readable primary_conninfo)".into(),
        );
    }
    if lag.total > options.max_lag_bytes {
        let refusal = Refusal::LagTooHigh {
            lag: lag.total,
            max: options.max_lag_bytes,
        };
        if !options.allow_data_loss {
            return Err(refusal);
        }
        warnings.push(format!("--allow-data-loss: {refusal}"));
    }
    Ok(warnings)
}

/// How the run ended.
#[derive(Debug)]
pub enum Outcome {
    Promoted(Promotion),
    WouldPromote,
    Refused(Refusal),
    /// `pg_promote` returned false or timed out, or the server refused a write after.
    NotCompleted(String),
    /// Something failed before a decision (connection, query): see `Report::error`.
    Error,
}

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Promoted(_) | Outcome::WouldPromote => 0,
            Outcome::Refused(refusal) => refusal.exit_code(),
            Outcome::NotCompleted(_) => 6,
            Outcome::Error => 1,
        }
    }
}

/// What a completed promotion looked like.
#[derive(Debug, Clone)]
pub struct Promotion {
    pub old_timeline: u32,
    pub new_timeline: u32,
    /// The last WAL applied before recovery ended: the new timeline starts here.
    pub promoted_at_lsn: Lsn,
    /// Time from `pg_promote` to the first committed write.
    pub promote_duration: Duration,
    /// Time spent waiting for received WAL to be applied first.
    pub replay_wait: Duration,
}

/// Everything the run measured and did, for the text and JSON reports.
#[derive(Debug)]
pub struct Report {
    pub outcome: Outcome,
    pub local: Option<LocalState>,
    pub probes: Vec<PrimaryProbe>,
    pub lag: Option<Lag>,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    pub duration: Duration,
    pub error: Option<String>,
}

impl Report {
    /// The one-line human summary.
    pub fn summary(&self) -> String {
        let lag = self
            .lag
            .map(|l| format!("{} bytes", l.total))
            .unwrap_or_else(|| "unknown".into());
        let took = format!("{:.2} s", self.duration.as_secs_f64());
        match &self.outcome {
            Outcome::Promoted(p) => format!(
                "promoted: timeline {} -> {} at {}, lag was {lag}, pg_promote to first write {:.2} s, total {took}",
                p.old_timeline,
                p.new_timeline,
                p.promoted_at_lsn,
                p.promote_duration.as_secs_f64()
            ),
            Outcome::WouldPromote => format!(
                "dry run: every check passed (lag {lag}); would resume replay if paused, wait for it, pg_promote(wait => true) and verify a write"
            ),
            Outcome::Refused(r) => format!(
                "{}refused (exit {}): {r}",
                if self.dry_run { "dry run: would be " } else { "" },
                r.exit_code()
            ),
            Outcome::NotCompleted(why) => format!("promotion did not complete: {why}"),
            Outcome::Error => format!(
                "error: {}",
                self.error.as_deref().unwrap_or("unknown failure")
            ),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (result, reason) = match &self.outcome {
            Outcome::Promoted(_) => ("promoted", None),
            Outcome::WouldPromote => ("would_promote", None),
            Outcome::Refused(r) => ("refused", Some(r.reason())),
            Outcome::NotCompleted(_) => ("failed", Some("promotion_not_completed")),
            Outcome::Error => ("error", None),
        };
        let promotion = match &self.outcome {
            Outcome::Promoted(p) => json!({
                "old_timeline": p.old_timeline,
                "new_timeline": p.new_timeline,
                "promoted_at_lsn": p.promoted_at_lsn.to_string(),
                "promote_seconds": p.promote_duration.as_secs_f64(),
                "replay_wait_seconds": p.replay_wait.as_secs_f64(),
            }),
            _ => serde_json::Value::Null,
        };
        json!({
            "result": result,
            "reason": reason,
            "exit_code": self.outcome.exit_code(),
            "dry_run": self.dry_run,
            "message": self.summary(),
            "error": self.error,
            "local": self.local.as_ref().map(|l| json!({
                "in_recovery": l.in_recovery,
                "receive_lsn": l.receive_lsn.map(|x| x.to_string()),
                "replay_lsn": l.replay_lsn.map(|x| x.to_string()),
                "replay_paused": l.replay_paused,
                "timeline": l.timeline,
            })),
            "old_primary": self.probes.iter().map(|p| {
                let (state, detail) = match &p.answer {
                    ProbeAnswer::Unreachable(why) => ("unreachable", Some(why.clone())),
                    ProbeAnswer::Replica => ("replica", None),
                    ProbeAnswer::Primary { current_lsn } => ("primary", Some(current_lsn.to_string())),
                    ProbeAnswer::Unknown(why) => ("unknown", Some(why.clone())),
                };
                json!({"host": p.host, "state": state, "detail": detail})
            }).collect::<Vec<_>>(),
            "lag": self.lag.map(|l| json!({
                "total_bytes": l.total,
                "received_not_replayed_bytes": l.received_not_replayed,
                "not_received_bytes": l.not_received,
            })),
            "promotion": promotion,
            "warnings": self.warnings,
            "duration_seconds": self.duration.as_secs_f64(),
        })
    }

    /// Prometheus textfile for node_exporter.
    pub fn metrics_text(&self, now_unix: u64) -> String {
        let code = self.outcome.exit_code();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, value: String| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}\n"
            ));
        };
        gauge(
            "dob_promote_success",
            "1 when the last dob-promote run succeeded (promoted, or a dry run that would).",
            u8::from(code == 0).to_string(),
        );
        gauge(
            "dob_promote_exit_code",
            "Exit status of the last dob-promote run.",
            code.to_string(),
        );
        gauge(
            "dob_promote_duration_seconds",
            "Wall time of the last dob-promote run.",
            format!("{:.3}", self.duration.as_secs_f64()),
        );
        gauge(
            "dob_promote_lag_bytes",
            "WAL bytes the replica was behind when measured (-1 unknown).",
            self.lag.map_or("-1".into(), |l| l.total.to_string()),
        );
        gauge(
            "dob_promote_timestamp_seconds",
            "When the last dob-promote run finished (Unix time).",
            now_unix.to_string(),
        );
        out
    }
}

/// Writes `text` to `path` atomically: a temporary file beside it, then a rename, so
/// node_exporter never reads half a file.
pub fn write_metrics_file(path: &Path, text: &str) -> Result<()> {
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::other(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, text).map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

// --- measuring and acting (needs servers) ---------------------------------------------

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn connect(url: &str, what: &str) -> Result<Client> {
    let (mut config, tls) = crate::db::dbtls::client_config(url, "--database-url")?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    config.application_name("dob-promote");
    config
        .connect(tls)
        .map_err(|e| Error::db(format!("connecting to {what}"), e))
}

fn query_lsn(client: &mut Client, sql: &str) -> Result<Option<Lsn>> {
    let text: Option<String> = client
        .query_one(sql, &[])
        .map_err(|e| Error::db(format!("running {sql}"), e))?
        .get(0);
    Ok(text.as_deref().and_then(Lsn::parse))
}

pub fn measure_local(client: &mut Client) -> Result<LocalState> {
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(), \
                    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END, \
                    (SELECT timeline_id FROM pg_control_checkpoint()), \
                    (SELECT setting FROM pg_settings WHERE name = 'primary_conninfo')",
            &[],
        )
        .map_err(|e| Error::db("reading the local server's recovery state", e))?;
    let in_recovery: bool = row.get(0);
    let timeline: i32 = row.get(2);
    let conninfo: Option<String> = row.get(3);
    Ok(LocalState {
        in_recovery,
        receive_lsn: query_lsn(client, "SELECT pg_last_wal_receive_lsn()::text")?,
        replay_lsn: query_lsn(client, "SELECT pg_last_wal_replay_lsn()::text")?,
        replay_paused: row.get(1),
        timeline: timeline as u32,
        primary_conninfo: conninfo.filter(|c| !c.trim().is_empty()),
    })
}

/// One `postgres::Config` per host named in `url` (a multi-host URL connects to the
/// first that answers; here every host must be asked), with a short timeout.
pub fn per_host_configs(url: &str) -> Result<Vec<(String, postgres::Config)>> {
    let config: postgres::Config = crate::db::conninfo::for_driver(url)
        .parse()
        .map_err(|e| Error::config("--primary-url", format!("is not a valid URL: {e}")))?;
    let ports = config.get_ports();
    let mut out = Vec::new();
    for (i, host) in config.get_hosts().iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let mut one = postgres::Config::new();
        let name = match host {
            postgres::config::Host::Tcp(name) => {
                one.host(name);
                format!("{name}:{port}")
            }
            postgres::config::Host::Unix(path) => {
                one.host_path(path);
                format!("{}:{port}", path.display())
            }
        };
        one.port(port)
            .connect_timeout(CONNECT_TIMEOUT)
            .application_name("dob-promote");
        if let Some(user) = config.get_user() {
            one.user(user);
        }
        if let Some(password) = config.get_password() {
            one.password(password);
        }
        one.dbname(config.get_dbname().unwrap_or("postgres"));
        out.push((name, one));
    }
    Ok(out)
}

/// The old primary as the replica knows it: the host and port of its
/// `primary_conninfo`, with the user, password and database of `local_url`.
pub fn primary_from_conninfo(conninfo: &str, local_url: &str) -> Option<String> {
    // Read as keywords: a conninfo with `sslrootcert` (verify-full replication) is not
    // something the driver parses.
    let (host, port) = crate::db::conninfo::keyword_host_port(conninfo)?;
    let local: postgres::Config = crate::db::conninfo::for_driver(local_url).parse().ok()?;
    let user = local.get_user().unwrap_or("postgres");
    let db = local.get_dbname().unwrap_or("postgres");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    Some(format!("postgresql://{user}@{host}:{port}/{db}"))
}

pub fn probe(host: String, config: &postgres::Config) -> PrimaryProbe {
    // Without certificate checks: a live primary whose certificate this host does not
    // trust must still count as live (answering "unreachable" would allow a split brain).
    let tls = match crate::db::dbtls::connector(None) {
        Ok(tls) => tls,
        Err(err) => {
            let answer = ProbeAnswer::Unknown(err.chain());
            return PrimaryProbe { host, answer };
        }
    };
    let answer = match config.connect(tls) {
        Err(err) => match err.code() {
            // Answered at the protocol level with an error that is not "starting up /
            // shutting down": it is alive and we cannot tell what it is.
            Some(code) if *code != postgres::error::SqlState::CANNOT_CONNECT_NOW => {
                ProbeAnswer::Unknown(err.to_string())
            }
            _ => ProbeAnswer::Unreachable(error_text(&err)),
        },
        Ok(mut client) => {
            match client.query_one(
                "SELECT pg_is_in_recovery(), \
                        CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END",
                &[],
            ) {
                Ok(row) if row.get::<_, bool>(0) => ProbeAnswer::Replica,
                Ok(row) => match row.get::<_, Option<String>>(1).as_deref().and_then(Lsn::parse) {
                    Some(current_lsn) => ProbeAnswer::Primary { current_lsn },
                    None => ProbeAnswer::Unknown("no WAL position reported".into()),
                },
                Err(err) => ProbeAnswer::Unknown(error_text(&err)),
            }
        }
    };
    PrimaryProbe { host, answer }
}

fn error_text(err: &postgres::Error) -> String {
    let mut out = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(inner) = cause {
        out.push_str(": ");
        out.push_str(&inner.to_string());
        cause = inner.source();
    }
    out
}

/// Runs the whole procedure. Errors, refusals and incomplete promotions are all
/// outcomes in the report.
pub fn run(options: &Options) -> Report {
    let started = Instant::now();
    let mut report = Report {
        outcome: Outcome::Error,
        local: None,
        probes: Vec::new(),
        lag: None,
        warnings: Vec::new(),
        dry_run: options.dry_run,
        duration: Duration::ZERO,
        error: None,
    };
    if let Err(err) = run_into(options, &mut report) {
        report.outcome = Outcome::Error;
        report.error = Some(err.chain());
    }
    report.duration = started.elapsed();
    report
}

fn run_into(options: &Options, report: &mut Report) -> Result<()> {
    let mut local = connect(&options.database_url, "the local server (--database-url)")?;
    let state = measure_local(&mut local)?;
    report.local = Some(state.clone());
    if !state.in_recovery {
        report.outcome = Outcome::Refused(Refusal::NotAReplica);
        return Ok(());
    }

    let mut primary_urls = options.primary_urls.clone();
    if primary_urls.is_empty() {
        if let Some(url) = state
            .primary_conninfo
            .as_deref()
            .and_then(|c| primary_from_conninfo(c, &options.database_url))
        {
            report.warnings.push(format!(
                "no --primary-url: checking the replica's upstream {url}"
            ));
            primary_urls.push(url);
        }
    }
    // An old primary's URL carries no password (the command line is public): it is
    // checked with the local server's, as the replica's own upstream is.
    let local_password = crate::db::conninfo::for_driver(&options.database_url)
        .parse::<postgres::Config>()
        .ok()
        .and_then(|c| c.get_password().map(<[u8]>::to_vec));
    // Every host at once: a dead one costs its connect timeout, not one per host.
    let targets: Vec<(String, postgres::Config)> = primary_urls
        .iter()
        .map(|url| per_host_configs(url))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .map(|(host, mut config)| {
            if let (None, Some(password)) = (config.get_password(), &local_password) {
                config.password(password.clone());
            }
            (host, config)
        })
        .collect();
    report.probes = std::thread::scope(|scope| {
        let handles: Vec<_> = targets
            .iter()
            .map(|(host, config)| scope.spawn(move || probe(host.clone(), config)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a probe thread panicked"))
            .collect()
    });

    let lag = measure_lag(&state, &report.probes);
    report.lag = Some(lag);
    match judge(options, &state, &report.probes, &lag) {
        Err(refusal) => {
            report.outcome = Outcome::Refused(refusal);
            return Ok(());
        }
        Ok(warnings) => report.warnings.extend(warnings),
    }
    if options.dry_run {
        report.outcome = Outcome::WouldPromote;
        return Ok(());
    }

    // Received WAL is applied before recovery ends only if replay runs: a paused replay
    // would be cut short by the promotion and its WAL lost.
    let replay_started = Instant::now();
    if state.replay_paused {
        local
            .batch_execute("SELECT pg_wal_replay_resume()")
            .map_err(|e| Error::db("resuming WAL replay", e))?;
        report
            .warnings
            .push("WAL replay was paused: resumed it".into());
    }
    if let Some(target) = state.receive_lsn {
        let deadline = Instant::now() + options.replay_timeout;
        loop {
            let replayed = query_lsn(&mut local, "SELECT pg_last_wal_replay_lsn()::text")?;
            if replayed.is_some_and(|r| r >= target) {
                break;
            }
            if Instant::now() >= deadline {
                let behind = replayed.unwrap_or(Lsn(0)).bytes_until(target);
                let refusal = Refusal::LagTooHigh {
                    lag: behind,
                    max: options.max_lag_bytes,
                };
                if !options.allow_data_loss {
                    report.warnings.push(format!(
                        "replay did not reach {target} within {:?}",
                        options.replay_timeout
                    ));
                    report.outcome = Outcome::Refused(refusal);
                    return Ok(());
                }
                report.warnings.push(format!(
                    "--allow-data-loss: replay did not reach {target} within {:?}; promoting {behind} bytes short",
                    options.replay_timeout
                ));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let replay_wait = replay_started.elapsed();

    let promote_started = Instant::now();
    let promoted_at_lsn =
        query_lsn(&mut local, "SELECT pg_last_wal_replay_lsn()::text")?.unwrap_or(Lsn(0));
    let promoted: bool =
        match local.query_one("SELECT pg_promote(wait => true, wait_seconds => 60)", &[]) {
            Ok(row) => row.get(0),
            Err(err) => {
                report.outcome =
                    Outcome::NotCompleted(format!("pg_promote failed: {}", error_text(&err)));
                return Ok(());
            }
        };
    if !promoted {
        report.outcome = Outcome::NotCompleted("pg_promote did not finish within 60 s".into());
        return Ok(());
    }
    match verify_writable(&mut local) {
        Ok(new_timeline) if new_timeline > state.timeline => {
            report.outcome = Outcome::Promoted(Promotion {
                old_timeline: state.timeline,
                new_timeline,
                promoted_at_lsn,
                promote_duration: promote_started.elapsed(),
                replay_wait,
            });
        }
        Ok(new_timeline) => {
            report.outcome = Outcome::NotCompleted(format!(
                "the server accepts writes but is on timeline {new_timeline}, not after {}",
                state.timeline
            ));
        }
        Err(err) => {
            report.outcome = Outcome::NotCompleted(format!(
                "the server did not accept a write after promotion: {}",
                err.chain()
            ));
        }
    }
    Ok(())
}

/// Proves the server takes writes: a transaction that gets a transaction id and
/// writes a (temporary) table, committed. Returns the timeline it writes on.
fn verify_writable(client: &mut Client) -> Result<u32> {
    let mut tx = client
        .transaction()
        .map_err(|e| Error::db("starting the verification transaction", e))?;
    tx.batch_execute(
        "CREATE TEMP TABLE dob_promote_check (at timestamptz) ON COMMIT DROP; \
         INSERT INTO dob_promote_check VALUES (now())",
    )
    .map_err(|e| Error::db("writing a temporary table", e))?;
    let row = tx
        .query_one(
            "SELECT txid_current()::text, pg_is_in_recovery(), \
                    ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int",
            &[],
        )
        .map_err(|e| Error::db("getting a transaction id", e))?;
    let in_recovery: bool = row.get(1);
    let timeline: i32 = row.get(2);
    tx.commit()
        .map_err(|e| Error::db("committing the verification transaction", e))?;
    if in_recovery {
        return Err(Error::other("the server still reports being in recovery"));
    }
    Ok(timeline as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options {
        Options {
            database_url: "postgresql://postgres@127.0.0.1:5433/dob".into(),
            primary_urls: vec![],
            max_lag_bytes: DEFAULT_MAX_LAG_BYTES,
            force: false,
            allow_data_loss: false,
            dry_run: false,
            json: false,
            replay_timeout: Duration::from_secs(60),
            metrics_file: None,
        }
    }

    fn replica(receive: u64, replay: u64) -> LocalState {
        LocalState {
            in_recovery: true,
            receive_lsn: Some(Lsn(receive)),
            replay_lsn: Some(Lsn(replay)),
            replay_paused: false,
            timeline: 1,
            primary_conninfo: None,
        }
    }

    fn probe(answer: ProbeAnswer) -> PrimaryProbe {
        PrimaryProbe {
            host: "10.0.1.10:5432".into(),
            answer,
        }
    }

    #[test]
    fn lsns_parse_print_and_subtract_like_postgresql() {
        let lsn = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(lsn.0, 0x16_B374_D848);
        assert_eq!(lsn.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0"), Some(Lsn(0)));
        assert_eq!(Lsn(100).bytes_until(Lsn(250)), 150);
        assert_eq!(Lsn(250).bytes_until(Lsn(100)), 0);
        for bad in ["", "16", "x/1", "1/2/3", "100000000/0"] {
            assert_eq!(Lsn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn lag_counts_unreplayed_wal_and_what_a_live_primary_has_beyond_it() {
        let lag = measure_lag(&replica(1_000, 400), &[]);
        assert_eq!(
            (lag.received_not_replayed, lag.not_received, lag.total),
            (600, None, 600)
        );
        let lag = measure_lag(
            &replica(1_000, 400),
            &[probe(ProbeAnswer::Primary {
                current_lsn: Lsn(1_500),
            })],
        );
        assert_eq!(
            (lag.received_not_replayed, lag.not_received, lag.total),
            (600, Some(500), 1_100)
        );
        // A replica that never streamed (no receive position) lags by nothing it knows of.
        let mut archived = replica(0, 700);
        archived.receive_lsn = None;
        assert_eq!(measure_lag(&archived, &[]).total, 0);
    }

    #[test]
    fn a_server_that_is_not_in_recovery_is_refused_even_with_every_override() {
        let mut o = options();
        o.force = true;
        o.allow_data_loss = true;
        let mut primary = replica(0, 0);
        primary.in_recovery = false;
        let lag = measure_lag(&primary, &[]);
        assert_eq!(judge(&o, &primary, &[], &lag), Err(Refusal::NotAReplica));
        assert_eq!(Refusal::NotAReplica.exit_code(), 3);
    }

    #[test]
    fn a_live_primary_refuses_unless_forced() {
        let local = replica(100, 100);
        for answer in [
            ProbeAnswer::Primary {
                current_lsn: Lsn(100),
            },
            ProbeAnswer::Unknown("password authentication failed".into()),
        ] {
            let probes = [probe(answer)];
            let lag = measure_lag(&local, &probes);
            let refusal = judge(&options(), &local, &probes, &lag).unwrap_err();
            assert_eq!(refusal.exit_code(), 4);
            let mut forced = options();
            forced.force = true;
            let warnings = judge(&forced, &local, &probes, &lag).unwrap();
            assert!(warnings[0].contains("--force"), "{warnings:?}");
        }
    }

    #[test]
    fn unreachable_or_replica_old_primaries_do_not_block() {
        let local = replica(100, 100);
        let probes = [
            probe(ProbeAnswer::Unreachable("connection refused".into())),
            probe(ProbeAnswer::Replica),
        ];
        let lag = measure_lag(&local, &probes);
        assert_eq!(judge(&options(), &local, &probes, &lag), Ok(vec![]));
    }

    #[test]
    fn lag_beyond_the_bound_refuses_unless_data_loss_is_allowed() {
        let mut o = options();
        o.max_lag_bytes = 1_000;
        let local = replica(5_000, 1_000);
        let lag = measure_lag(&local, &[]);
        assert_eq!(
            judge(&o, &local, &[], &lag),
            Err(Refusal::LagTooHigh {
                lag: 4_000,
                max: 1_000
            })
        );
        let at_bound = replica(2_000, 1_000);
        assert!(judge(&o, &at_bound, &[], &measure_lag(&at_bound, &[])).is_ok());
        o.allow_data_loss = true;
        let warnings = judge(&o, &local, &[], &lag).unwrap();
        assert!(
            warnings.iter().any(|w| w.contains("--allow-data-loss")),
            "{warnings:?}"
        );
    }

    #[test]
    fn every_host_of_a_primary_url_is_probed_separately() {
        let configs = per_host_configs(
            "postgresql://dob:pw@10.0.1.10:5432,10.0.2.10:5433/dob?target_session_attrs=read-write",
        )
        .unwrap();
        let names: Vec<&str> = configs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["10.0.1.10:5432", "10.0.2.10:5433"]);
        assert_eq!(configs[1].1.get_user(), Some("dob"));
        assert_eq!(configs[1].1.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn the_upstream_comes_from_primary_conninfo_with_local_credentials() {
        let url = primary_from_conninfo(
            "host='10.0.1.10' port=5432 user='replicator' application_name='b' sslmode=require",
            "postgresql://postgres@127.0.0.1:5432/dob",
        );
        assert_eq!(
            url.as_deref(),
            Some("postgresql://postgres@10.0.1.10:5432/dob")
        );
    }

    #[test]
    fn exit_codes_are_distinct_per_outcome() {
        let codes = [
            Outcome::WouldPromote.exit_code(),
            Outcome::Refused(Refusal::NotAReplica).exit_code(),
            Outcome::Refused(Refusal::PrimaryStillUp { hosts: vec![] }).exit_code(),
            Outcome::Refused(Refusal::LagTooHigh { lag: 1, max: 0 }).exit_code(),
            Outcome::NotCompleted(String::new()).exit_code(),
        ];
        assert_eq!(codes, [0, 3, 4, 5, 6]);
    }

    #[test]
    fn the_metrics_file_is_written_whole() {
        let dir = std::env::temp_dir().join(format!("dob-promote-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("promote.prom");
        let report = Report {
            outcome: Outcome::Refused(Refusal::LagTooHigh { lag: 9, max: 1 }),
            local: None,
            probes: vec![],
            lag: Some(Lag {
                received_not_replayed: 9,
                not_received: None,
                total: 9,
            }),
            warnings: vec![],
            dry_run: false,
            duration: Duration::from_millis(1500),
            error: None,
        };
        write_metrics_file(&path, &report.metrics_text(1_700_000_000)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("dob_promote_success 0\n"), "{text}");
        assert!(text.contains("dob_promote_exit_code 5\n"), "{text}");
        assert!(text.contains("dob_promote_lag_bytes 9\n"), "{text}");
        assert!(
            text.contains("dob_promote_timestamp_seconds 1700000000\n"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(&dir).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
