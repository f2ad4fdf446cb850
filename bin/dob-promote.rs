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
        }) => {
            dob::logging::init();
            return takeover(patroni_config, env_file, dry_run, json);
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

fn takeover(
    patroni_config: std::path::PathBuf,
    env_file: Option<std::path::PathBuf>,
    dry_run: bool,
    json: bool,
) -> ExitCode {
    let fail = |message: String, code: u8| {
        if json {
            println!(
                "{}",
                serde_json::json!({ "result": "failure", "error": message })
            );
        }
        eprintln!("dob-promote: takeover failed: {message}");
        ExitCode::from(code)
    };
    let env_file = env_file.or_else(|| {
        let default = std::path::PathBuf::from(HOST_ENV_FILE);
        default.exists().then_some(default)
    });
    if let Some(path) = &env_file {
        match dob::config::read_env_file(path) {
            // As systemd's EnvironmentFile= would, under what the environment already
            // sets; so the S3 clients' credential chain sees them too. Still one thread.
            Ok(pairs) => {
                for (key, value) in pairs {
                    if std::env::var_os(&key).is_none() {
                        std::env::set_var(key, value);
                    }
                }
            }
            Err(err) => return fail(err.chain(), 2),
        }
    }
    let lookup = |key: &str| std::env::var(key).ok();
    let fence = match dob::failover::fence::FenceConfig::from_lookup(&lookup) {
        Ok(Some(fence)) => fence,
        Ok(None) => {
            return fail(
                "DOB_FENCE_BUCKETS is not set (in the environment or the env file): a takeover must fence the old region"
                    .into(),
                2,
            )
        }
        Err(err) => return fail(err.chain(), 2),
    };
    let options = dob::failover::takeover::TakeoverOptions {
        patroni_config,
        fence,
        dry_run,
        json,
    };
    match dob::failover::takeover::run(&options) {
        Ok(report) => {
            for warning in &report.warnings {
                log::warn!("{warning}");
            }
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("the report serialises")
                );
            }
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
            ExitCode::SUCCESS
        }
        Err(err) => fail(err.chain(), 1),
    }
}
