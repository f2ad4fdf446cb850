//! The cross-region fence against the real `dob-api` and `dob-promote` binaries and the
//! S3 server: conditional writes refuse a stale version; without records in a majority
//! of the buckets nothing is acknowledged; the home region writes once `--fence-init`
//! has created them and stops at once when a later epoch in a majority names another
//! region; garbage is never read as "no record"; a commit that outlived its lease is
//! answered "outcome unknown", never 204.

use crate::api::{put_dob_at, send, wait_until};
use crate::helpers::*;
use dob::failover::quorum::{self, Fetched, Precondition, PutOutcome, RecordStore, S3RecordStore};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_dob-api");
const WEST: &str = "eu-west-1";
const DR: &str = "eu-central-1";
const WITNESS: &str = "eu-north-1";
const EPOCH_KEY: &str = "dob/fence/epoch.json";

/// The three buckets of a deployment: both regions' and the witness.
struct Buckets {
    west: TestBucket,
    dr: TestBucket,
    witness: TestBucket,
}

impl Buckets {
    fn new() -> Buckets {
        Buckets {
            west: TestBucket::new(),
            dr: TestBucket::new(),
            witness: TestBucket::new(),
        }
    }

    fn spec(&self) -> String {
        format!(
            "{}@{WEST},{}@{DR},{}@{WITNESS}",
            self.west.name, self.dr.name, self.witness.name
        )
    }
}

/// `dob-promote --fence-init --json` with `buckets`; its exit code and report.
fn fence_init(buckets: &str) -> (i32, serde_json::Value) {
    promote_json(
        &["--fence-init"],
        &[
            ("DOB_FENCE_BUCKETS", buckets),
            ("DOB_REGION", DR),
            ("DOB_FENCE_HOME_REGION", WEST),
            ("DOB_S3_ENDPOINT", &shared_s3().endpoint()),
        ],
    )
}

fn results(report: &serde_json::Value) -> Vec<String> {
    report["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["result"].as_str().unwrap().to_owned())
        .collect()
}

fn closed_endpoint() -> String {
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    endpoint
}

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
    spawn_api_at(&shared_pg().url(db), buckets, endpoint, region, &[])
}

fn spawn_api_at(
    url: &str,
    buckets: &str,
    endpoint: &str,
    region: &str,
    extra: &[(&str, &str)],
) -> Api {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(BIN)
        .env_clear()
        .env("DOB_DATABASE_URL", url)
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
        .envs(extra.iter().copied())
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

fn ready(api: &Api) {
    wait_until(Duration::from_secs(20), "dob-api to answer", || {
        TcpStream::connect(api.addr).is_ok()
            && send(api.addr, "GET", "/healthz", &[], None).status == 200
    });
}

#[test]
fn conditional_writes_on_the_s3_server_refuse_a_stale_version() {
    let bucket = TestBucket::new();
    let store = S3RecordStore::new(bucket.name.clone(), bucket.store);
    assert_eq!(store.fetch("k").unwrap(), Fetched::Absent);
    assert_eq!(
        store.put_if("k", b"one", &Precondition::Absent),
        PutOutcome::Written
    );
    assert!(matches!(
        store.put_if("k", b"again", &Precondition::Absent),
        PutOutcome::Conflict(_)
    ));
    let Fetched::Found { body, etag } = store.fetch("k").unwrap() else {
        panic!("written")
    };
    assert_eq!(body, b"one");
    assert_eq!(
        store.put_if("k", b"two", &Precondition::Matches(etag.clone())),
        PutOutcome::Written
    );
    // The version read before "two" is stale now.
    assert!(matches!(
        store.put_if("k", b"three", &Precondition::Matches(etag)),
        PutOutcome::Conflict(_)
    ));
    let Fetched::Found { body, .. } = store.fetch("k").unwrap() else {
        panic!("still there")
    };
    assert_eq!(body, b"two");
    // An unreachable server is an unknown outcome, never a conflict.
    let dead = dob::s3::ObjectStore::connect_with(
        &dob::config::S3Config {
            bucket: "nowhere".into(),
            prefix: "dob".into(),
            region: "us-east-1".into(),
            endpoint: Some(closed_endpoint()),
            sse: None,
        },
        s3::creds::Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None).unwrap(),
    )
    .unwrap();
    let dead = S3RecordStore::new("nowhere".into(), dead);
    assert!(matches!(
        dead.put_if("k", b"x", &Precondition::Absent),
        PutOutcome::Unknown(_)
    ));
    assert!(dead.fetch("k").is_err());
}

