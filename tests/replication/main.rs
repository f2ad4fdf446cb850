//! Replication and failover against a real primary and a real streaming replica (made
//! by `scripts/make-replica.sh`), with the real `dob-promote` binary and the API served
//! in-process over real HTTP.

// The API suite's harness (TestApp, the HTTP client); not every helper is used here.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod api;
mod helpers;

use api::{wait_until, TestApp};
use helpers::*;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn writes_on_the_primary_appear_on_the_replica_which_refuses_writes() {
    let pair = Pair::start();
    let mut primary = pair.primary.connect("dob").unwrap();
    primary
        .batch_execute("CREATE TABLE t (n int); INSERT INTO t SELECT generate_series(1, 500)")
        .unwrap();
    pair.wait_caught_up();
    let mut replica = pair.replica.connect("dob").unwrap();
    let count: i64 = replica
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 500);
    let err = replica
        .batch_execute("INSERT INTO t VALUES (0)")
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&postgres::error::SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err:?}"
    );

    // It streams through its slot, under the name make-replica.sh gave it.
    let row = pair
        .primary
        .connect("postgres")
        .unwrap()
        .query_one(
            "SELECT r.state, s.active FROM pg_stat_replication r \
             JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE r.application_name = $1",
            &[&pair.replica_name],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "streaming");
    assert!(row.get::<_, bool>(1));
}

