//! `dob-promote`: promotes the local streaming replica to primary after checking that
//! it is safe (see `dob::failover::promote`, and `dob::failover::promote_cli` for its
//! command line).

use dob::cli;
use dob::failover::promote;
use dob::failover::promote_cli::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let command = cli::parse(&promote_cli::HELP, |parser| {
        promote_cli::parse_args(parser, |key| std::env::var(key).ok())
    });
    let options = match command {
        Err(code) => return code,
        Ok(Command::Promote(options)) => options,
        Ok(Command::Switchover(options)) => {
            dob::logging::init();
            return switchover(&options);
        }
        Ok(Command::Takeover {
            patroni_config,
            env_file,
            dry_run,
            json,
            accept_data_loss,
            old_region_unfenced,
        }) => {
            dob::logging::init();
            return takeover(
                patroni_config,
                env_file,
                dry_run,
                json,
                (accept_data_loss, old_region_unfenced),
            );
        }
        Ok(Command::LiftIsolation {
            env_file,
            dry_run,
            json,
        }) => {
            dob::logging::init();
            return lift_isolation(env_file, dry_run, json);
        }
        Ok(Command::Follow {
            patroni_config,
            env_file,
            dry_run,
            json,
        }) => {
            dob::logging::init();
            return follow(patroni_config, env_file, dry_run, json);
        }
        Ok(Command::FenceInit { env_file, json }) => {
            dob::logging::init();
            return fence_init(env_file, json);
        }
    };
    dob::logging::init();
    let report = promote::run(&options);
    for warning in &report.warnings {
        log::warn!("{warning}");
    }
    let mut code = report.outcome.exit_code();
    if let Some(path) = &options.metrics_file {
        if let Err(err) =
            promote::write_metrics_file(path, &report.metrics_text(promote::unix_now()))
        {
            eprintln!("dob-promote: {}", err.chain());
            if code == 0 {
                code = 1;
            }
        }
    }
    if options.json {
        println!("{}", report.to_json());
    }
    eprintln!("dob-promote: {}", report.summary());
    ExitCode::from(code)
}

fn switchover(options: &dob::failover::switchover::SwitchoverOptions) -> ExitCode {
    let outcome = dob::failover::switchover::run(options);
    if options.json {
        let report = match &outcome {
            Ok(plan) => serde_json::json!({
                "result": if options.dry_run { "dry-run" } else { "switched" },
                "cluster": plan.cluster, "from": plan.leader, "to": plan.candidate,
                "previous_timeline": plan.timeline,
            }),
            Err(err) => serde_json::json!({ "result": "failure", "error": err.chain() }),
        };
        println!("{report}");
    }
    match outcome {
        Ok(plan) => {
            let verb = if options.dry_run {
                "would switch over"
            } else {
                "switched over"
            };
            eprintln!(
                "dob-promote: {verb} cluster {} from {} to {} (was timeline {})",
                plan.cluster, plan.leader, plan.candidate, plan.timeline
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("dob-promote: switchover failed: {}", err.chain());
            ExitCode::from(1)
        }
    }
}

/// The default environment file, as the units read it.
const HOST_ENV_FILE: &str = "/etc/dob/dob.env";

/// Prints a failure of `--takeover` or `--fence-init` and returns its exit code.
/// A report's warnings to the log, and the report itself to stdout with --json.
fn log_and_print(report: &impl serde::Serialize, warnings: &[String], json: bool) {
    for warning in warnings {
        log::warn!("{warning}");
    }
    if json {
        println!(
            "{}",
            serde_json::to_string(report).expect("the report serialises")
        );
    }
}

fn fail(json: bool, what: &str, message: String, code: u8) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({ "result": "failure", "error": message })
        );
    }
    eprintln!("dob-promote: {what} failed: {message}");
    ExitCode::from(code)
}

/// The fence configuration, from the environment and the env file (as systemd's
/// EnvironmentFile= would give it, under what the environment already sets; so the S3
/// clients' credential chain sees them too). Still one thread when this runs.
fn fence_config(
    env_file: Option<std::path::PathBuf>,
) -> Result<dob::failover::fence::FenceConfig, String> {
    load_env_file(env_file)?;
    let lookup = |key: &str| std::env::var(key).ok();
    match dob::failover::fence::FenceConfig::from_lookup(&lookup) {
        Ok(Some(fence)) => Ok(fence),
        Ok(None) => Err(
            "DOB_FENCE_BUCKETS is not set (in the environment or the env file): the fence needs its buckets"
                .into(),
        ),
        Err(err) => Err(err.chain()),
    }
}

