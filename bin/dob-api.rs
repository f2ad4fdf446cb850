//! `dob-api`: the birthday hello API. Configuration is the environment (see README);
//! SIGTERM or SIGINT drains and exits 0.

use dob::config::ApiConfig;
use dob::server::Server;
use dob::signals::TerminationSignals;
use std::process::ExitCode;

const HELP: &str = "\
dob-api: birthday hello API on PostgreSQL

USAGE: dob-api [--help] [--version]

Configured by environment variables (on hosts: /etc/dob/dob.env):
  DOB_DATABASE_URL   PostgreSQL URL (required); may list several hosts with
                     target_session_attrs=read-write to follow a promotion
  DOB_LISTEN         listen address (default 127.0.0.1:8080); a socket passed by
                     systemd (LISTEN_FDS) takes precedence
  DOB_WORKERS        worker threads;  DOB_POOL_SIZE  pooled connections
  DOB_TIMEZONE       IANA zone that defines \"today\" (default UTC)
  DOB_DRAIN_SECONDS  after SIGTERM, seconds readiness reports 503 before exit (default 5)
  RUST_LOG           log level (default info)
See README.md for every variable.

Exit status: 0 after a clean shutdown, 1 on a configuration or start-up error.";

fn main() -> ExitCode {
    if let Some(arg) = std::env::args().nth(1) {
        return match arg.as_str() {
            "-h" | "--help" => {
                println!("{HELP}");
                ExitCode::SUCCESS
            }
            "-V" | "--version" => {
                println!("dob-api {}", env!("CARGO_PKG_VERSION"));
                ExitCode::SUCCESS
            }
            other => {
                eprintln!("dob-api: unexpected argument {other:?}; see --help");
                ExitCode::from(2)
            }
        };
    }
    dob::logging::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            log::error!("{}", err.chain());
            eprintln!("dob-api: {}", err.chain());
            ExitCode::FAILURE
        }
    }
}

fn run() -> dob::Result<()> {
    // Before any thread exists, so every thread inherits the mask.
    let signals = TerminationSignals::block()?;
    let config = ApiConfig::from_env()?;
    dob::listener::raise_fd_limit();
    let server = Server::build(&config)?;
    let shutdown = server.shutdown_handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let signal = signals.wait();
            log::info!("{signal} received");
            shutdown.trigger();
        })
        .map_err(|e| dob::Error::io("starting the signal thread", e))?;
    log::info!("today is defined by time zone {}", config.timezone_name);
    server.run()
}
