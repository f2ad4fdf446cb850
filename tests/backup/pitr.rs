//! Point-in-time recovery through the real pgBackRest: WAL archived to and fetched from
//! the S3 test server, a physical backup, and `dob-restore --to-time`/`--to-lsn` with
//! each of its refusals. pgBackRest speaks S3 over TLS only, so the S3 server (moto) is
//! reached through HAProxy terminating TLS with a certificate of a test CA.

use crate::helpers::{bare_request, finish, shared_s3, unique, Finished};
use dob::db::pgbin::{as_postgres_user, give_to_postgres_user};
use dob::testing::{free_port, LocalServer, TestCerts};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const RESTORE: &str = env!("CARGO_BIN_EXE_dob-restore");

/// HAProxy in front of the shared moto server: TLS for `localhost` on `port`.
struct TlsS3 {
    port: u16,
    ca: PathBuf,
    _haproxy: Child,
}

fn tls_s3() -> &'static TlsS3 {
    static S3: OnceLock<TlsS3> = OnceLock::new();
    S3.get_or_init(TlsS3::start)
}

fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl TlsS3 {
    fn start() -> TlsS3 {
        let dir = std::env::temp_dir().join(unique("dob-pitr-s3-"));
        std::fs::create_dir_all(&dir).unwrap();
        let certs = TestCerts::make_for(&dir, "DNS:localhost").unwrap();
        let mut bundle = std::fs::read(&certs.server_cert).unwrap();
        bundle.extend(std::fs::read(&certs.server_key).unwrap());
        std::fs::write(dir.join("s3.bundle"), bundle).unwrap();
        let port = free_port().unwrap();
        let config = format!(
            "defaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
             frontend s3\n  bind 127.0.0.1:{port} ssl crt {bundle}\n  default_backend moto\n\
             backend moto\n  server moto 127.0.0.1:{moto}\n",
            bundle = dir.join("s3.bundle").display(),
            moto = shared_s3().port
        );
        std::fs::write(dir.join("haproxy.cfg"), config).unwrap();
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db")
            .arg("-f")
            .arg(dir.join("haproxy.cfg"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = dob::testing::spawn_dying_with_process(cmd, libc::SIGKILL)
            .expect("starting haproxy (scripts/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "haproxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        // The postgres user (pgBackRest runs as it) reads the CA.
        let ca = certs.ca_file.clone();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        std::fs::set_permissions(&ca, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
        TlsS3 {
            port,
            ca,
            _haproxy: child,
        }
    }
}

/// A cluster archiving its WAL with pgBackRest into a bucket of its own, with one full
/// backup taken, and a database `dob` with the API's `users` table.
struct Archived {
    pg: LocalServer,
    conf: PathBuf,
}

impl Archived {
    fn new() -> Archived {
        let s3 = tls_s3();
        let bucket = unique("pitr-").replace('_', "-");
        bare_request(shared_s3().port, &format!("PUT /{bucket}"), &[], "");
        let pg = LocalServer::start_fresh().unwrap();
        // The postgres user's: pgBackRest's files, the socket, the scratch cluster.
        let root = pg.root().join("pgbackrest");
        std::fs::create_dir_all(&root).unwrap();
        give_to_postgres_user(&root).unwrap();
        let conf = root.join("pgbackrest.conf");
        for dir in ["log", "lock", "spool"] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            give_to_postgres_user(&root.join(dir)).unwrap();
        }
        std::fs::write(
            &conf,
            format!(
                "[global]\nrepo1-type=s3\nrepo1-path=/pgbackrest\nrepo1-s3-bucket={bucket}\n\
                 repo1-s3-endpoint=localhost\nrepo1-storage-port={port}\nrepo1-s3-uri-style=path\n\
                 repo1-s3-region=us-east-1\nrepo1-s3-key={key}\nrepo1-s3-key-secret={secret}\n\
                 repo1-storage-ca-file={ca}\nrepo1-retention-full=2\nstart-fast=y\n\
                 log-path={root}/log\nlock-path={root}/lock\nspool-path={root}/spool\n\
                 log-level-file=off\n\n[dob]\npg1-path={data}\npg1-socket-path={root}\n",
                port = s3.port,
                key = crate::helpers::ACCESS_KEY,
                secret = crate::helpers::SECRET_KEY,
                ca = s3.ca.display(),
                root = root.display(),
                data = pg.data_dir().display(),
            ),
        )
        .unwrap();
        give_to_postgres_user(&conf).unwrap();
        let mut pg = pg;
        pg.stop().unwrap();
        let archive = format!(
            "pgbackrest --config={} --stanza=dob archive-push %p",
            conf.display()
        );
        let socket = root.display().to_string();
        pg.start_with(&[
            ("archive_mode", "on"),
            ("archive_command", &archive),
            ("unix_socket_directories", &socket),
        ])
        .unwrap();
        let archived = Archived { pg, conf };
        archived.conf_port();
        archived.pgbackrest(&["stanza-create"]);
        archived.pgbackrest(&["check"]);
        archived.pgbackrest(&["--type=full", "backup"]);
        // pgBackRest records the backup's end in whole seconds; a target must be later.
        std::thread::sleep(Duration::from_millis(1100));
        archived.pg.create_database("dob").unwrap();
        archived.exec(include_str!("../../sql/0001_create_users.sql"));
        archived
    }

    /// pg1-port follows the port the server got.
    fn conf_port(&self) {
        let text = std::fs::read_to_string(&self.conf).unwrap();
        let text = format!("{}pg1-port={}\n", text, self.pg.port());
        std::fs::write(&self.conf, text).unwrap();
    }

    fn pgbackrest(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("pgbackrest");
        cmd.arg(format!("--config={}", self.conf.display()))
            .arg("--stanza=dob")
            .arg("--log-level-console=warn")
            .args(args);
        as_postgres_user(&mut cmd).unwrap();
        run_ok(&mut cmd, &format!("pgbackrest {}", args.join(" ")))
    }

    fn exec(&self, sql: &str) {
        self.pg.connect("dob").unwrap().batch_execute(sql).unwrap();
    }

    fn value(&self, sql: &str) -> String {
        self.pg
            .connect("dob")
            .unwrap()
            .query_one(sql, &[])
            .unwrap()
            .get(0)
    }

    fn users(&self, db: &str) -> Vec<String> {
        self.pg
            .connect(db)
            .unwrap()
            .query("SELECT username FROM users ORDER BY username", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    fn databases(&self) -> Vec<String> {
        self.pg
            .connect("postgres")
            .unwrap()
            .query(
                "SELECT datname::text FROM pg_database WHERE datname LIKE 'dob%' ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect()
    }

    /// Every WAL segment written so far is in the repository.
    fn archive_now(&self) {
        self.pgbackrest(&["check"]);
    }

    fn scratch_dir(&self) -> PathBuf {
        self.pg.root().join("pgbackrest/scratch")
    }

    fn restore(&self, args: &[&str]) -> Finished {
        let port = free_port().unwrap().to_string();
        let scratch = self.scratch_dir();
        let output = Command::new(RESTORE)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DOB_DATABASE_URL", self.pg.url("dob"))
            .env("DOB_PGBACKREST_CONFIG", &self.conf)
            .env("RUST_LOG", "info")
            .args(args)
            .arg("--scratch-dir")
            .arg(&scratch)
            .args([
                "--scratch-port",
                &port,
                "--recovery-timeout",
                "120",
                "--json",
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        finish(output)
    }
}

fn seed(archived: &Archived, names: &[&str]) {
    let values: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, n)| format!("('{n}', '1990-01-{:02}')", i % 28 + 1))
        .collect();
    archived.exec(&format!(
        "INSERT INTO users (username, date_of_birth) VALUES {}",
        values.join(",")
    ));
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "{prefix}{}",
                char::from(b'a' + (i % 26) as u8)
                    .to_string()
                    .repeat(i / 26 + 1)
            )
        })
        .collect()
}

#[test]
fn wal_goes_to_s3_through_pgbackrest_and_comes_back() {
    let archived = Archived::new();
    archived.exec("INSERT INTO users (username, date_of_birth) VALUES ('Ada', '1815-12-10')");
    let segment = archived.value("SELECT pg_walfile_name(pg_current_wal_lsn())::text");
    archived.archive_now();
    let info: serde_json::Value =
        serde_json::from_str(&archived.pgbackrest(&["info", "--output=json"])).unwrap();
    let newest = info[0]["archive"][0]["max"].as_str().unwrap().to_owned();
    assert!(newest >= segment, "{newest} < {segment}");
    // archive-get, as a replica's or a recovery's restore_command runs it.
    let fetched = archived.pg.root().join("pgbackrest/fetched");
    let mut cmd = Command::new("pgbackrest");
    cmd.arg(format!("--config={}", archived.conf.display()))
        .args([
            "--stanza=dob",
            "--log-level-console=warn",
            "archive-get",
            &segment,
        ])
        .arg(&fetched);
    as_postgres_user(&mut cmd).unwrap();
    run_ok(&mut cmd, "pgbackrest archive-get");
    assert_eq!(std::fs::metadata(&fetched).unwrap().len(), 16 * 1024 * 1024);
    // A segment that was never written is reported missing, not invented.
    let mut cmd = Command::new("pgbackrest");
    cmd.arg(format!("--config={}", archived.conf.display()))
        .args([
            "--stanza=dob",
            "--log-level-console=warn",
            "archive-get",
            "0000000100000000000000FF",
        ])
        .arg(archived.pg.root().join("pgbackrest/missing"));
    as_postgres_user(&mut cmd).unwrap();
    let status = cmd.stdin(Stdio::null()).status().unwrap();
    assert_eq!(status.code(), Some(1), "archive-get of a missing segment");
}

#[test]
fn to_time_brings_back_what_a_bad_delete_removed_and_keeps_the_later_database() {
    let archived = Archived::new();
    let before: Vec<String> = names("Before", 40);
    seed(
        &archived,
        &before.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let target = archived.value(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    std::thread::sleep(Duration::from_millis(300));
    archived.exec("DELETE FROM users");
    archived.exec("INSERT INTO users (username, date_of_birth) VALUES ('After', '2000-02-02')");
    archived.archive_now();

    let run = archived.restore(&["--to-time", &target]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json()["pitr"].clone();
    assert_eq!(report["rows_checked"], 40, "{report}");
    assert!(report["timeline"].as_u64().unwrap() >= 2, "{report}");
    assert!(
        report["stopped_at"]
            .as_str()
            .unwrap_or_default()
            .contains("recovery stopping before"),
        "{report}"
    );
    let mut expected = before.clone();
    expected.sort();
    assert_eq!(
        archived.users("dob"),
        expected,
        "the deleted rows are back, the later one is not"
    );
    let databases = archived.databases();
    let kept = databases
        .iter()
        .find(|d| d.starts_with("dob_before_"))
        .unwrap_or_else(|| panic!("no kept database in {databases:?}"));
    assert_eq!(
        archived.users(kept),
        ["After"],
        "writes after the target are kept aside"
    );
    assert!(
        !archived.scratch_dir().exists(),
        "the scratch cluster is removed"
    );
}

#[test]
fn recoveries_the_repository_cannot_make_are_refused_and_change_nothing() {
    let archived = Archived::new();
    seed(&archived, &["Ada", "Grace"]);
    archived.archive_now();
    // Nothing committed after this point reaches the archive.
    std::thread::sleep(Duration::from_millis(300));
    let unreached = jiff::Timestamp::now().to_string();
    let future = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(1)).to_string();
    for (target, expected) in [
        (future.as_str(), "in the future"),
        ("2000-01-01T00:00:00Z", "before the oldest backup"),
        (unreached.as_str(), "does not reach"),
    ] {
        let run = archived.restore(&["--to-time", target]);
        assert_eq!(run.code, 4, "{target}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{target}: {}", run.stderr);
        assert_eq!(run.json()["result"], "failure");
        assert_eq!(archived.users("dob"), ["Ada", "Grace"], "{target}");
        assert_eq!(archived.databases(), ["dob"], "{target}");
        assert!(
            !archived.scratch_dir().exists(),
            "{target}: scratch left behind"
        );
    }
    let run = archived.restore(&["--to-lsn", "0/10"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr.contains("before the oldest backup"),
        "{}",
        run.stderr
    );
    let run = archived.restore(&["--to-time", "tomorrow"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
}

#[test]
fn to_lsn_with_keep_running_leaves_the_recovered_server_up_and_the_live_one_alone() {
    let archived = Archived::new();
    seed(&archived, &["Ada"]);
    // The insert position: the test cluster commits asynchronously, so the write
    // position may still be behind the commit.
    let lsn = archived.value("SELECT pg_current_wal_insert_lsn()::text");
    archived.exec("INSERT INTO users (username, date_of_birth) VALUES ('Later', '2001-01-01')");
    archived.archive_now();
    let run = archived.restore(&["--to-lsn", &lsn, "--keep-running"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json()["pitr"].clone();
    assert_eq!(report["scratch_running"], true);
    assert_eq!(report["database"], serde_json::Value::Null);
    let port = report["scratch_port"].as_u64().unwrap();
    let scratch = archived.scratch_dir();
    let url = format!(
        "host={} port={port} user=postgres dbname=dob",
        scratch.display()
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let users: Vec<String> = client
        .query("SELECT username FROM users ORDER BY 1", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(users, ["Ada"]);
    assert_eq!(
        archived.users("dob"),
        ["Ada", "Later"],
        "the live database is untouched"
    );
    stop_scratch(&scratch, &archived.pg);
}

fn stop_scratch(dir: &Path, pg: &LocalServer) {
    let mut cmd = Command::new(pg.bin().tool("pg_ctl"));
    cmd.args(["stop", "-m", "immediate", "-w", "-D"]).arg(dir);
    as_postgres_user(&mut cmd).unwrap();
    let _ = cmd.stdin(Stdio::null()).stdout(Stdio::null()).status();
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_pitr_drill_recovers_the_marker_before_its_time_and_not_the_one_after() {
    let archived = Archived::new();
    seed(&archived, &["Ada"]);
    let run = archived.restore(&["--pitr-drill"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json()["pitr_drill"].clone();
    assert!(report["rto_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["rpo_seconds"].as_f64().is_some(), "{report}");
    assert!(
        run.stderr.contains("the marker before it back"),
        "{}",
        run.stderr
    );
    assert!(
        !archived.scratch_dir().exists(),
        "the scratch cluster is removed"
    );
    // Nothing of the application's changed; the markers live in `postgres`.
    assert_eq!(archived.users("dob"), ["Ada"]);
    assert_eq!(archived.databases(), ["dob"]);
    // A second run the same night works on its own markers.
    let again = archived.restore(&["--pitr-drill"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
}