/// Sets the variables of the env file (default /etc/dob/dob.env when it exists) that
/// the environment does not set.
fn load_env_file(env_file: Option<std::path::PathBuf>) -> Result<(), String> {
    let env_file = env_file.or_else(|| {
        let default = std::path::PathBuf::from(HOST_ENV_FILE);
        default.exists().then_some(default)
    });
    if let Some(path) = &env_file {
        let pairs = dob::config::read_env_file(path).map_err(|e| e.chain())?;
        for (key, value) in pairs {
            if std::env::var_os(&key).is_none() {
                std::env::set_var(key, value);
            }
        }
    }
    Ok(())
}

fn isolation_config() -> Result<Option<dob::failover::isolation::IsolationConfig>, String> {
    dob::failover::isolation::IsolationConfig::from_lookup(&|key: &str| std::env::var(key).ok())
        .map_err(|e| e.chain())
}

fn lift_isolation(env_file: Option<std::path::PathBuf>, dry_run: bool, json: bool) -> ExitCode {
    let what = "lift-isolation";
    let config = match load_env_file(env_file).and_then(|()| isolation_config()) {
        Ok(Some(config)) => config,
        Ok(None) => {
            return fail(
                json,
                what,
                "DOB_PEER_REGION and DOB_PEER_FENCE_GROUP are not set: no region to lift the isolation of".into(),
                2,
            )
        }
        Err(message) => return fail(json, what, message, 2),
    };
    let lifted = config
        .connect()
        .and_then(|ec2| dob::failover::isolation::lift(&ec2, &config, dry_run));
    match lifted {
        Ok(report) => {
            log_and_print(&report, &[], json);
            eprintln!(
                "dob-promote: {} the isolation of {} in {}: {} subnet(s) back on their network ACL, {} host(s) started",
                if dry_run { "would lift" } else { "lifted" },
                config.group,
                config.region,
                report.subnets.len(),
                report.instances_started.len()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(json, what, err.chain(), 9),
    }
}

fn fence_init(env_file: Option<std::path::PathBuf>, json: bool) -> ExitCode {
    let what = "fence-init";
    let fence = match fence_config(env_file) {
        Ok(fence) => fence,
        Err(message) => return fail(json, what, message, 2),
    };
    let stores = match dob::failover::fence::FenceStores::connect(&fence) {
        Ok(stores) => stores,
        Err(err) => return fail(json, what, err.chain(), 1),
    };
    let outcomes = dob::failover::fence::initialize(
        &stores.all(),
        &fence.home_region,
        &jiff::Timestamp::now().to_string(),
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned()),
    );
    for outcome in &outcomes {
        match &outcome.error {
            None => log::info!("{} {}: {}", outcome.bucket, outcome.key, outcome.result),
            Some(why) => log::warn!("{} {}: {why}", outcome.bucket, outcome.key),
        }
    }
    let failed = outcomes.iter().filter(|o| o.result == "failed").count();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "result": if failed == 0 { "initialized" } else { "failure" },
                "buckets": outcomes,
            })
        );
    }
    eprintln!(
        "dob-promote: fence records: {} created, {} kept, {failed} failed (home region {})",
        outcomes.iter().filter(|o| o.result == "created").count(),
        outcomes.iter().filter(|o| o.result == "kept").count(),
        fence.home_region
    );
    ExitCode::from(if failed == 0 { 0 } else { 1 })
}

