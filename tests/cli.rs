//! The four binaries' command lines, run as processes: one `--help` layout, one wording
//! for mistakes, exit 2 for a bad command line. Nothing here needs a database.

use std::process::{Command, Output};

const BINARIES: [(&str, &str); 4] = [
    ("dob-api", env!("CARGO_BIN_EXE_dob-api")),
    ("dob-backup", env!("CARGO_BIN_EXE_dob-backup")),
    ("dob-restore", env!("CARGO_BIN_EXE_dob-restore")),
    ("dob-promote", env!("CARGO_BIN_EXE_dob-promote")),
];

fn run(path: &str, args: &[&str]) -> Output {
    // A clean environment: a bad command line must be refused before any is read.
    Command::new(path).args(args).env_clear().output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn every_help_has_the_same_sections_in_the_same_order() {
    for (name, path) in BINARIES {
        for flag in ["--help", "-h"] {
            let out = run(path, &[flag]);
            assert_eq!(out.status.code(), Some(0), "{name} {flag}");
            let help = text(&out.stdout);
            assert!(help.starts_with(&format!("{name}: ")), "{name}:\n{help}");
            let mut at = 0;
            for section in [
                "\nUSAGE:\n",
                "\nFLAGS:\n",
                "\nENVIRONMENT:\n",
                "\nEXIT CODES:\n",
            ] {
                let found = help[at..]
                    .find(section)
                    .unwrap_or_else(|| panic!("{name}: {section:?} missing or out of order"));
                at += found + section.len();
            }
            for must in ["--help", "--version", "RUST_LOG", "DOB_DATABASE_CA_FILE"] {
                assert!(help.contains(must), "{name}'s help lacks {must}");
            }
            let exit_codes = &help[help.find("\nEXIT CODES:\n").unwrap()..];
            for code in ["  0  ", "  1  ", "  2  bad command line"] {
                assert!(
                    exit_codes.contains(code),
                    "{name}: no {code:?} in\n{exit_codes}"
                );
            }
            assert!(out.stderr.is_empty(), "{name}: {}", text(&out.stderr));
        }
    }
}

#[test]
fn every_binary_says_its_version() {
    for (name, path) in BINARIES {
        let out = run(path, &["--version"]);
        assert_eq!(out.status.code(), Some(0), "{name}");
        assert_eq!(
            text(&out.stdout).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
}

#[test]
fn a_bad_command_line_is_one_line_the_same_wording_and_exit_2() {
    for (name, path) in BINARIES {
        let out = run(path, &["--no-such-flag"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert_eq!(
            text(&out.stderr),
            format!("{name}: unknown flag \"--no-such-flag\"; see --help\n")
        );
        assert!(out.stdout.is_empty(), "{name}");
    }
    for (name, path) in BINARIES.into_iter().filter(|(name, _)| *name != "dob-api") {
        let out = run(path, &["--json=yes"]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert_eq!(
            text(&out.stderr),
            format!("{name}: --json takes no value; see --help\n")
        );
    }
}

#[test]
fn dob_api_refuses_arguments_and_reports_a_configuration_error_once() {
    let (_, api) = BINARIES[0];
    let out = run(api, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        text(&out.stderr),
        "dob-api: unexpected argument \"serve\"; see --help\n"
    );

    let out = Command::new(api)
        .env_clear()
        .env("DOB_DATABASE_URL", "postgresql://dob@127.0.0.1:1/dob")
        .env("DOB_ALLOW_INSECURE_DB", "1")
        .env("DOB_WORKERS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "a configuration error exits 3");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.matches("DOB_WORKERS").count(), 1, "{stderr}");
    assert!(stderr.contains("from 1 to 1024"), "{stderr}");
}
