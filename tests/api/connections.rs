//! Slow and idle clients must not exhaust the server.

use crate::helpers::{read_response, TestApp};
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

#[test]
fn a_client_that_stalls_mid_request_is_disconnected_after_the_read_timeout() {
    let pg = crate::helpers::shared_pg();
    let url = pg.url(&crate::helpers::fresh_database(pg));
    let app = TestApp::spawn_with(&url, &[("DOB_CLIENT_TIMEOUT_MS", "300")]);
    let mut stream = TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /hello/Slow HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let started = Instant::now();
    let response = read_response(&mut stream);
    assert_eq!(response.status, 408);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_thousand_idle_connections_do_not_stop_a_new_client_being_served_promptly() {
    dob::api::listener::raise_fd_limit();
    let app = TestApp::spawn();
    assert_eq!(app.put_dob("Rita", "1988-08-08").status, 204);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut stream =
                TcpStream::connect(app.addr).unwrap_or_else(|e| panic!("connection {i}: {e}"));
            // Half send nothing; half stall in the middle of their headers.
            if i % 2 == 0 {
                stream.write_all(b"GET /hello/Rita HTTP/1.1\r\n").unwrap();
            }
            stream
        })
        .collect();
    let started = Instant::now();
    let response = app.get("/hello/Rita");
    let elapsed = started.elapsed();
    assert_eq!(response.status, 200);
    assert!(
        elapsed < Duration::from_millis(1000),
        "new client waited {elapsed:?}"
    );
    drop(idle);
}
