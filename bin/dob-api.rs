//! `dob-api`: the birthday hello API. Configuration is the environment (see docs/configuration.md);
//! SIGTERM or SIGINT drains and exits 0.

use dob::api::server::Server;
use dob::cli::{self, Help};
use dob::config::ApiConfig;
use dob::signals::TerminationSignals;
use std::process::ExitCode;

const HELP: Help = Help {
    name: "dob-api",
    about: "birthday hello API on PostgreSQL",
    usage: "dob-api [--help] [--version]",
    flags: "\
-h, --help     print this help
-V, --version  print the version",
    environment: "\
Read at start (on hosts: /etc/dob/dob.env); see docs/configuration.md for every one.
DOB_DATABASE_URL            PostgreSQL URL (required); may list several hosts with
                            target_session_attrs=read-write to follow a promotion
DOB_DATABASE_PASSWORD_FILE  file whose first line is the password the URL lacks
DOB_DATABASE_CA_FILE        CA that signed the server's certificate (sslmode=verify-full)
DOB_ALLOW_INSECURE_DB       1: accept a URL whose TLS does not verify the server
DOB_LISTEN                  listen address (default 127.0.0.1:8080); a socket passed by
                            systemd (LISTEN_FDS) takes precedence
DOB_ADMIN_LISTEN            separate address for /metrics, /readyz, /healthz
DOB_WORKERS                 worker threads, 1 to 1024 (default 8 per CPU, 8 to 64)
DOB_POOL_SIZE               pooled connections, 1 to 1024 (default 4 per CPU, 4 to 32)
DOB_TIMEZONE                IANA zone that defines \"today\" (default UTC)
DOB_DRAIN_SECONDS           after SIGTERM, seconds readiness reports 503 while requests
                            are still served (default 5; 0: no drain period)
DOB_FENCE_BUCKETS           cross-region write fence: buckets holding the promotion epoch
DOB_DR_RECEIPT_SLOT         the DR region's replication slot on this cluster: a PUT is
                            answered 204 only once it has flushed the commit (503 after
                            DOB_DR_RECEIPT_TIMEOUT_MS, default 3000); with the fence,
                            detaches after DOB_DR_DETACH_AFTER_MS (default 12000)
RUST_LOG                    log level (default info)",
    exit_codes: "\
0  clean shutdown after SIGTERM or SIGINT
1  start-up or runtime error (socket, database, TLS)
2  bad command line
3  configuration error (a DOB_* variable)",
};

fn main() -> ExitCode {
    if let Err(code) = cli::parse(&HELP, cli::no_arguments) {
        return code;
    }
    dob::logging::init();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Once, on stderr (the journal under systemd); not also through the logger.
            eprintln!("dob-api: {}", err.chain());
            ExitCode::from(if err.is_config() { 3 } else { 1 })
        }
    }
}

fn run() -> dob::Result<()> {
    // Before any thread exists, so every thread inherits the mask.
    let signals = TerminationSignals::block()?;
    let config = ApiConfig::from_env()?;
    dob::api::listener::raise_fd_limit();
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