#[test]
fn a_change_counts_in_a_majority_of_real_buckets() {
    let buckets = Buckets::new();
    let stores: Vec<S3RecordStore> = [&buckets.west, &buckets.dr, &buckets.witness]
        .iter()
        .map(|b| {
            let store = dob::s3::ObjectStore::connect_with(
                &dob::config::S3Config {
                    bucket: b.name.clone(),
                    prefix: "dob".into(),
                    region: "us-east-1".into(),
                    endpoint: Some(shared_s3().endpoint()),
                    sse: None,
                },
                s3::creds::Credentials::new(Some(ACCESS_KEY), Some(SECRET_KEY), None, None, None)
                    .unwrap(),
            )
            .unwrap();
            S3RecordStore::new(b.name.clone(), store)
        })
        .collect();
    let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
    let admit_higher = |current: Option<&serde_json::Value>| match current {
        Some(c) if c["n"].as_u64() >= Some(2) => Err("holds 2".to_owned()),
        _ => Ok(()),
    };
    // The witness already holds a later value: two of three still make a majority.
    buckets.witness.put("dob/k", br#"{"n": 2}"#);
    let report = quorum::write_majority(&all, "k", &serde_json::json!({"n": 1}), &admit_higher);
    assert!(report.won(), "{}", report.summary());
    assert_eq!(report.refused.len(), 1);
    let reads = quorum::read_all::<serde_json::Value>(&all, "k");
    assert!(quorum::majority_records(&reads, 3).is_some());
    buckets.dr.put("dob/k", br#"{"n": 3}"#);
    let report = quorum::write_majority(&all, "k", &serde_json::json!({"n": 1}), &admit_higher);
    assert!(
        !report.won(),
        "one of three is no majority: {}",
        report.summary()
    );
}

#[test]
fn fence_init_creates_the_records_once_and_never_replaces_them() {
    let buckets = Buckets::new();
    let (code, report) = fence_init(&buckets.spec());
    assert_eq!(code, 0, "{report}");
    assert_eq!(results(&report), vec!["created"; 6]);
    let epoch: serde_json::Value = serde_json::from_slice(&buckets.witness.get(EPOCH_KEY)).unwrap();
    assert_eq!(epoch["epoch"], 0);
    assert_eq!(epoch["writer_region"], WEST);
    // A takeover recorded since: running it again keeps the takeover's record.
    buckets.dr.put(EPOCH_KEY, &record(1, DR));
    let (code, report) = fence_init(&buckets.spec());
    assert_eq!(code, 0, "{report}");
    assert_eq!(results(&report), vec!["kept"; 6]);
    assert_eq!(buckets.dr.get(EPOCH_KEY), record(1, DR));
    // A bucket that cannot be reached: exit 1, the others still created.
    let fresh = Buckets::new();
    let spec = format!(
        "{}@{WEST},{}@{DR},{}@{WITNESS}={}",
        fresh.west.name,
        fresh.dr.name,
        fresh.witness.name,
        closed_endpoint()
    );
    let (code, report) = fence_init(&spec);
    assert_eq!(code, 1, "{report}");
    let got = results(&report);
    assert_eq!(
        got.iter().filter(|r| *r == "created").count(),
        4,
        "{report}"
    );
    assert_eq!(got.iter().filter(|r| *r == "failed").count(), 2, "{report}");
}

#[test]
fn the_home_region_writes_until_a_later_epoch_in_a_majority_names_another_region() {
    let db = fresh_database();
    let buckets = Buckets::new();
    let api = spawn_api(&db, &buckets.spec(), &shared_s3().endpoint(), WEST);
    ready(&api);
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = status_of_put(&api, "Alice");
    assert_eq!(status, 503, "no records yet: nobody writes ({body})");
    assert!(body.contains("fence record"), "{body}");

    assert_eq!(fence_init(&buckets.spec()).0, 0);
    wait_until(Duration::from_secs(5), "the records to be read", || {
        status_of_put(&api, "Alice").0 == 204
    });
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 200);

    // A takeover's epoch in two of three buckets: fenced at once, although its own
    // bucket still says epoch 0 (any majority it reads holds the higher epoch).
    buckets.dr.put(EPOCH_KEY, &record(1, DR));
    buckets.witness.put(EPOCH_KEY, &record(1, DR));
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

    // Failing back: a later epoch in a majority names the home region again.
    buckets.west.put(EPOCH_KEY, &record(2, WEST));
    buckets.witness.put(EPOCH_KEY, &record(2, WEST));
    wait_until(Duration::from_secs(5), "the new epoch to be read", || {
        status_of_put(&api, "Dave").0 == 204
    });
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 200);
}

