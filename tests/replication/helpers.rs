//! Replication harness: a real primary and a real streaming replica made by
//! `scripts/make-replica.sh`, the real `dob-promote` binary, and a bounded load of
//! PUT/GET through the API (served in-process, as in `tests/api`).

use crate::api::{send, wait_until, TestApp};
use dob::testing::LocalServer;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A primary with database `dob` and one streaming replica of it.
pub struct Pair {
    pub primary: LocalServer,
    pub replica: LocalServer,
    pub replica_name: String,
}

fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Pair {
    /// Asynchronous streaming replication. The primary commits durably
    /// (`synchronous_commit=on`, as in production) so "acknowledged" means "in its WAL".
    pub fn start() -> Pair {
        let primary =
            LocalServer::start_fresh_with(&[("synchronous_commit", "on")]).expect("primary");
        primary.create_database("dob").expect("creating dob");
        let replica_name = unique_name("replica");
        let replica = LocalServer::replica_of(&primary, &replica_name).expect("replica");
        Pair {
            primary,
            replica,
            replica_name,
        }
    }

    /// Synchronous replication: a commit is acknowledged only once the replica has
    /// flushed it (`synchronous_standby_names` names the replica's application_name).
    pub fn start_synchronous() -> Pair {
        let replica_name = unique_name("sync");
        let primary = LocalServer::start_fresh_with(&[
            ("synchronous_commit", "on"),
            ("synchronous_standby_names", &replica_name),
        ])
        .expect("primary");
        // The base backup commits nothing, so it does not wait for the standby it makes.
        let replica = LocalServer::replica_of(&primary, &replica_name).expect("replica");
        let pair = Pair {
            primary,
            replica,
            replica_name,
        };
        let mut client = pair.primary.connect("postgres").unwrap();
        wait_until(
            Duration::from_secs(20),
            "the replica to become synchronous",
            || {
                client
                .query_opt(
                    "SELECT 1 FROM pg_stat_replication WHERE application_name = $1 AND sync_state = 'sync'",
                    &[&pair.replica_name],
                )
                .unwrap()
                .is_some()
            },
        );
        pair.primary.create_database("dob").expect("creating dob");
        pair
    }

    /// The API's URL: both hosts, the writable one chosen at connect time.
    pub fn api_url(&self) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/dob?target_session_attrs=read-write",
            self.primary.port(),
            self.replica.port()
        )
    }

    /// Waits until the replica has applied everything the primary has written so far.
    pub fn wait_caught_up(&self) {
        let target = current_lsn(&self.primary);
        wait_until(Duration::from_secs(20), "the replica to catch up", || {
            replay_lsn(&self.replica) >= target
        });
    }
}

pub fn lsn(text: &str) -> u64 {
    dob::failover::promote::Lsn::parse(text)
        .unwrap_or_else(|| panic!("not an LSN: {text}"))
        .0
}

pub fn current_lsn(server: &LocalServer) -> u64 {
    let mut client = server.connect("postgres").unwrap();
    lsn(&client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get::<_, String>(0))
}

pub fn replay_lsn(server: &LocalServer) -> u64 {
    let mut client = server.connect("postgres").unwrap();
    let text: Option<String> = client
        .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
        .unwrap()
        .get(0);
    text.map_or(0, |t| lsn(&t))
}

pub fn receive_lsn(server: &LocalServer) -> u64 {
    let mut client = server.connect("postgres").unwrap();
    let text: Option<String> = client
        .query_one("SELECT pg_last_wal_receive_lsn()::text", &[])
        .unwrap()
        .get(0);
    text.map_or(0, |t| lsn(&t))
}

pub fn in_recovery(server: &LocalServer) -> bool {
    server
        .connect("postgres")
        .unwrap()
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0)
}

/// What one dob-promote run did.
pub struct PromoteRun {
    pub code: i32,
    pub report: serde_json::Value,
    pub stderr: String,
    pub elapsed: Duration,
}

