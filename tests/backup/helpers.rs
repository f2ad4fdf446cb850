//! Harness for the backup/restore tests: one PostgreSQL server and one S3 protocol
//! server (moto_server from the project's .venv) per test binary, both on free
//! loopback ports and both dying with the test process; a bucket and a database of
//! its own for every test. The binaries under test run as real processes.
//!
//! `Proxy` sits between a binary and the S3 server when a test needs the network to
//! fail: it can cut every connection after N uploaded bytes (S3 down mid-upload) or
//! hold them (a stalled upload, so pg_dump blocks and can be killed mid-stream), and it
//! records the HTTP request heads it forwards.

use dob::config::S3Config;
use dob::s3::ObjectStore;
use dob::testing::LocalServer;
use s3::creds::Credentials;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

// Obviously fake: moto accepts any non-empty pair.
pub const ACCESS_KEY: &str = "local";
pub const SECRET_KEY: &str = "local";

pub fn shared_pg() -> &'static LocalServer {
    static PG: OnceLock<LocalServer> = OnceLock::new();
    PG.get_or_init(|| LocalServer::start_fresh().expect("starting the test PostgreSQL"))
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// `dob-promote ARGS --json` with only `env` (and the S3 server's placeholder keys) in its
/// environment: its exit code and the JSON report it printed.
pub fn promote_json(args: &[&str], env: &[(&str, &str)]) -> (i32, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_dob-promote"))
        .args(args)
        .args(["--json", "--env-file", "/dev/null"])
        .env_clear()
        .envs(env.iter().copied())
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "dob-promote {args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.code().unwrap_or(-1), report)
}

pub fn fresh_database() -> String {
    let name = unique("bk_");
    shared_pg()
        .create_database(&name)
        .expect("creating a test database");
    name
}

pub fn sql(db: &str) -> postgres::Client {
    shared_pg()
        .connect(db)
        .expect("connecting to a test database")
}

