//! Test harness: one PostgreSQL server per test binary (own port and directory), one
//! fresh database per test, and the API served on 127.0.0.1:0. Requests go over real
//! TCP with a minimal HTTP/1.1 client, so tests control every byte on the wire.

use dob::api::server::{Server, ShutdownHandle};
use dob::config::ApiConfig;
use dob::testing::LocalServer;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The PostgreSQL server shared by tests that do not stop or reconfigure it.
pub fn shared_pg() -> &'static LocalServer {
    static PG: OnceLock<LocalServer> = OnceLock::new();
    PG.get_or_init(|| LocalServer::start_fresh().expect("starting the test PostgreSQL"))
}

/// A database of its own for one test.
pub fn fresh_database(pg: &LocalServer) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "test_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    pg.create_database(&name).expect("creating a test database");
    name
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub database_url: String,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<dob::Result<()>>>,
}

impl TestApp {
    /// The API on its own database in the shared server, ready to serve.
    pub fn spawn() -> TestApp {
        let pg = shared_pg();
        let url = pg.url(&fresh_database(pg));
        TestApp::spawn_with(&url, &[])
    }

    /// The API against `database_url`, with extra environment settings. Waits for
    /// readiness only when the database is expected to be up.
    pub fn spawn_with(database_url: &str, env: &[(&str, &str)]) -> TestApp {
        let app = TestApp::spawn_unready(database_url, env);
        app.wait_ready();
        app
    }

    pub fn spawn_unready(database_url: &str, env: &[(&str, &str)]) -> TestApp {
        let mut vars: Vec<(String, String)> = vec![
            ("DOB_DATABASE_URL".into(), database_url.into()),
            ("DOB_LISTEN".into(), "127.0.0.1:0".into()),
            ("DOB_WORKERS".into(), "4".into()),
            ("DOB_POOL_SIZE".into(), "4".into()),
            ("DOB_DRAIN_SECONDS".into(), "0".into()),
            // The test servers are on loopback; the TLS tests say 0.
            ("DOB_ALLOW_INSECURE_DB".into(), "1".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let config = ApiConfig::from_lookup(|key| {
            vars.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
        .expect("test configuration");
        let server = Server::build(&config).expect("building the server");
        let addr = server.local_addr();
        let shutdown = server.shutdown_handle();
        let thread = std::thread::spawn(move || server.run());
        TestApp {
            addr,
            database_url: database_url.to_owned(),
            shutdown,
            thread: Some(thread),
        }
    }

    pub fn wait_ready(&self) {
        wait_until(Duration::from_secs(20), "the API to become ready", || {
            self.get("/readyz").status == 200
        });
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        send(self.addr, "GET", path, &[], None)
    }

    pub fn put_json(&self, path: &str, body: &str) -> HttpResponse {
        send(
            self.addr,
            "PUT",
            path,
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
    }

    pub fn put_dob(&self, username: &str, date: &str) -> HttpResponse {
        put_dob_at(self.addr, username, date)
    }

    pub fn sql(&self) -> postgres::Client {
        postgres::Client::connect(&self.database_url, postgres::NoTls)
            .expect("connecting to the test database")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }

    /// Asserts an error answer: this status, a JSON `{"error": ...}` body.
    pub fn assert_error(&self, status: u16) -> String {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(
            self.header("Content-Type"),
            Some("application/json"),
            "{self:?}"
        );
        let error = self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.body))
            .to_owned();
        assert!(!error.is_empty());
        error
    }
}

/// One request on a fresh connection; `Connection: close`, so the body ends at EOF.
pub fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> HttpResponse {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut raw = head.into_bytes();
    raw.extend_from_slice(body.unwrap_or_default());
    send_raw(addr, &raw)
}

/// `PUT /hello/<username>` with `{"dateOfBirth": date}` as JSON, to any server.
pub fn put_dob_at(addr: SocketAddr, username: &str, date: &str) -> HttpResponse {
    let body = format!(r#"{{"dateOfBirth":"{date}"}}"#);
    send(
        addr,
        "PUT",
        &format!("/hello/{username}"),
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
}

pub fn send_raw(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    parse_response(&send_raw_bytes(addr, raw))
}

/// Sends `raw` and returns every byte the server answers until it closes.
pub fn send_raw_bytes(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).expect("connecting to the API");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(raw).expect("sending the request");
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("reading the response");
    answer
}

pub fn read_response(stream: &mut TcpStream) -> HttpResponse {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("reading the response");
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("incomplete response: {text:?}"));
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

pub fn wait_until(timeout: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Today in UTC, as the server computes it by default.
pub fn today_utc() -> jiff::civil::Date {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}
