//! `dob-backup`: one backup of the database into S3 (pg_dump streamed into a multipart
//! upload, a manifest written last), then retention. See docs/operations.md, "dob-backup".

use dob::backup::dump::BackupReport;
use dob::backup::textfile::JobMetrics;
use dob::cli::{self, Arg, Help, Parser, Stop};
use dob::config::BackupConfig;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

const HELP: Help = Help {
    name: "dob-backup",
    about: "stream a pg_dump of the database into S3, with a manifest",
    usage: "dob-backup [--json] [--metrics-file PATH] [--help] [--version]",
    flags: "\
--json               print a machine-readable report on stdout
--metrics-file PATH  write a Prometheus textfile (result, duration, bytes, times)
-h, --help           print this help
-V, --version        print the version",
    environment: "\
Read at start (on hosts: /etc/dob/dob.env):
DOB_DATABASE_URL            PostgreSQL URL of the database to dump (required)
DOB_DATABASE_PASSWORD_FILE  file whose first line is the password the URL lacks
DOB_DATABASE_CA_FILE        CA that signed the server's certificate (sslmode=verify-full)
DOB_S3_BUCKET               bucket (required);  DOB_S3_PREFIX  key prefix (default dob)
DOB_S3_REGION               region (default AWS_REGION, else us-east-1)
DOB_S3_ENDPOINT             non-AWS endpoint, path-style (e.g. http://127.0.0.1:9000)
DOB_S3_SSE                  AES256 | aws:kms | none (default none: bucket default)
DOB_S3_KMS_KEY_ID           KMS key for aws:kms (default: the account's aws/s3 key)
DOB_BACKUP_KEEP             complete backups to keep (default 7); 0: delete nothing, the
                            bucket's lifecycle retires backups (the hosts, under Object Lock)
DOB_BACKUP_PART_SIZE_MB     multipart part size and memory buffer (default 8, min 5)
DOB_PG_BIN                  directory of pg_dump (default: newest /usr/lib/postgresql/*/bin)
RUST_LOG                    log level (default info)
AWS credentials: the standard chain (environment, profile, EC2 instance profile).",
    exit_codes: "\
0  backup stored, verified and retention applied
1  the backup failed (nothing complete was left) or retention failed after it
2  bad command line
3  configuration error (a DOB_* variable)
4  the uploaded object failed verification (size/encryption)",
};

struct Args {
    json: bool,
    metrics_file: Option<PathBuf>,
}

fn parse_args(parser: &mut Parser) -> Result<Args, Stop> {
    let mut args = Args {
        json: false,
        metrics_file: None,
    };
    while let Some(arg) = parser.next_arg()? {
        match arg {
            Arg::Flag(flag) => match flag.as_str() {
                "--json" => args.json = true,
                "--metrics-file" => args.metrics_file = Some(PathBuf::from(parser.value()?)),
                _ => return Err(cli::unknown_flag(&flag)),
            },
            Arg::Positional(other) => return Err(cli::unexpected_argument(&other)),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match cli::parse(&HELP, parse_args) {
        Ok(args) => args,
        Err(code) => return code,
    };
    dob::logging::init();
    let started = Instant::now();
    let result = BackupConfig::from_env().and_then(|config| dob::backup::dump::run(&config));
    let duration = started.elapsed().as_secs_f64();
    let (code, bytes) = match &result {
        Ok(report) => {
            eprintln!("dob-backup: {}", summary(report));
            if args.json {
                let json = serde_json::json!({ "result": "success", "report": report });
                println!("{json}");
            }
            (0, report.manifest.size_bytes)
        }
        Err(err) => {
            eprintln!("dob-backup: backup FAILED: {}", err.chain());
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
            (code, 0)
        }
    };
    if let Some(path) = &args.metrics_file {
        let metrics = JobMetrics {
            job: "dob_backup",
            success: code == 0,
            finished_unix: unix_now(),
            duration_seconds: duration,
            bytes,
            extra: vec![],
        };
        if let Err(err) = metrics.write(path) {
            eprintln!("dob-backup: {}", err.chain());
            return ExitCode::from(if code == 0 { 1 } else { code });
        }
    }
    ExitCode::from(code)
}

fn summary(report: &BackupReport) -> String {
    let m = &report.manifest;
    let retention = &report.retention;
    format!(
        "backup {} complete: {:.1} MB in {} part(s), sha256 {}, {} table(s), {:.1} s ({:.1} MB/s); retention deleted {} backup(s), {} incomplete, aborted {} upload(s)",
        m.id,
        m.size_bytes as f64 / 1e6,
        m.parts,
        m.sha256,
        m.tables.len(),
        report.duration_seconds,
        report.throughput_mb_per_s,
        retention.deleted_backups.len(),
        retention.deleted_incomplete.len(),
        retention.aborted_uploads
    )
}

fn unix_now() -> f64 {
    jiff::Timestamp::now().as_millisecond() as f64 / 1000.0
}