/// The databases on the shared server whose name starts with `prefix`.
pub fn databases_like(prefix: &str) -> Vec<String> {
    let mut client = sql("postgres");
    client
        .query(
            "SELECT datname::text FROM pg_database WHERE starts_with(datname, $1) ORDER BY 1",
            &[&prefix],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The S3 protocol server: moto_server on a free loopback port.
pub struct S3Server {
    pub port: u16,
    _child: Child,
}

pub fn shared_s3() -> &'static S3Server {
    static S3: OnceLock<S3Server> = OnceLock::new();
    S3.get_or_init(S3Server::start)
}

impl S3Server {
    fn start() -> S3Server {
        let venv = std::env::var_os("DOB_VENV")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv"));
        let moto = venv.join("bin/moto_server");
        assert!(
            moto.exists(),
            "{} is missing: run scripts/install-deps.sh",
            moto.display()
        );
        let port = dob::testing::free_port().unwrap();
        let mut cmd = Command::new(&moto);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = dob::testing::spawn_dying_with_process(cmd, libc::SIGKILL).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            port,
            _child: child,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// A bucket of its own, created on the shared S3 server.
pub struct TestBucket {
    pub name: String,
    pub store: ObjectStore,
}

impl TestBucket {
    pub fn new() -> TestBucket {
        TestBucket::create(false)
    }

    /// A bucket as Terraform makes the backup buckets: versioned, Object Lock on, every
    /// new version locked for a day (GOVERNANCE).
    pub fn with_object_lock() -> TestBucket {
        TestBucket::create(true)
    }

    fn create(object_lock: bool) -> TestBucket {
        let name = unique("bucket-").replace('_', "-");
        let endpoint = shared_s3().endpoint();
        let port = shared_s3().port;
        if object_lock {
            bare_request(
                port,
                &format!("PUT /{name}"),
                &[("x-amz-bucket-object-lock-enabled", "true")],
                "",
            );
            bare_request(
                port,
                &format!("PUT /{name}?object-lock"),
                &[],
                "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>1</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
            );
        } else {
            bare_request(port, &format!("PUT /{name}"), &[], "");
        }
        let config = S3Config {
            bucket: name.clone(),
            prefix: "dob".into(),
            region: "us-east-1".into(),
            endpoint: Some(endpoint),
            sse: None,
        };
        let store = ObjectStore::connect_with(&config, credentials()).unwrap();
        TestBucket { name, store }
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .store
            .list("dob/")
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.sort();
        keys
    }

    pub fn get(&self, key: &str) -> Vec<u8> {
        self.store.get_small(key).unwrap().expect("object exists")
    }

    pub fn put(&self, key: &str, data: &[u8]) {
        self.store
            .put_small(key, data, "application/octet-stream")
            .unwrap();
    }

    pub fn manifest(&self, id: &str) -> serde_json::Value {
        serde_json::from_slice(&self.get(&format!("dob/{id}/manifest.json"))).unwrap()
    }
}

/// Bucket set-up as bare requests (moto needs no signature for them; rust-s3's
/// CreateBucket sends a location constraint moto refuses for us-east-1).
pub fn bare_request(port: u16, request_line: &str, headers: &[(&str, &str)], body: &str) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut head = format!("{request_line} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    write!(
        stream,
        "{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "{request_line}: {answer}"
    );
}

fn credentials() -> Credentials {
    Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None).unwrap()
}

/// How to run the binaries against one database and one bucket.
pub struct Job {
    pub database: String,
    pub bucket: String,
    pub endpoint: String,
    pub env: Vec<(String, String)>,
}

pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

impl std::fmt::Debug for Finished {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Job {
    pub fn new(database: &str, bucket: &TestBucket) -> Job {
        Job {
            database: database.to_owned(),
            bucket: bucket.name.clone(),
            endpoint: shared_s3().endpoint(),
            env: vec![],
        }
    }

    pub fn url(&self) -> String {
        shared_pg().url(&self.database)
    }

    pub fn with_env(mut self, key: &str, value: &str) -> Job {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn via(mut self, endpoint: String) -> Job {
        self.endpoint = endpoint;
        self
    }

    pub fn command(&self, binary: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(binary);
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DOB_DATABASE_URL", self.url())
            .env("DOB_S3_BUCKET", &self.bucket)
            .env("DOB_S3_ENDPOINT", &self.endpoint)
            .env("DOB_S3_PREFIX", "dob")
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(bin) = std::env::var_os("DOB_PG_BIN") {
            cmd.env("DOB_PG_BIN", bin);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn backup(&self, args: &[&str]) -> Finished {
        finish(
            self.command(env!("CARGO_BIN_EXE_dob-backup"), args)
                .output()
                .unwrap(),
        )
    }

    pub fn restore(&self, args: &[&str]) -> Finished {
        finish(
            self.command(env!("CARGO_BIN_EXE_dob-restore"), args)
                .output()
                .unwrap(),
        )
    }

    /// A successful backup; returns its id.
    pub fn backup_ok(&self) -> String {
        let done = self.backup(&["--json"]);
        done.assert_ok();
        done.json()["report"]["manifest"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}

pub fn finish(output: Output) -> Finished {
    Finished {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A fingerprint of every row of every table named, for "unchanged" checks.
pub fn fingerprint(db: &str, tables: &[&str]) -> String {
    let mut client = sql(db);
    tables
        .iter()
        .map(|table| {
            let row = client
                .query_one(
                    &format!("SELECT count(*)::text || ':' || coalesce(md5(string_agg(t::text, ',' ORDER BY t::text)), '') FROM {table} t"),
                    &[],
                )
                .unwrap();
            format!("{table}={}", row.get::<_, String>(0))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `users` table as the API's migration creates it, with `n` users.
pub fn seed_users(db: &str, n: usize) {
    let mut client = sql(db);
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS users (
                 username text COLLATE \"C\" PRIMARY KEY,
                 date_of_birth date NOT NULL,
                 updated_at timestamptz NOT NULL DEFAULT now());
             INSERT INTO users (username, date_of_birth)
             SELECT 'user' || translate(g::text, '0123456789', 'abcdefghij'),
                    date '1950-01-01' + (g * 37 % 20000)
               FROM generate_series(1, {n}) g"
        ))
        .unwrap();
}

/// A database whose dump is over 20 MB (several parts), made once and copied.
pub fn big_database() -> String {
    static TEMPLATE: OnceLock<String> = OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let name = unique("bigtemplate_");
        shared_pg().create_database(&name).unwrap();
        seed_users(&name, 2000);
        // md5 text compresses to about half: ~57 MB of it dumps to ~28 MB.
        sql(&name)
            .batch_execute(
                "CREATE TABLE junk AS
                 SELECT g AS id, md5(g::text) || md5((g * 7)::text) || md5(random()::text) AS x
                   FROM generate_series(1, 600000) g",
            )
            .unwrap();
        name
    });
    let name = unique("bk_big_");
    // Copying needs the template free of sessions: one copy at a time, and a retry
    // while the seeding session is still exiting.
    static COPYING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = COPYING.lock().unwrap_or_else(|e| e.into_inner());
    let mut client = sql("postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")) {
            Ok(()) => return name,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("copying {template}: {e}"),
        }
    }
}

pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pids of `pid`'s direct children named `name`.
pub fn children_named(pid: u32, name: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == name {
                found.push(child);
            }
        }
    }
    found
}

// --- a TCP proxy that can fail on purpose ------------------------------------------

#[derive(Default)]
struct ProxyState {
    /// Client-to-server bytes forwarded so far.
    uploaded: AtomicU64,
    /// Past this many uploaded bytes: cut (down) or hold (paused).
    limit: AtomicU64,
    cut_at_limit: AtomicBool,
    down: AtomicBool,
    holding: AtomicBool,
    released: AtomicBool,
    streams: Mutex<Vec<TcpStream>>,
    captured: Mutex<Vec<Arc<Mutex<Vec<u8>>>>>,
    capture: AtomicBool,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<ProxyState>,
}

impl Proxy {
    pub fn to(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        state.limit.store(u64::MAX, Ordering::SeqCst);
        let accept_state = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if accept_state.down.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
                    continue;
                };
                accept_state
                    .streams
                    .lock()
                    .unwrap()
                    .extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let log = Arc::new(Mutex::new(Vec::new()));
                if accept_state.capture.load(Ordering::SeqCst) {
                    accept_state.captured.lock().unwrap().push(log.clone());
                }
                let up_state = accept_state.clone();
                let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || pump_up(client, server, up_state, log));
                std::thread::spawn(move || pump_down(s2, c2));
            }
        });
        Proxy { port, state }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// S3 goes down once `bytes` have been uploaded through the proxy.
    pub fn cut_after(&self, bytes: u64) {
        self.state.cut_at_limit.store(true, Ordering::SeqCst);
        self.state.limit.store(bytes, Ordering::SeqCst);
    }

    /// Uploads stall once `bytes` have gone through, until `release`.
    pub fn hold_after(&self, bytes: u64) {
        self.state.cut_at_limit.store(false, Ordering::SeqCst);
        self.state.limit.store(bytes, Ordering::SeqCst);
    }

    pub fn is_holding(&self) -> bool {
        self.state.holding.load(Ordering::SeqCst)
    }

    pub fn release(&self) {
        self.state.released.store(true, Ordering::SeqCst);
    }

    pub fn is_down(&self) -> bool {
        self.state.down.load(Ordering::SeqCst)
    }

    pub fn record_requests(&self) {
        self.state.capture.store(true, Ordering::SeqCst);
    }

    /// `(request line, headers)` of every request forwarded (recording on).
    pub fn requests(&self) -> Vec<(String, Vec<(String, String)>)> {
        let mut out = Vec::new();
        for log in self.state.captured.lock().unwrap().iter() {
            let bytes = log.lock().unwrap().clone();
            let mut pos = 0;
            while let Some(end) = find(&bytes[pos..], b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[pos..pos + end]).into_owned();
                let mut lines = head.split("\r\n");
                let line = lines.next().unwrap_or_default().to_owned();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                out.push((line, headers));
                pos += end + 4 + length;
                if pos >= bytes.len() {
                    break;
                }
            }
        }
        out
    }

    fn go_down(state: &ProxyState) {
        state.down.store(true, Ordering::SeqCst);
        for stream in state.streams.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.release();
        Proxy::go_down(&self.state);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn pump_up(
    mut from: TcpStream,
    mut to: TcpStream,
    state: Arc<ProxyState>,
    log: Arc<Mutex<Vec<u8>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let sent = state.uploaded.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if sent >= state.limit.load(Ordering::SeqCst) {
            if state.cut_at_limit.load(Ordering::SeqCst) {
                Proxy::go_down(&state);
                break;
            }
            state.holding.store(true, Ordering::SeqCst);
            while !state.released.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if state.down.load(Ordering::SeqCst) {
            break;
        }
        if state.capture.load(Ordering::SeqCst) {
            log.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

fn pump_down(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
