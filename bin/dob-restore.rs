//! `dob-restore`: list backups, restore one (into a fresh database, verified, then
//! swapped in), or run a restore drill. See docs/operations.md, "dob-restore", and
//! `dob::backup::restore_cli`.

use dob::backup::restore_cli::{self, Done};
use dob::cli;
use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    let args = match cli::parse(&restore_cli::HELP, restore_cli::parse_args) {
        Ok(args) => args,
        Err(code) => return code,
    };
    dob::logging::init();
    let started = Instant::now();
    let outcome = restore_cli::run(&args, jiff::Timestamp::now());
    let duration = started.elapsed().as_secs_f64();
    let mut code = match &outcome {
        Ok(done) => {
            eprintln!("dob-restore: {}", done.summary());
            if args.json {
                println!("{}", done.json());
            } else if let Done::List(entries) = done {
                print!("{}", restore_cli::list_table(entries));
            }
            0
        }
        Err(err) => {
            eprintln!("dob-restore: {} FAILED: {}", args.mode.noun(), err.chain());
            if args.json {
                println!("{}", restore_cli::failure_json(err));
            }
            restore_cli::exit_code(err)
        }
    };
    if let Some(path) = &args.metrics_file {
        let finished = jiff::Timestamp::now().as_millisecond() as f64 / 1000.0;
        if let Some(metrics) = restore_cli::job_metrics(args.mode, &outcome, finished, duration) {
            if let Err(err) = metrics.write(path) {
                eprintln!("dob-restore: {}", err.chain());
                code = code.max(1);
            }
        }
    }
    ExitCode::from(code)
}
