//! Hostile clients against the real `dob-api` binary, run with an open-files limit of
//! 512 (soft and hard, so the binary cannot raise it). Each test reproduces one attack
//! that took the tiny_http-based front down (issue 9) and checks that the process stays
//! up, `/healthz` answers in under 2 s during and after, and nothing is lost.
//!
//! `DOB_API_BIN` runs them against another build (bench/hostile.sh: the release one).

use crate::helpers::{fresh_database, send, send_raw, shared_pg, wait_until};
use dob::testing::{free_port, LocalServer};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

const FD_LIMIT: u64 = 512;
const HEALTHZ_BUDGET: Duration = Duration::from_secs(2);

/// One attack at a time: each measures its own process's latency and memory, and the
/// floods would otherwise compete for the same two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Api {
    child: Child,
    addr: SocketAddr,
    _turn: MutexGuard<'static, ()>,
}

impl Api {
    fn start(database_url: &str, env: &[(&str, &str)]) -> Api {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let bin = std::env::var("DOB_API_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_dob-api").to_owned());
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port().unwrap())
            .parse()
            .unwrap();
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("DOB_DATABASE_URL", database_url)
            .env("DOB_LISTEN", addr.to_string())
            .env("DOB_WORKERS", "4")
            .env("DOB_POOL_SIZE", "4")
            .env("DOB_DRAIN_SECONDS", "0")
            // The test server is plaintext on loopback.
            .env("DOB_ALLOW_INSECURE_DB", "1")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only async-signal-safe setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: FD_LIMIT,
                    rlim_max: FD_LIMIT,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
        let mut api = Api {
            child: cmd.spawn().expect("starting dob-api"),
            addr,
            _turn: turn,
        };
        wait_until(Duration::from_secs(20), "dob-api to become ready", || {
            api.assert_alive();
            TcpStream::connect(addr).is_ok()
                && send(addr, "GET", "/readyz", &[], None).status == 200
        });
        api
    }

    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("dob-api exited: {status}");
        }
    }

    /// `GET /healthz` on a new connection must answer 200 within the budget.
    fn assert_healthy(&mut self, when: &str) -> Duration {
        self.assert_alive();
        let started = Instant::now();
        let status = get_status(
            self.addr,
            "/healthz",
            HEALTHZ_BUDGET + Duration::from_secs(1),
        );
        let took = started.elapsed();
        assert_eq!(status, Some(200), "/healthz {when}: no 200 after {took:?}");
        assert!(took < HEALTHZ_BUDGET, "/healthz {when} took {took:?}");
        took
    }

    /// `(VmRSS, VmHWM)` in kB.
    fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    fn metric(&self, name: &str) -> u64 {
        let body = send(self.addr, "GET", "/metrics", &[], None).body;
        body.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn fresh_url() -> String {
    let pg = shared_pg();
    pg.url(&fresh_database(pg))
}

/// The status of `GET path` on a new connection, or `None` if none came in `within`.
fn get_status(addr: SocketAddr, path: &str, within: Duration) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, within).ok()?;
    stream.set_read_timeout(Some(within)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut reader = ResponseReader::default();
    reader.next(&mut stream).map(|r| r.0)
}

/// Reads responses one at a time off a kept-alive connection (Content-Length framing).
#[derive(Default)]
struct ResponseReader {
    buf: Vec<u8>,
}

impl ResponseReader {
    /// The next response's status and body, or `None` when the connection ends first.
    fn next(&mut self, stream: &mut TcpStream) -> Option<(u16, String)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                if self.buf.len() >= end + 4 + length {
                    let body =
                        String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]).into_owned();
                    self.buf.drain(..end + 4 + length);
                    return Some((status, body));
                }
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