fn takeover(
    patroni_config: std::path::PathBuf,
    env_file: Option<std::path::PathBuf>,
    dry_run: bool,
    json: bool,
    (accept_data_loss, old_region_unfenced): (bool, bool),
) -> ExitCode {
    let what = "takeover";
    let fence = match fence_config(env_file) {
        Ok(fence) => fence,
        Err(message) => return fail(json, what, message, 2),
    };
    let isolation = match isolation_config() {
        Ok(isolation) => isolation,
        Err(message) => return fail(json, what, message, 2),
    };
    let peer_slot = match peer_slot() {
        Ok(slot) => slot,
        Err(message) => return fail(json, what, message, 2),
    };
    let options = dob::failover::takeover::TakeoverOptions {
        patroni_config,
        fence,
        dry_run,
        json,
        accept_data_loss,
        peer_slot,
        socket_dir: dob::failover::local_pg::socket_dir(&|key: &str| std::env::var(key).ok()),
        repository: dob::failover::first_backup::Repository::from_lookup(
            &|key: &str| std::env::var(key).ok(),
            &|path: &std::path::Path| path.exists(),
        ),
        backup_timeout: dob::failover::first_backup::BACKUP_TIMEOUT,
        isolation,
        old_region_unfenced,
    };
    match dob::failover::takeover::run(&options) {
        Ok(report) => {
            log_and_print(&report, &report.warnings, json);
            eprintln!(
                "dob-promote: {} {}: epoch {} recorded in {}; {} leads on timeline {} (was {})",
                if dry_run {
                    "would take over for"
                } else {
                    "took over for"
                },
                report.region,
                report.epoch,
                if report.fenced_buckets.is_empty() {
                    "no bucket (already recorded)".to_owned()
                } else {
                    report.fenced_buckets.join(", ")
                },
                report.leader,
                report.timeline,
                report.previous_timeline
            );
            if let Some(old) = &report.old_region {
                eprintln!(
                    "dob-promote: old region {}: {} ({} subnet(s) moved to {}, {} already there; {} host(s) stopped, {} already stopped){}",
                    old.region.as_deref().unwrap_or("?"),
                    old.state,
                    old.subnets.len(),
                    old.isolation_acl.as_deref().unwrap_or("its isolation ACL"),
                    old.already_isolated_subnets.len(),
                    old.instances_stopped.len(),
                    old.already_stopped.len(),
                    old.error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                );
            }
            if let Some(backup) = &report.base_backup {
                eprintln!(
                    "dob-promote: first full backup {} (stopped {}) in {}: point-in-time recovery reaches any later time",
                    backup.label, backup.stopped, backup.config
                );
            }
            match &report.base_backup_error {
                None => ExitCode::SUCCESS,
                Some(why) => {
                    eprintln!(
                        "dob-promote: writes are on, but the first full backup failed: no point-in-time recovery after the takeover until one succeeds: {why}"
                    );
                    ExitCode::from(8)
                }
            }
        }
        Err(err) => {
            let source = std::error::Error::source(&err);
            // What the operator decides on goes out whole, as JSON too.
            if let Some(stopped) =
                source.and_then(|s| s.downcast_ref::<dob::failover::takeover::NotIsolated>())
            {
                let old_region = serde_json::json!(stopped.old_region);
                return refuse(json, &err, stopped.epoch, ("old_region", old_region), 9);
            }
            let Some(refused) =
                source.and_then(|s| s.downcast_ref::<dob::failover::takeover::Refused>())
            else {
                return fail(json, what, err.chain(), 1);
            };
            let window = serde_json::json!(refused.window);
            refuse(json, &err, refused.epoch, ("loss_window", window), 7)
        }
    }
}

/// A takeover that stopped before promoting, for a person to decide on: `detail` is
/// what they decide on.
fn refuse(
    json: bool,
    err: &dob::Error,
    epoch: u64,
    detail: (&str, serde_json::Value),
    code: u8,
) -> ExitCode {
    if json {
        let mut report = serde_json::json!({
            "result": "refused",
            "error": err.chain(),
            "epoch": epoch,
        });
        report[detail.0] = detail.1;
        println!("{report}");
    }
    eprintln!("dob-promote: takeover refused: {}", err.chain());
    ExitCode::from(code)
}

/// `DOB_DR_SLOT` (default `dob_dr`): the slot a writing region keeps for the other.
fn peer_slot() -> Result<String, String> {
    let slot = std::env::var("DOB_DR_SLOT")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "dob_dr".to_owned());
    if dob::failover::follow::valid_slot(&slot) {
        Ok(slot)
    } else {
        Err(format!(
            "DOB_DR_SLOT={slot:?} is not a slot name (lower-case letters, digits, _)"
        ))
    }
}

fn follow(
    patroni_config: std::path::PathBuf,
    env_file: Option<std::path::PathBuf>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    let what = "follow";
    let fence = match fence_config(env_file) {
        Ok(fence) => fence,
        Err(message) => return fail(json, what, message, 2),
    };
    let slot = match peer_slot() {
        Ok(slot) => slot,
        Err(message) => return fail(json, what, message, 2),
    };
    let peer_hosts: Vec<String> = std::env::var("DOB_PEER_HOSTS")
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    if peer_hosts.is_empty() {
        return fail(
            json,
            what,
            "DOB_PEER_HOSTS is not set (in the environment or the env file): the other region's database hosts".into(),
            2,
        );
    }
    if let Some(bad) = peer_hosts
        .iter()
        .find(|h| !dob::failover::follow::valid_host(h))
    {
        return fail(
            json,
            what,
            format!("DOB_PEER_HOSTS lists {bad:?}, which is not a host name or address"),
            2,
        );
    }
    let options = dob::failover::follow::FollowOptions {
        patroni_config,
        fence,
        peer_hosts,
        slot,
        socket_dir: dob::failover::local_pg::socket_dir(&|key: &str| std::env::var(key).ok()),
        dry_run,
        json,
    };
    match dob::failover::follow::run(&options) {
        Ok(report) => {
            log_and_print(&report, &report.warnings, json);
            eprintln!(
                "dob-promote: {} {} (epoch {}): {} is the standby leader of this region",
                match report.result {
                    "dry-run" => "would follow",
                    "already-following" => "already follows",
                    _ => "follows",
                },
                report.writer_region,
                report.epoch,
                report.leader
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(json, what, err.chain(), 1),
    }
}