#[test]
fn without_a_majority_of_readable_buckets_no_write_is_acknowledged() {
    let db = fresh_database();
    let buckets = Buckets::new();
    assert_eq!(fence_init(&buckets.spec()).0, 0);
    // Its own bucket answers with a record naming it; the other two are unreachable.
    let closed = closed_endpoint();
    let spec = format!(
        "{}@{WEST},{}@{DR}={closed},{}@{WITNESS}={closed}",
        buckets.west.name, buckets.dr.name, buckets.witness.name
    );
    let api = spawn_api(&db, &spec, &shared_s3().endpoint(), WEST);
    ready(&api);
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = status_of_put(&api, "Erin");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("fence record"), "{body}");
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 503);
}

#[test]
fn a_fence_record_that_is_not_one_never_hands_writes_back() {
    let db = fresh_database();
    let buckets = Buckets::new();
    assert_eq!(fence_init(&buckets.spec()).0, 0);
    // Two of three hold garbage: unreadable, which is not "no record" and not a vote.
    buckets.dr.put(EPOCH_KEY, b"{not json");
    buckets.witness.put(EPOCH_KEY, b"\x00\xff");
    let api = spawn_api(&db, &buckets.spec(), &shared_s3().endpoint(), WEST);
    ready(&api);
    std::thread::sleep(Duration::from_millis(600));
    let (status, body) = status_of_put(&api, "Frank");
    assert_eq!(status, 503, "{body}");
    assert_eq!(send(api.addr, "GET", "/readyz", &[], None).status, 503);
    // A readable record in a second bucket makes a majority again.
    buckets.witness.put(EPOCH_KEY, &record(0, WEST));
    wait_until(
        Duration::from_secs(5),
        "the readable record to be read",
        || status_of_put(&api, "Grace").0 == 204,
    );
}

#[test]
fn a_commit_that_outlives_its_lease_is_answered_outcome_unknown() {
    let db = fresh_database();
    let buckets = Buckets::new();
    assert_eq!(fence_init(&buckets.spec()).0, 0);
    let api = spawn_api_at(
        &shared_pg().url(&db),
        &buckets.spec(),
        &shared_s3().endpoint(),
        WEST,
        // Room for the statement to wait on a lock while the fence turns.
        &[
            ("DOB_STATEMENT_TIMEOUT_MS", "4000"),
            ("DOB_FENCE_LEASE_MS", "6000"),
        ],
    );
    ready(&api);
    wait_until(Duration::from_secs(5), "the records to be read", || {
        status_of_put(&api, "Heidi").0 == 204
    });
    // Another session holds Heidi's row: the next PUT of Heidi passes the lease check
    // and then waits in its statement, as a hung COMMIT would.
    let mut blocker = sql(&db);
    let mut held = blocker.transaction().unwrap();
    held.execute(
        "SELECT 1 FROM users WHERE username = 'Heidi' FOR UPDATE",
        &[],
    )
    .unwrap();
    let addr = api.addr;
    let put = std::thread::spawn(move || put_dob_at(addr, "Heidi", "1984-02-29"));
    std::thread::sleep(Duration::from_millis(300));
    // A takeover's epoch lands meanwhile, and is read.
    buckets.dr.put(EPOCH_KEY, &record(1, DR));
    buckets.witness.put(EPOCH_KEY, &record(1, DR));
    wait_until(Duration::from_secs(2), "the fence to be read", || {
        metric(&api, "dob_fence_writable") == 0.0
    });
    held.commit().unwrap();
    let answer = put.join().unwrap();
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer.body.contains("outcome is unknown"),
        "{}",
        answer.body
    );
    // It did commit: which is why the answer is "unknown", not "refused".
    let stored: String = sql(&db)
        .query_one(
            "SELECT date_of_birth::text FROM users WHERE username = 'Heidi'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored, "1984-02-29");
    assert_eq!(metric(&api, "dob_fence_late_commits_total"), 1.0);
}

