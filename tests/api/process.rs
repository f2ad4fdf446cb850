//! The real `dob-api` binary: signals, socket activation, logs.

use crate::helpers::{fresh_database, put_dob_at, send, shared_pg, wait_until, HttpResponse};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dob-api");

fn api_command(database_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("DOB_DATABASE_URL", database_url)
        .env("DOB_WORKERS", "4")
        .env("DOB_POOL_SIZE", "4")
        // The test server is plaintext on loopback.
        .env("DOB_ALLOW_INSECURE_DB", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

fn wait_ready(addr: SocketAddr, child: &mut Child) {
    wait_until(Duration::from_secs(20), "dob-api to become ready", || {
        assert!(child.try_wait().unwrap().is_none(), "dob-api exited early");
        TcpStream::connect(addr).is_ok() && send(addr, "GET", "/readyz", &[], None).status == 200
    });
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("dob-api did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    text
}

fn sigterm(child: &Child) {
    // SAFETY: signalling our own, not yet reaped, child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
}

#[test]
fn sigterm_turns_readiness_503_finishes_in_flight_requests_then_exits_0() {
    let pg = shared_pg();
    let url = pg.url(&fresh_database(pg));
    let port = dob::testing::free_port().unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut child = api_command(&url)
        .env("DOB_LISTEN", addr.to_string())
        .env("DOB_DRAIN_SECONDS", "2")
        .spawn()
        .unwrap();
    wait_ready(addr, &mut child);

    // An in-flight request: headers sent, body still to come.
    let body = br#"{"dateOfBirth":"1977-07-17"}"#;
    let mut in_flight = TcpStream::connect(addr).unwrap();
    write!(
        in_flight,
        "PUT /hello/Sam HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    sigterm(&child);
    wait_until(Duration::from_secs(2), "readiness to turn 503", || {
        send(addr, "GET", "/readyz", &[], None).status == 503
    });
    assert_eq!(
        send(addr, "GET", "/healthz", &[], None).status,
        200,
        "still serving while draining"
    );

    in_flight.write_all(body).unwrap();
    let mut raw = Vec::new();
    in_flight.read_to_end(&mut raw).unwrap();
    let response = crate::helpers::parse_response(&raw);
    assert_eq!(response.status, 204, "{response:?}");

    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let logs = stderr_of(&mut child);
    assert!(
        logs.contains("PUT /hello/<username> 204"),
        "no request log line in:\n{logs}"
    );
    assert!(
        !logs.contains("1977-07-17") && !logs.contains("Sam"),
        "the request body or the username leaked into the info-level logs:\n{logs}"
    );
}

#[test]
fn with_an_admin_port_the_public_port_serves_only_the_api_and_the_admin_port_only_health() {
    let pg = shared_pg();
    let url = pg.url(&fresh_database(pg));
    let public: SocketAddr = format!("127.0.0.1:{}", dob::testing::free_port().unwrap())
        .parse()
        .unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", dob::testing::free_port().unwrap())
        .parse()
        .unwrap();
    let mut child = api_command(&url)
        .env("DOB_LISTEN", public.to_string())
        .env("DOB_ADMIN_LISTEN", admin.to_string())
        .env("DOB_DRAIN_SECONDS", "1")
        .spawn()
        .unwrap();
    wait_ready(admin, &mut child);

    assert_eq!(put_dob_at(public, "Ada", "1990-12-10").status, 204);
    assert_eq!(send(public, "GET", "/hello/Ada", &[], None).status, 200);
    for path in ["/metrics", "/healthz", "/readyz"] {
        let on_public = send(public, "GET", path, &[], None);
        assert_eq!(on_public.status, 404, "{path} on the public port");
        assert!(
            !on_public.body.contains("metrics"),
            "the public port names the admin endpoints: {}",
            on_public.body
        );
        assert_eq!(send(admin, "GET", path, &[], None).status, 200, "{path}");
    }
    assert_eq!(send(admin, "GET", "/hello/Ada", &[], None).status, 404);
    let metrics = send(admin, "GET", "/metrics", &[], None).body;
    assert!(
        metrics.contains(r#"route="PUT /hello",status="204"} 1"#),
        "{metrics}"
    );

    // Draining shows on the admin port, where the load balancer looks.
    sigterm(&child);
    wait_until(
        Duration::from_secs(2),
        "admin readiness to turn 503",
        || send(admin, "GET", "/readyz", &[], None).status == 503,
    );
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let logs = stderr_of(&mut child);
    assert!(
        logs.contains(&format!(
            "admin endpoints (/metrics, /healthz, /readyz) on http://{admin}"
        )),
        "{logs}"
    );
}

#[test]
fn a_socket_passed_by_systemd_is_used_instead_of_binding() {
    let pg = shared_pg();
    let url = pg.url(&fresh_database(pg));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // DOB_LISTEN names an address that is already taken: binding it would fail.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let fd = listener.as_raw_fd();

    let mut child = spawn_with_socket(
        &url,
        fd,
        &[("DOB_LISTEN", &taken.local_addr().unwrap().to_string())],
        Stdio::piped(),
    );
    wait_ready(addr, &mut child);
    drop(listener);

    let put = put_dob_at(addr, "Tess", "1966-06-16");
    assert_eq!(put.status, 204);
    let get: HttpResponse = send(addr, "GET", "/hello/Tess", &[], None);
    assert_eq!(get.status, 200);

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    let logs = stderr_of(&mut child);
    assert!(logs.contains("socket from systemd"), "{logs}");
}

/// Starts dob-api as systemd socket activation would: the listening socket `fd` as fd 3,
/// `LISTEN_FDS=1` and `LISTEN_PID` naming dob-api (`exec` keeps the shell's pid).
fn spawn_with_socket(
    database_url: &str,
    fd: std::os::fd::RawFd,
    env: &[(&str, &str)],
    stderr: Stdio,
) -> Child {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!("LISTEN_PID=$$ LISTEN_FDS=1 exec {BIN}"));
    let base = api_command(database_url);
    cmd.envs(base.get_envs().filter_map(|(k, v)| Some((k, v?))))
        .env("DOB_DRAIN_SECONDS", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    // SAFETY: dup2 and fcntl are async-signal-safe. dup2 gives a new fd 3 without
    // close-on-exec; when the listener already is fd 3, dup2 is a no-op and the flag
    // must be cleared by hand.
    unsafe {
        cmd.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn().unwrap()
}

#[test]
fn a_restart_on_a_socket_held_by_systemd_loses_no_request() {
    let pg = shared_pg();
    let url = pg.url(&fresh_database(pg));
    // The test plays systemd: it owns the socket across both processes.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let fd = listener.as_raw_fd();
    // Logs go to files: thousands of request lines would fill a pipe nobody reads.
    let log_path =
        |n: u32| std::env::temp_dir().join(format!("dob-restart-{}-{n}.log", std::process::id()));
    let log_file = |n: u32| Stdio::from(std::fs::File::create(log_path(n)).unwrap());
    let mut first = spawn_with_socket(&url, fd, &[], log_file(1));
    wait_ready(addr, &mut first);
    let put = put_dob_at(addr, "Vera", "1970-01-01");
    assert_eq!(put.status, 204);

    // A bounded stream of requests, one connection each, across the restart.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = std::sync::Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut answered, mut failures) = (0u32, Vec::new());
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(std::sync::atomic::Ordering::Relaxed)
                && answered < 5_000
                && Instant::now() < deadline
            {
                let mut raw = Vec::new();
                let outcome = TcpStream::connect(addr).and_then(|mut stream| {
                    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
                    stream.write_all(
                        b"GET /hello/Vera HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    )?;
                    stream.read_to_end(&mut raw)
                });
                match outcome {
                    Ok(_) if raw.starts_with(b"HTTP/1.1 200") => answered += 1,
                    Ok(_) => failures
                        .push(String::from_utf8_lossy(&raw[..raw.len().min(120)]).into_owned()),
                    Err(err) => failures.push(err.to_string()),
                }
            }
            (answered, failures)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    sigterm(&first);
    assert!(wait_exit(&mut first, Duration::from_secs(10)).success());
    let mut second = spawn_with_socket(&url, fd, &[], log_file(2));
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (answered, failures) = client.join().unwrap();
    sigterm(&second);
    assert!(wait_exit(&mut second, Duration::from_secs(10)).success());
    let second_log = std::fs::read_to_string(log_path(2)).unwrap();
    for n in [1, 2] {
        let _ = std::fs::remove_file(log_path(n));
    }
    assert!(
        second_log.contains("GET /hello/<username> 200"),
        "the second process served requests"
    );
    assert!(
        !second_log.contains("Vera"),
        "a username reached the info-level log"
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed across the restart: {:?}",
        failures.len(),
        answered as usize + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered > 20, "only {answered} requests were made");
}

#[test]
fn bad_configuration_exits_non_zero_with_a_clear_message() {
    let output = api_command("postgresql://h:notaport/db").output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DOB_DATABASE_URL"), "{stderr}");

    // A URL that does not verify the server, without DOB_ALLOW_INSECURE_DB.
    let output = api_command("postgresql://dob@127.0.0.1:1/dob?sslmode=require")
        .env_remove("DOB_ALLOW_INSECURE_DB")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("sslmode=require does not verify")
            && stderr.contains("DOB_ALLOW_INSECURE_DB=1"),
        "{stderr}"
    );

    let output = Command::new(BIN).env_clear().output().unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("DOB_DATABASE_URL is required")
            || String::from_utf8_lossy(&output.stderr).contains("DOB_DATABASE_URL: is required")
    );
}
