//! `dob-promote`: promotes the local streaming replica to primary after checking that
//! it is safe (see `dob::promote` and README "dob-promote").

use dob::promote::{self, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match promote::parse_args(&args, |key| std::env::var(key).ok()) {
        Ok(Command::Help) => {
            println!("{}", promote::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("dob-promote {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Promote(options)) => options,
        Ok(Command::Switchover(options)) => {
            dob::logging::init();
            return switchover(&options);
        }
        Err(usage) => {
            eprintln!("dob-promote: {usage}; see --help");
            return ExitCode::from(2);
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

fn switchover(options: &dob::switchover::SwitchoverOptions) -> ExitCode {
    let outcome = dob::switchover::run(options);
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