#[test]
fn make_replica_refuses_a_data_directory_that_is_not_empty() {
    let pair = Pair::start();
    let dir = std::env::temp_dir().join(format!("dob-not-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("precious"), "keep me").unwrap();
    let output = std::process::Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/make-replica.sh"
    ))
    .args(["--primary-host", "127.0.0.1", "--primary-port"])
    .arg(pair.primary.port().to_string())
    .args(["--user", "postgres", "--data-dir"])
    .arg(&dir)
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("precious")).unwrap(),
        "keep me"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn promote_refuses_when_the_local_server_is_not_a_replica() {
    let pair = Pair::start();
    let run = promote(&pair.primary, &["--force", "--allow-data-loss"]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(run.report["reason"], "not_a_replica");
    assert!(run.stderr.contains("not in recovery"), "{}", run.stderr);
    assert!(in_recovery(&pair.replica));
}

#[test]
fn promote_refuses_while_the_primary_is_up_and_force_overrides() {
    let pair = Pair::start();
    let primary_url = pair.primary.url("postgres");

    // Named explicitly, and found by itself in the replica's primary_conninfo.
    for args in [&["--primary-url", primary_url.as_str()][..], &[][..]] {
        let run = promote(&pair.replica, args);
        assert_eq!(run.code, 4, "{args:?}: {}", run.stderr);
        assert_eq!(run.report["reason"], "primary_still_up");
        assert_eq!(run.report["old_primary"][0]["state"], "primary");
        assert!(in_recovery(&pair.replica), "a refusal changes nothing");
    }

    let dry = promote(
        &pair.replica,
        &["--primary-url", &primary_url, "--force", "--dry-run"],
    );
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.report["result"], "would_promote");
    assert!(in_recovery(&pair.replica), "a dry run changes nothing");

    let run = promote(&pair.replica, &["--primary-url", &primary_url, "--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.report["result"], "promoted");
    assert!(!in_recovery(&pair.replica));
    let promotion = &run.report["promotion"];
    assert!(
        promotion["new_timeline"].as_u64() > promotion["old_timeline"].as_u64(),
        "{promotion}"
    );
    assert!(promotion["promoted_at_lsn"].as_str().unwrap().contains('/'));
    pair.replica
        .connect("dob")
        .unwrap()
        .batch_execute("CREATE TABLE after_promotion (n int)")
        .unwrap();

    let again = promote(&pair.replica, &[]);
    assert_eq!(again.code, 3, "the promoted server is no replica any more");
}

#[test]
fn promote_refuses_beyond_the_lag_bound_and_allow_data_loss_overrides() {
    let mut pair = Pair::start();
    let mut replica = pair.replica.connect("dob").unwrap();
    replica
        .batch_execute("SELECT pg_wal_replay_pause()")
        .unwrap();
    let mut primary = pair.primary.connect("dob").unwrap();
    primary
        .batch_execute(
            "CREATE TABLE t (n int, pad text); \
             INSERT INTO t SELECT n, repeat('x', 100) FROM generate_series(1, 5000) n",
        )
        .unwrap();
    // Received, not replayed: real lag on the replica, then the primary dies.
    let target = current_lsn(&pair.primary);
    wait_until(Duration::from_secs(20), "the replica to receive", || {
        receive_lsn(&pair.replica) >= target
    });
    pair.primary.kill().unwrap();
    let primary_url = pair.primary.url("postgres");

    let run = promote(
        &pair.replica,
        &["--primary-url", &primary_url, "--max-lag-bytes", "1000"],
    );
    assert_eq!(run.code, 5, "{}", run.stderr);
    assert_eq!(run.report["reason"], "lag_too_high");
    let lag = run.report["lag"]["received_not_replayed_bytes"]
        .as_u64()
        .unwrap();
    assert!(lag > 100_000, "{}", run.report);
    assert_eq!(run.report["old_primary"][0]["state"], "unreachable");
    assert!(in_recovery(&pair.replica));

    let run = promote(
        &pair.replica,
        &[
            "--primary-url",
            &primary_url,
            "--max-lag-bytes",
            "1000",
            "--allow-data-loss",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Replay was resumed and finished before the promotion: nothing received was lost.
    let count: i64 = pair
        .replica
        .connect("dob")
        .unwrap()
        .query_one("SELECT count(*) FROM t", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 5000);
    assert!(run.report["warnings"].to_string().contains("paused"));
}

/// Fails the primary over under load and returns (acknowledged users, samples, the
/// moment the primary died).
struct Failover {
    samples: Vec<Sample>,
    killed_at: Instant,
    first_put_after: Instant,
    promote: PromoteRun,
    promoted_at: Instant,
    caught_up_users: HashSet<String>,
}

/// `operator_delay`: time between the primary's death and running dob-promote (the
/// time a person or an alert takes to notice), during which writes cannot succeed.
fn fail_over_under_load(
    pair: &mut Pair,
    wait_for_catch_up: bool,
    operator_delay: Duration,
) -> (Failover, TestApp) {
    let app = TestApp::spawn_with(
        &pair.api_url(),
        &[
            ("DOB_POOL_TIMEOUT_MS", "1000"),
            ("DOB_CONNECT_TIMEOUT_MS", "1000"),
        ],
    );
    let load = Load::start(&app, 4);
    wait_until(Duration::from_secs(20), "writes to flow", || {
        load.samples().iter().filter(|s| s.status == 204).count() >= 100
    });
    let mut caught_up_users = HashSet::new();
    if wait_for_catch_up {
        // Every PUT acknowledged before this instant is in WAL before this LSN.
        let cut = Instant::now();
        pair.wait_caught_up();
        caught_up_users = load
            .samples()
            .iter()
            .filter(|s| s.put && s.status == 204 && s.done_at < cut)
            .map(|s| s.user.clone())
            .collect();
        // Keep writing for a moment after the catch-up point, as real traffic would.
        std::thread::sleep(Duration::from_millis(200));
    }
    let killed_at = Instant::now();
    pair.primary.kill().unwrap();
    // Sent after this, a PUT cannot have been answered by the old primary.
    let dead_at = Instant::now();
    std::thread::sleep(operator_delay);
    let primary_url = pair.primary.url("postgres");
    let run = promote(&pair.replica, &["--primary-url", &primary_url]);
    assert_eq!(run.code, 0, "{}\n{}", run.stderr, run.report);
    let promoted_at = Instant::now();
    let first_put_after = load
        .first_put_ok_after(dead_at, Duration::from_secs(20))
        .expect("a PUT succeeded after the promotion");
    // A little more traffic on the new primary, then stop.
    std::thread::sleep(Duration::from_millis(300));
    let samples = load.finish();
    (
        Failover {
            samples,
            killed_at,
            first_put_after,
            promote: run,
            promoted_at,
            caught_up_users,
        },
        app,
    )
}

fn report(mode: &str, failover: &Failover, lost: usize, acked: usize) {
    let puts: Vec<&Sample> = failover.samples.iter().filter(|s| s.put).collect();
    let ok = puts.iter().filter(|s| s.status == 204).count();
    let unavailable = puts.iter().filter(|s| s.status == 503).count();
    // The pool retries within DOB_POOL_TIMEOUT_MS, so a short gap shows as slow PUTs
    // rather than 503s: the slowest PUT in flight across the failover shows that.
    let slowest = puts
        .iter()
        .filter(|s| s.done_at > failover.killed_at)
        .map(|s| s.took)
        .max()
        .unwrap_or_default();
    eprintln!(
        "failover [{mode}]: primary loss -> first successful PUT {:.2} s (dob-promote returned -> \
         first successful PUT {:.2} s); dob-promote {:.2} s \
         (its own report: {:.2} s, pg_promote to first write {:.3} s); PUTs: {ok} x 204, \
         {unavailable} x 503, slowest PUT across the failover {:.2} s; acknowledged before the \
         primary died: {acked}, lost: {lost}",
        (failover.first_put_after - failover.killed_at).as_secs_f64(),
        failover
            .first_put_after
            .saturating_duration_since(failover.promoted_at)
            .as_secs_f64(),
        failover.promote.elapsed.as_secs_f64(),
        failover.promote.report["duration_seconds"]
            .as_f64()
            .unwrap_or(-1.0),
        failover.promote.report["promotion"]["promote_seconds"]
            .as_f64()
            .unwrap_or(-1.0),
        slowest.as_secs_f64(),
    );
}

#[test]
fn failover_under_load_keeps_every_caught_up_write_and_writes_resume_in_the_same_api() {
    let mut pair = Pair::start();
    // Longer than the pool timeout, so requests in the gap must give up with a 503.
    let (failover, app) = fail_over_under_load(&mut pair, true, Duration::from_millis(2500));
    assert_no_500_and_no_hang(&failover.samples);
    let gap: Vec<&Sample> = failover
        .samples
        .iter()
        .filter(|s| s.put && s.status == 503)
        .collect();
    assert!(!gap.is_empty(), "PUTs during the gap answer 503");
    for s in &gap {
        // DOB_POOL_TIMEOUT_MS is 1000: a 503 comes fast, never a hang.
        assert!(s.took < Duration::from_secs(3), "slow 503: {s:?}");
    }
    assert!(failover.caught_up_users.len() >= 100);

    let stored = stored_users(&pair.replica);
    let missing: Vec<&String> = failover
        .caught_up_users
        .iter()
        .filter(|u| !stored.contains(*u))
        .collect();
    assert!(
        missing.is_empty(),
        "acknowledged before catch-up but lost: {missing:?}"
    );
    // Read back through the same API process, now on the promoted replica.
    for user in failover.caught_up_users.iter().take(20) {
        assert_eq!(get(&app, &format!("/hello/{user}")).status, 200, "{user}");
    }
    // Writes after the catch-up point may be lost in asynchronous mode: count them.
    let acked: HashSet<&String> = failover
        .samples
        .iter()
        .filter(|s| s.put && s.status == 204 && s.done_at < failover.killed_at)
        .map(|s| &s.user)
        .collect();
    let lost = acked.iter().filter(|u| !stored.contains(**u)).count();
    report("async", &failover, lost, acked.len());
    assert!(failover.first_put_after - failover.killed_at < Duration::from_secs(15));
    assert!(
        failover.first_put_after - failover.promoted_at < Duration::from_secs(5),
        "writes resume within seconds of the promotion"
    );
    assert!(get(&app, "/readyz").body.contains("primary"));
}

#[test]
fn in_synchronous_mode_no_acknowledged_write_is_lost_when_the_primary_dies() {
    let mut pair = Pair::start_synchronous();
    // No catch-up wait: the primary dies while writes are in flight.
    let (failover, _app) = fail_over_under_load(&mut pair, false, Duration::ZERO);
    assert_no_500_and_no_hang(&failover.samples);
    let stored = stored_users(&pair.replica);
    let acked: HashSet<&String> = failover
        .samples
        .iter()
        .filter(|s| s.put && s.status == 204)
        .map(|s| &s.user)
        .collect();
    assert!(acked.len() >= 100);
    let lost: Vec<&&String> = acked.iter().filter(|u| !stored.contains(**u)).collect();
    report("sync", &failover, lost.len(), acked.len());
    assert!(lost.is_empty(), "acknowledged with 204 but lost: {lost:?}");
}

#[test]
fn an_api_on_a_replica_follows_a_database_replaced_by_name_and_writes_into_it_after_promotion() {
    let mut pair = Pair::start();
    let writer = TestApp::spawn_with(&pair.primary.url("dob"), &[]);
    assert_eq!(writer.put_dob("Old", "1990-07-14").status, 204);
    drop(writer);
    pair.wait_caught_up();
    // The DR region's API: its pool holds connections to the replica's `dob`.
    let app = TestApp::spawn_with(&pair.replica.url("dob"), &[("DOB_POOL_SIZE", "2")]);
    for _ in 0..8 {
        assert_eq!(app.get("/hello/Old").status, 200);
    }
    // What a restore does on the primary: a verified copy swapped in by two renames.
    // The replica replays them without closing its sessions.
    pair.primary.create_database("dob_fresh").unwrap();
    {
        let mut fresh = pair.primary.connect("dob_fresh").unwrap();
        fresh
            .batch_execute(include_str!("../../sql/0001_create_users.sql"))
            .unwrap();
        fresh
            .batch_execute(
                "INSERT INTO users (username, date_of_birth) VALUES ('Restored', '1980-01-01')",
            )
            .unwrap();
    }
    let mut admin = pair.primary.connect("postgres").unwrap();
    admin
        .batch_execute(
            "ALTER DATABASE dob RENAME TO dob_before; ALTER DATABASE dob_fresh RENAME TO dob;",
        )
        .unwrap();
    pair.wait_caught_up();
    wait_until(
        Duration::from_secs(10),
        "the replica's API to read the new database",
        || app.get("/hello/Restored").status == 200,
    );
    assert_eq!(
        app.get("/hello/Old").status,
        404,
        "still reading the renamed copy"
    );

    pair.primary.stop().unwrap();
    let run = promote(&pair.replica, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    wait_until(Duration::from_secs(10), "PUT to be accepted", || {
        app.put_dob("After", "1999-09-09").status == 204
    });
    let mut dob = pair.replica.connect("dob").unwrap();
    let in_dob: i64 = dob
        .query_one("SELECT count(*) FROM users WHERE username = 'After'", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        in_dob, 1,
        "the write went into the database the name means now"
    );
    let mut before = pair.replica.connect("dob_before").unwrap();
    let in_before: i64 = before
        .query_one("SELECT count(*) FROM users WHERE username = 'After'", &[])
        .unwrap()
        .get(0);
    assert_eq!(in_before, 0, "nothing written into the renamed copy");
}

#[test]
fn an_api_on_a_replica_serves_get_refuses_put_and_accepts_put_after_promotion() {
    let mut pair = Pair::start();
    let writer = TestApp::spawn_with(&pair.primary.url("dob"), &[]);
    assert_eq!(writer.put_dob("Alice", "1990-07-14").status, 204);
    drop(writer);
    pair.wait_caught_up();

    // The DR region: its API talks only to the replica.
    let app = TestApp::spawn_with(&pair.replica.url("dob"), &[]);
    assert_eq!(app.get("/hello/Alice").status, 200);
    let put = app.put_dob("Bob", "1991-01-01");
    let error = put.assert_error(503);
    assert!(error.contains("read-only"), "{error}");
    assert!(put.header("Retry-After").is_some());
    assert!(app.get("/readyz").body.contains(r#""role":"replica""#));
    assert!(app
        .get("/metrics")
        .body
        .contains("dob_db_role{role=\"replica\"} 1"));

    pair.primary.stop().unwrap();
    let run = promote(&pair.replica, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    let started = Instant::now();
    wait_until(Duration::from_secs(10), "PUT to be accepted", || {
        app.put_dob("Bob", "1991-01-01").status == 204
    });
    eprintln!(
        "replica API accepted PUT {:.2} s after dob-promote returned",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(app.get("/hello/Bob").status, 200);
    assert!(app.get("/readyz").body.contains(r#""role":"primary""#));
    assert!(app
        .get("/metrics")
        .body
        .contains("dob_db_role{role=\"primary\"} 1"));
}

#[test]
fn primary_allow_replica_creates_a_replication_only_role_and_hba_lines_for_the_given_addresses() {
    let pg = dob::testing::LocalServer::start_fresh().unwrap();
    let dir = std::env::temp_dir().join(format!("dob-allow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let password_file = dir.join("password");
    std::fs::write(&password_file, "it's a secret\n").unwrap();
    let run = |extra: &[&str]| {
        std::process::Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/primary-allow-replica.sh"
        ))
        .args(["--host", "127.0.0.1", "--port"])
        .arg(pg.port().to_string())
        .args(["--replica-cidr", "10.0.2.10/32", "--password-file"])
        .arg(&password_file)
        .args(extra)
        .env("DOB_PG_BIN", pg.bin().dir())
        .output()
        .unwrap()
    };
    let mut client = pg.connect("postgres").unwrap();
    let role_exists = |client: &mut postgres::Client| {
        client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = 'replicator'", &[])
            .unwrap()
            .is_some()
    };

    // Without TLS on the server, it refuses unless plaintext is asked for, and changes nothing.
    let refused = run(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ssl is off"), "{stderr}");
    assert!(!role_exists(&mut client));

    for _ in 0..2 {
        let ok = run(&["--allow-plaintext"]);
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        assert!(!String::from_utf8_lossy(&ok.stderr).contains("secret"));
    }
    let row = client
        .query_one(
            "SELECT rolreplication, rolsuper, rolcanlogin, rolpassword LIKE 'SCRAM-SHA-256$%' \
             FROM pg_authid WHERE rolname = 'replicator'",
            &[],
        )
        .unwrap();
    let flags: (bool, bool, bool, bool) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(flags, (true, false, true, true));
    let rules: Vec<(String, String)> = client
        .query(
            "SELECT type, address FROM pg_hba_file_rules \
             WHERE 'replicator' = ANY(user_name) AND 'replication' = ANY(database)",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        rules,
        [("host".to_string(), "10.0.2.10".to_string())],
        "one line, added once, for the replica's address only"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The replica's WAL receiver process (the DR region's stream, in production).
fn walreceiver_pid(replica: &dob::testing::LocalServer) -> i32 {
    let mut client = replica.connect("postgres").unwrap();
    let mut pid = None;
    wait_until(Duration::from_secs(20), "the replica to stream", || {
        pid = client
            .query_opt("SELECT pid FROM pg_stat_wal_receiver", &[])
            .unwrap()
            .map(|row| row.get::<_, i32>(0));
        pid.is_some()
    });
    pid.unwrap()
}

fn signal(pid: i32, signal: libc::c_int) {
    // SAFETY: signalling a process of the test's own PostgreSQL server.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Usernames are letters only.
fn carol(i: u8) -> String {
    format!("Carol{}", char::from(b'a' + i))
}

#[test]
fn with_a_dr_slot_a_put_is_answered_204_only_once_the_replica_has_flushed_it() {
    let mut pair = Pair::start();
    let app = TestApp::spawn_with(
        &pair.api_url(),
        &[
            ("DOB_DR_RECEIPT_SLOT", &pair.replica_name),
            ("DOB_DR_RECEIPT_TIMEOUT_MS", "1500"),
        ],
    );
    assert_eq!(app.put_dob("Alice", "1990-05-17").status, 204);
    let receiver = walreceiver_pid(&pair.replica);

    // The replica stops taking WAL: the commit happens here, the receipt never comes.
    signal(receiver, libc::SIGSTOP);
    let started = Instant::now();
    let reply = app.put_dob("Bob", "1991-06-18");
    let waited = started.elapsed();
    signal(receiver, libc::SIGCONT);
    let error = reply.assert_error(503);
    assert!(error.contains("outcome is unknown"), "{error}");
    assert_eq!(reply.header("Retry-After"), Some("1"));
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    assert!(
        stored_users(&pair.primary).contains("Bob"),
        "committed here: the 503 is an unknown outcome, not a failure"
    );
    let metrics = app.get("/metrics").body;
    assert!(
        metrics.contains("dob_dr_receipt_timeouts_total 1"),
        "{metrics}"
    );

    // The replica streams again: writes are confirmed again, and each 204 is already in
    // its flushed WAL: the primary dies right after one, and the replica has it.
    for i in 0..20u8 {
        assert_eq!(app.put_dob(&carol(i), "1992-07-19").status, 204);
    }
    assert_eq!(app.put_dob("Dave", "1993-08-20").status, 204);
    pair.primary.kill().unwrap();
    let received = receive_lsn(&pair.replica);
    wait_until(
        Duration::from_secs(20),
        "the replica to replay what it has",
        || replay_lsn(&pair.replica) >= received,
    );
    let on_replica = stored_users(&pair.replica);
    for name in ["Alice", "Dave"]
        .into_iter()
        .map(String::from)
        .chain((0..20).map(carol))
    {
        assert!(
            on_replica.contains(&name),
            "{name} was answered 204 but the replica lacks it"
        );
    }
    let metrics = app.get("/metrics").body;
    assert!(
        metrics.contains("dob_dr_receipt_confirmed_total 22"),
        "{metrics}"
    );
}

#[test]
fn a_dr_slot_that_does_not_exist_confirms_nothing() {
    let pair = Pair::start();
    let app = TestApp::spawn_with(
        &pair.api_url(),
        &[
            ("DOB_DR_RECEIPT_SLOT", "no_such_slot"),
            ("DOB_DR_RECEIPT_TIMEOUT_MS", "300"),
        ],
    );
    app.put_dob("Erin", "1990-01-01").assert_error(503);
    assert!(stored_users(&pair.primary).contains("Erin"));
}
