//! Logging set-up shared by the binaries: `RUST_LOG` (default `info`) to stderr, one
//! plain line per record.
//!
//! The format is fixed and cheap on purpose: `dob-api` logs every request, and
//! env_logger's default format (styles, padding, ANSI stripping when stderr is not a
//! terminal) cost more CPU than answering a GET did. Under systemd the journal adds
//! its own timestamp; the one here keeps lines readable when run by hand.

use std::io::Write;

pub fn init() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format(|buf, record| {
            let timestamp = buf.timestamp_seconds();
            writeln!(
                buf,
                "{timestamp} {} {}: {}",
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();
}