fn detach_state(bucket: &TestBucket) -> Option<dob::failover::fence::DetachRecord> {
    bucket
        .store
        .get_small("dob/fence/detach.json")
        .unwrap()
        .map(|bytes| serde_json::from_slice(&bytes).unwrap())
}

fn metric(api: &Api, name: &str) -> f64 {
    let body = send(api.addr, "GET", "/metrics", &[], None).body;
    body.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .parse()
        .unwrap()
}

#[test]
fn a_region_whose_dr_stops_confirming_detaches_in_a_majority_goes_on_and_reattaches() {
    use dob::failover::fence::AttachState;
    use dob::testing::LocalServer;
    let primary = LocalServer::start_fresh_with(&[("synchronous_commit", "on")]).unwrap();
    primary.create_database("dob").unwrap();
    let slot = unique("dr").to_lowercase();
    let replica = LocalServer::replica_of(&primary, &slot).unwrap();
    let buckets = Buckets::new();
    assert_eq!(fence_init(&buckets.spec()).0, 0);
    let api = spawn_api_at(
        &primary.url("dob"),
        &buckets.spec(),
        &shared_s3().endpoint(),
        WEST,
        &[
            ("DOB_DR_RECEIPT_SLOT", &slot),
            ("DOB_DR_RECEIPT_TIMEOUT_MS", "500"),
            ("DOB_DR_DETACH_AFTER_MS", "1500"),
        ],
    );
    ready(&api);
    wait_until(Duration::from_secs(10), "a confirmed write", || {
        status_of_put(&api, "Alice").0 == 204
    });
    assert_eq!(metric(&api, "dob_dr_detached"), 0.0);

    // The DR stream stops: writes commit, wait, and answer 503 until the region has
    // recorded itself detached in a majority; then they go on alone.
    let mut client = replica.connect("postgres").unwrap();
    let receiver: i32 = client
        .query_one("SELECT pid FROM pg_stat_wal_receiver", &[])
        .unwrap()
        .get(0);
    // SAFETY: signalling a process of the test's own PostgreSQL server.
    unsafe { libc::kill(receiver, libc::SIGSTOP) };
    let (status, body) = status_of_put(&api, "Bob");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("outcome is unknown"), "{body}");
    wait_until(Duration::from_secs(20), "writes to go on alone", || {
        status_of_put(&api, "Carol").0 == 204
    });
    assert_eq!(metric(&api, "dob_dr_detached"), 1.0);
    let detached = detach_state(&buckets.witness).expect("a detach record");
    assert_eq!(detached.state, AttachState::Detached);
    assert!(detached.confirmed_lsn.is_some(), "{detached:?}");
    // What a takeover would read now: the loss window.
    let reads: Vec<_> = [&buckets.west, &buckets.dr, &buckets.witness]
        .iter()
        .map(|b| detach_state(b))
        .collect();
    assert!(
        reads
            .iter()
            .flatten()
            .filter(|r| r.state == AttachState::Detached)
            .count()
            >= 2
    );

    // The DR stream resumes: re-attaching at once (no more writes alone), attached once
    // the DR region holds everything acknowledged alone (after a lease wait).
    unsafe { libc::kill(receiver, libc::SIGCONT) };
    wait_until(Duration::from_secs(30), "the region to re-attach", || {
        detach_state(&buckets.witness).is_some_and(|r| r.state == AttachState::Attached)
    });
    assert_eq!(metric(&api, "dob_dr_detached"), 0.0);
    assert_eq!(metric(&api, "dob_dr_reattaches_total"), 1.0);
    assert_eq!(status_of_put(&api, "Dave").0, 204);
    assert!(metric(&api, "dob_dr_receipt_alone_total") >= 1.0);
    drop(replica);
}
