//! The cross-region fence against the real `dob-api` binary and the S3 server: the
//! home region writes while no record exists, stops at once when a record names
//! another region (in either bucket), writes again when a later epoch names it, and
//! acknowledges nothing without a lease (no bucket readable).

use crate::api::{put_dob_at, send, wait_until};
use crate::helpers::*;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_dob-api");
const WEST: &str = "eu-west-1";
const DR: &str = "eu-central-1";

struct Api {
    addr: SocketAddr,
    child: Child,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_api(db: &str, buckets: &str, endpoint: &str, region: &str) -> Api {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(BIN)
        .env_clear()
        .env("DOB_DATABASE_URL", shared_pg().url(db))
        .env("DOB_LISTEN", addr.to_string())
        .env("DOB_WORKERS", "2")
        .env("DOB_POOL_SIZE", "2")
        // The test server is plaintext on loopback.
        .env("DOB_ALLOW_INSECURE_DB", "1")
        .env("DOB_FENCE_BUCKETS", buckets)
        .env("DOB_REGION", region)
        .env("DOB_FENCE_HOME_REGION", WEST)
        .env("DOB_FENCE_INTERVAL_MS", "200")
        .env("DOB_FENCE_LEASE_MS", "3000")
        // A PUT may take up to these two together: the lease must outlast them.
        .env("DOB_POOL_TIMEOUT_MS", "500")
        .env("DOB_STATEMENT_TIMEOUT_MS", "1000")
        .env("DOB_S3_ENDPOINT", endpoint)
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Api { addr, child }
}

fn record(epoch: u64, region: &str) -> Vec<u8> {
    serde_json::to_vec(&dob::failover::fence::FenceRecord {
        epoch,
        writer_region: region.into(),
        promoted_at: "2026-12-04T00:00:00Z".into(),
        previous_writer_region: None,
        promoted_by: Some("test".into()),
    })
    .unwrap()
}

fn status_of_put(api: &Api, user: &str) -> (u16, String) {
    let r = put_dob_at(api.addr, user, "1990-05-17");
    (r.status, r.body)
}

#[test]
fn the_home_region_writes_until_a_later_epoch_names_another_region() {
    let db = fresh_database();
    let west = TestBucket::new();
    let dr = TestBucket::new();
    let buckets = format!("{}@{WEST},{}@{DR}", west.name, dr.name);
    let api = spawn_api(&db, &buckets, &shared_s3().endpoint(), WEST);
    wait_until(Duration::from_secs(20), "dob-api ready", || {
        TcpStream::connect(api.addr).is_ok()
            && send(api.addr, "GET", "/readyz", &[], None).status == 200
    });
    assert_eq!(
        status_of_put(&api, "Alice").0,
        204,
        "no record: the home region writes"
    );

    // A takeover that reached only the DR bucket fences the home region all the same.
    dr.put("dob/fence/epoch.json", &record(1, DR));
    wait_until(Duration::from_secs(5), "the fence to be read", || {
        status_of_put(&api, "Bob").0 == 503
    });
    let (status, body) = status_of_put(&api, "Carol");
    assert_eq!(status, 503);
    assert!(body.contains("fenced") && body.contains(DR), "{body}");
    assert_eq!(
        send(api.addr, "GET", "/readyz", &[], None).status,
        503,
        "a writable database behind a fence takes its host out of service"
    );
    let metrics = send(api.addr, "GET", "/metrics", &[], None).body;
    assert!(metrics.contains("dob_fence_writable 0"), "{metrics}");
    let mut client = sql(&db);
    let stored: i64 = client
        .query_one("SELECT count(*) FROM users WHERE username = 'Carol'", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, 0, "a fenced write changes nothing");
    // Reads go on.
    assert_eq!(send(api.addr, "GET", "/hello/Alice", &[], None).status, 200);

    // Failing back: a later epoch names the home region again.
    west.put("dob/fence/epoch.json", &record(2, WEST));
    wait_until(Duration::from_secs(5), "the new epoch to be read", || {
        status_of_put(&api, "Dave").0 == 204
    });
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 200);
}

#[test]
fn without_a_readable_bucket_no_write_is_acknowledged() {
    let db = fresh_database();
    // A closed port: every read round fails, so no lease is ever granted.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let api = spawn_api(&db, &format!("nobucket@{WEST}"), &endpoint, WEST);
    wait_until(Duration::from_secs(20), "dob-api to answer", || {
        TcpStream::connect(api.addr).is_ok()
            && send(api.addr, "GET", "/healthz", &[], None).status == 200
    });
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = status_of_put(&api, "Erin");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("fence record"), "{body}");
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 503);
}

#[test]
fn a_fence_record_that_is_not_one_never_hands_writes_back() {
    let db = fresh_database();
    let west = TestBucket::new();
    let dr = TestBucket::new();
    let buckets = format!("{}@{WEST},{}@{DR}", west.name, dr.name);
    // Both buckets hold garbage: unreadable, which is not "no record" (that would let
    // the home region write).
    west.put("dob/fence/epoch.json", b"{not json");
    dr.put("dob/fence/epoch.json", b"\x00\xff");
    let api = spawn_api(&db, &buckets, &shared_s3().endpoint(), WEST);
    wait_until(Duration::from_secs(20), "dob-api to answer", || {
        TcpStream::connect(api.addr).is_ok()
            && send(api.addr, "GET", "/healthz", &[], None).status == 200
    });
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = status_of_put(&api, "Frank");
    assert_eq!(status, 503, "{body}");
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 503);
    // A readable record in one bucket decides, the garbage in the other aside.
    dr.put("dob/fence/epoch.json", &record(1, WEST));
    wait_until(
        Duration::from_secs(5),
        "the readable record to be read",
        || status_of_put(&api, "Grace").0 == 204,
    );
}