fn put_request(user: &str, date: &str) -> String {
    let body = format!(r#"{{"dateOfBirth":"{date}"}}"#);
    format!(
        "PUT /hello/{user} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Runs `attack` on another thread while checking `/healthz` every 100 ms; returns the
/// slowest answer seen.
fn healthy_during(api: &mut Api, attack: impl FnOnce() + Send + 'static) -> Duration {
    let attacker = std::thread::spawn(attack);
    let mut slowest = Duration::ZERO;
    while !attacker.is_finished() {
        slowest = slowest.max(api.assert_healthy("during the attack"));
        std::thread::sleep(Duration::from_millis(100));
    }
    attacker.join().expect("the attack thread");
    slowest
}

#[test]
fn case_1_and_2_huge_declared_bodies_are_never_read_nor_allocated() {
    let mut api = Api::start(&fresh_url(), &[]);
    // Case 1: 1 TiB declared on a route that takes no body: answered, then closed.
    let response = send_raw(
        api.addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n",
    );
    assert_eq!(response.status, 200);
    api.assert_healthy("after 1 TiB declared");
    assert_eq!(response.header("Connection"), Some("close"));
    // Declared beyond the PUT limit: 413, and nothing read.
    let response = send_raw(
        api.addr,
        b"PUT /hello/Tera HTTP/1.1\r\nHost: x\r\nContent-Length: 1099511627776\r\n\r\n{}",
    );
    assert_eq!(response.status, 413);
    // Case 2: u64::MAX, many times over (more than there are threads).
    for _ in 0..100 {
        let response = send_raw(
            api.addr,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615\r\n\r\n",
        );
        assert_eq!(response.status, 200);
    }
    api.assert_healthy("after 100 huge declared bodies");
    assert_eq!(api.metric("dob_http_panics_total"), 0);
    let (rss, _) = api.memory_kb();
    assert!(rss < 64 * 1024, "RSS {rss} kB");
}

#[test]
fn case_3_running_out_of_descriptors_never_stops_the_listener() {
    dob::api::listener::raise_fd_limit();
    let mut api = Api::start(&fresh_url(), &[]);
    let addr = api.addr;
    // Now out of descriptors for real: lower the process's limit below what it holds.
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    // Let the server accept them all before its limit drops below what it holds.
    std::thread::sleep(Duration::from_millis(500));
    let low = libc::rlimit {
        rlim_cur: 128,
        rlim_max: FD_LIMIT,
    };
    // SAFETY: prlimit on our own child with a valid struct.
    assert_eq!(
        unsafe { libc::prlimit(api.pid(), libc::RLIMIT_NOFILE, &low, std::ptr::null_mut()) },
        0
    );
    let refused: Vec<TcpStream> = (0..50)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    drop(refused);
    let normal = libc::rlimit {
        rlim_cur: FD_LIMIT,
        rlim_max: FD_LIMIT,
    };
    // SAFETY: as above.
    assert_eq!(
        unsafe {
            libc::prlimit(
                api.pid(),
                libc::RLIMIT_NOFILE,
                &normal,
                std::ptr::null_mut(),
            )
        },
        0
    );
    wait_until(
        Duration::from_secs(5),
        "connections to be accepted again",
        || get_status(addr, "/healthz", Duration::from_secs(1)) == Some(200),
    );
    api.assert_healthy("after running out of descriptors");
    let max = api.metric("dob_http_connections_max");
    assert!(
        max < FD_LIMIT,
        "the cap ({max}) must fit the open-files limit"
    );

    // 10,000 connections that send nothing: far beyond the cap and the descriptors.
    let slowest = healthy_during(&mut api, move || {
        let started = Instant::now();
        let mut held = Vec::new();
        for _ in 0..10_000 {
            if started.elapsed() > Duration::from_secs(60) {
                break;
            }
            if let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
                held.push(stream);
            }
        }
        assert!(
            held.len() > 5_000,
            "only {} connections were made",
            held.len()
        );
    });
    eprintln!("10,000 idle connections: slowest /healthz {slowest:?}");
    api.assert_healthy("after 10,000 idle connections");
    let max = api.metric("dob_http_connections_max");
    assert!(
        max < FD_LIMIT,
        "the cap ({max}) must fit the open-files limit"
    );
    assert!(api.metric("dob_http_connections_evicted_total") > 0);

    assert!(
        api.metric("dob_http_accept_errors_total") > 0,
        "accept() never failed: the test did not test"
    );
}

#[test]
fn case_4_pipelined_requests_take_effect_in_the_order_sent() {
    let url = fresh_url();
    let api = Api::start(&url, &[]);
    let mut db = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut stored_v2 = 0;
    let mut get_after_put = 0;
    for i in 0..100 {
        let user = format!("Pipe{}", char::from(b'a' + (i % 26) as u8));
        let mut stream = TcpStream::connect(api.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = ResponseReader::default();
        // PUT v1, PUT v2, GET, in one write.
        let raw = format!(
            "{}{}GET /hello/{user} HTTP/1.1\r\nHost: x\r\n\r\n",
            put_request(&user, "1990-01-01"),
            put_request(&user, "1991-02-02"),
        );
        stream.write_all(raw.as_bytes()).unwrap();
        assert_eq!(reader.next(&mut stream).unwrap().0, 204);
        assert_eq!(reader.next(&mut stream).unwrap().0, 204);
        let (status, _) = reader.next(&mut stream).unwrap();
        assert_eq!(status, 200);
        let stored: String = db
            .query_one(
                "SELECT date_of_birth::text FROM users WHERE username = $1",
                &[&user],
            )
            .unwrap()
            .get(0);
        if stored == "1991-02-02" {
            stored_v2 += 1;
        }

        // A new user: PUT then GET pipelined; the GET must see the PUT.
        let fresh = format!(
            "Fresh{}x{}",
            char::from(b'a' + (i % 26) as u8),
            "y".repeat(i / 26 + 1)
        );
        let raw = format!(
            "{}GET /hello/{fresh} HTTP/1.1\r\nHost: x\r\n\r\n",
            put_request(&fresh, "1980-03-03")
        );
        stream.write_all(raw.as_bytes()).unwrap();
        assert_eq!(reader.next(&mut stream).unwrap().0, 204);
        if reader.next(&mut stream).unwrap().0 == 200 {
            get_after_put += 1;
        }
    }
    assert_eq!(stored_v2, 100, "pipelined PUT v1, PUT v2 stored v2");
    assert_eq!(get_after_put, 100, "pipelined PUT, GET answered 200");
}

#[test]
fn case_5_slow_bodies_hold_only_their_own_connections() {
    let mut api = Api::start(&fresh_url(), &[("DOB_CLIENT_TIMEOUT_MS", "4000")]);
    assert_eq!(
        send_raw(
            api.addr,
            put_request("Steady", "1970-01-01")
                .replace("HTTP/1.1\r\n", "HTTP/1.1\r\nConnection: close\r\n")
                .as_bytes()
        )
        .status,
        204
    );
    let addr = api.addr;
    // Sixteen times the ready threads, each declaring a large body and dripping it:
    // tiny_http drained such a body on a worker after answering, a byte per drip.
    let slowest = healthy_during(&mut api, move || {
        let mut drips: Vec<TcpStream> = (0..64)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                s.write_all(
                    b"PUT /hello/Drip HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n{",
                )
                .unwrap();
                s
            })
            .collect();
        for _ in 0..6 {
            std::thread::sleep(Duration::from_millis(500));
            for s in &mut drips {
                let _ = s.write_all(b" ");
            }
        }
        for mut s in drips {
            s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            assert!(
                answer.starts_with(b"HTTP/1.1 413"),
                "{}",
                String::from_utf8_lossy(&answer)
            );
        }
    });
    eprintln!("64 dripping bodies: slowest /healthz {slowest:?}");
    for path in ["/readyz", "/hello/Steady"] {
        let started = Instant::now();
        assert_eq!(
            get_status(api.addr, path, HEALTHZ_BUDGET),
            Some(200),
            "{path}"
        );
        assert!(started.elapsed() < HEALTHZ_BUDGET);
    }
    // The body deadline (4 s here) ends a drip however steadily it drips: 408.
    let mut drip = TcpStream::connect(api.addr).unwrap();
    drip.write_all(b"PUT /hello/Drip HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n{")
        .unwrap();
    drip.set_read_timeout(Some(Duration::from_millis(250)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(8) {
        let _ = drip.write_all(b" ");
        let mut chunk = [0u8; 512];
        match drip.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "cut off after {:?}",
        started.elapsed()
    );
    assert!(api.metric("dob_http_client_timeouts_total") >= 1);
}

#[test]
fn case_6_an_endless_header_flood_costs_no_memory() {
    let mut api = Api::start(&fresh_url(), &[]);
    let (rss_before, _) = api.memory_kb();
    let addr = api.addr;
    let sent = Arc::new(AtomicU64::new(0));
    let total = 300 * 1024 * 1024;
    let flood_sent = Arc::clone(&sent);
    healthy_during(&mut api, move || {
        let started = Instant::now();
        let floods: Vec<_> = (0..4)
            .map(|_| {
                let sent = Arc::clone(&flood_sent);
                std::thread::spawn(move || {
                    let line =
                        b"X-Flood: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"
                            .repeat(1024);
                    while sent.load(Ordering::Relaxed) < total
                        && started.elapsed() < Duration::from_secs(90)
                    {
                        let Ok(mut stream) = TcpStream::connect(addr) else {
                            continue;
                        };
                        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
                        if stream.write_all(b"GET /healthz HTTP/1.1\r\n").is_err() {
                            continue;
                        }
                        while let Ok(n) = stream.write(&line) {
                            sent.fetch_add(n as u64, Ordering::Relaxed);
                            if sent.load(Ordering::Relaxed) >= total {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for flood in floods {
            flood.join().unwrap();
        }
    });
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent >= total, "only {} MB sent", sent >> 20);
    let (_, peak) = api.memory_kb();
    let grew = peak.saturating_sub(rss_before);
    eprintln!(
        "{} MB of header lines: RSS {rss_before} kB before, peak {peak} kB",
        sent >> 20
    );
    assert!(grew < 64 * 1024, "RSS grew by {grew} kB");
    api.assert_healthy("after the flood");
}

#[test]
fn case_7_a_head_that_never_ends_is_cut_off_at_its_deadline() {
    let mut api = Api::start(&fresh_url(), &[("DOB_CLIENT_TIMEOUT_MS", "1000")]);
    let mut stream = TcpStream::connect(api.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    stream.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    // A header line every 100 ms: each read is quick, the head never ends.
    while started.elapsed() < Duration::from_secs(10) {
        if stream.write_all(b"X-Drip: 1\r\n").is_err() {
            break;
        }
        let mut chunk = [0u8; 512];
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(_) => {}
        }
    }
    let took = started.elapsed();
    assert!(
        answer.starts_with(b"HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(took < Duration::from_millis(2500), "cut off after {took:?}");

    // Many at once, beyond the cap: the server stays reachable.
    let addr = api.addr;
    healthy_during(&mut api, move || {
        let lorises: Vec<TcpStream> = (0..1000)
            .filter_map(|_| {
                let mut s = TcpStream::connect(addr).ok()?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nX-a: b\r\n").ok()?;
                Some(s)
            })
            .collect();
        std::thread::sleep(Duration::from_secs(2));
        drop(lorises);
    });
}

#[test]
fn case_8_a_database_outage_is_answered_in_milliseconds() {
    let mut pg = LocalServer::start_fresh().unwrap();
    pg.create_database("dob").unwrap();
    let api = Api::start(&pg.url("dob"), &[]);
    assert_eq!(
        send_raw(
            api.addr,
            put_request("Outage", "1990-01-01")
                .replace("Host: x", "Host: x\r\nConnection: close")
                .as_bytes()
        )
        .status,
        204
    );
    pg.stop().unwrap();
    // The first requests find it down (each within the 1 s pool timeout); then the
    // breaker answers for it.
    let started = Instant::now();
    let answered_503 = Arc::new(AtomicU64::new(0));
    let slow = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..20)
        .map(|_| {
            let (answered_503, slow) = (Arc::clone(&answered_503), Arc::clone(&slow));
            let addr = api.addr;
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let one = Instant::now();
                    if get_status(addr, "/hello/Outage", Duration::from_secs(5)) == Some(503) {
                        answered_503.fetch_add(1, Ordering::Relaxed);
                    }
                    if one.elapsed() > Duration::from_millis(100) {
                        slow.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    let took = started.elapsed();
    eprintln!(
        "database outage: 400 GETs from 20 clients answered in {took:?}, {} took over 100 ms",
        slow.load(Ordering::Relaxed)
    );
    assert_eq!(answered_503.load(Ordering::Relaxed), 400);
    // Before: 4 threads x 1 s pool timeout each: 400 requests took 100 s.
    assert!(took < Duration::from_secs(5), "400 requests took {took:?}");
    assert!(
        slow.load(Ordering::Relaxed) < 40,
        "{} of 400 took over 100 ms",
        slow.load(Ordering::Relaxed)
    );
    assert_eq!(api.metric("dob_db_breaker_open"), 1);
    // A 503 closes even a kept-alive connection, so a retry through a load balancer
    // (which pins a connection to one host) can reach another host.
    let response = send_raw(api.addr, b"GET /hello/Outage HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(response.status, 503);
    assert_eq!(response.header("Connection"), Some("close"));

    pg.start().unwrap();
    wait_until(Duration::from_secs(15), "GET to work again", || {
        get_status(api.addr, "/hello/Outage", Duration::from_secs(3)) == Some(200)
    });
    assert_eq!(api.metric("dob_db_breaker_open"), 0);
}

#[test]
fn case_8_versions_bad_bytes_and_oversized_heads_get_their_status() {
    let mut api = Api::start(&fresh_url(), &[]);
    let cases: [(Vec<u8>, u16); 6] = [
        (b"GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(), 505),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), 505),
        (
            "GET /hello/Jos\u{e9} HTTP/1.1\r\nHost: x\r\n\r\n"
                .as_bytes()
                .to_vec(),
            400,
        ),
        (
            b"GET /healthz HTTP/1.1\r\nX-Bad: \x01\r\n\r\n".to_vec(),
            400,
        ),
        (
            [
                b"GET /healthz HTTP/1.1\r\nX-Big: ".as_slice(),
                &[b'a'; 9000],
                b"\r\n\r\n",
            ]
            .concat(),
            431,
        ),
        (
            [
                b"GET /healthz HTTP/1.1\r\n".as_slice(),
                &b"X-Many: 1\r\n".repeat(65),
                b"\r\n",
            ]
            .concat(),
            431,
        ),
    ];
    for (raw, status) in cases {
        let response = send_raw(api.addr, &raw);
        assert_eq!(
            response.status,
            status,
            "{}",
            String::from_utf8_lossy(&raw[..40.min(raw.len())])
        );
        assert!(response.json()["error"].is_string());
    }
    api.assert_healthy("after malformed heads");
}