/// Runs the real `dob-promote --json` against `server` with extra arguments.
pub fn promote(server: &LocalServer, args: &[&str]) -> PromoteRun {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_dob-promote"))
        .arg("--database-url")
        .arg(server.url("postgres"))
        .arg("--json")
        .args(args)
        .env_remove("DOB_DATABASE_URL")
        .env("RUST_LOG", "warn")
        .output()
        .expect("running dob-promote");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("dob-promote printed no JSON ({e}): {stdout}\n{stderr}"));
    PromoteRun {
        code: output.status.code().unwrap_or(-1),
        report,
        stderr,
        elapsed,
    }
}

/// A username made only of letters (the API's rule), unique per writer and sequence.
pub fn username(writer: usize, seq: usize) -> String {
    fn letters(mut n: usize, out: &mut String) {
        loop {
            out.push((b'a' + (n % 26) as u8) as char);
            n /= 26;
            if n == 0 {
                break;
            }
        }
    }
    let mut name = String::from("W");
    letters(writer, &mut name);
    name.push('N');
    letters(seq, &mut name);
    name
}

/// One finished request of the load.
#[derive(Debug, Clone)]
pub struct Sample {
    pub put: bool,
    pub user: String,
    pub status: u16,
    pub started_at: Instant,
    pub done_at: Instant,
    pub took: Duration,
}

/// Writers doing PUT then GET of a new user each round, until stopped or a hard
/// deadline (so the load is bounded in time and count).
pub struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

pub const MAX_ROUNDS_PER_WRITER: usize = 5_000;
pub const LOAD_DEADLINE: Duration = Duration::from_secs(60);

impl Load {
    pub fn start(app: &TestApp, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let threads = (0..writers)
            .map(|writer| {
                let (stop, samples, addr) = (Arc::clone(&stop), Arc::clone(&samples), app.addr);
                std::thread::spawn(move || {
                    for seq in 0..MAX_ROUNDS_PER_WRITER {
                        if stop.load(Ordering::Relaxed) || started.elapsed() > LOAD_DEADLINE {
                            return;
                        }
                        let user = username(writer, seq);
                        let path = format!("/hello/{user}");
                        let body = br#"{"dateOfBirth":"1990-05-17"}"#;
                        let put_started = Instant::now();
                        let put = send(
                            addr,
                            "PUT",
                            &path,
                            &[("Content-Type", "application/json")],
                            Some(body),
                        );
                        let put_sample = Sample {
                            put: true,
                            user: user.clone(),
                            status: put.status,
                            started_at: put_started,
                            done_at: Instant::now(),
                            took: put_started.elapsed(),
                        };
                        let t = Instant::now();
                        let get = send(addr, "GET", &path, &[], None);
                        let get_sample = Sample {
                            put: false,
                            user,
                            status: get.status,
                            started_at: t,
                            done_at: Instant::now(),
                            took: t.elapsed(),
                        };
                        let failed = put.status != 204;
                        samples.lock().unwrap().extend([put_sample, get_sample]);
                        if failed {
                            // 503 during the gap: back off a little, like a client would.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            samples,
            threads,
        }
    }

    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap().clone()
    }

    /// Waits until some PUT sent after `since` got 204 (or the timeout), and returns
    /// when it was answered.
    pub fn first_put_ok_after(&self, since: Instant, timeout: Duration) -> Option<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let found = self
                .samples
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.put && s.status == 204 && s.started_at > since)
                .map(|s| s.done_at)
                .min();
            if found.is_some() || Instant::now() > deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            thread.join().expect("a load thread panicked");
        }
        self.samples()
    }
}

/// Users present in the `users` table of `server`'s database `dob`.
pub fn stored_users(server: &LocalServer) -> std::collections::HashSet<String> {
    let mut client = server.connect("dob").unwrap();
    client
        .query("SELECT username FROM users", &[])
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// Every request answered with an expected status, none slow: the gap is 503s, fast.
pub fn assert_no_500_and_no_hang(samples: &[Sample]) {
    for s in samples {
        // A GET may find nobody (404) when its PUT got 503.
        let allowed: &[u16] = if s.put { &[204, 503] } else { &[200, 404, 503] };
        assert!(allowed.contains(&s.status), "unexpected answer {s:?}");
        assert!(s.took < Duration::from_secs(10), "request hung: {s:?}");
    }
}

/// A GET through the API server at `app`, on a fresh connection.
pub fn get(app: &TestApp, path: &str) -> crate::api::HttpResponse {
    send(app.addr, "GET", path, &[], None)
}
