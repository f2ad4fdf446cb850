//! The database going away, coming back, turning read-only, and multi-host URLs.

use crate::helpers::{fresh_database, shared_pg, wait_until, TestApp};
use dob::testing::{free_port, LocalServer};
use std::time::{Duration, Instant};

#[test]
fn requests_answer_503_quickly_while_the_database_is_down_and_recover_by_themselves() {
    let mut pg = LocalServer::start_fresh().unwrap();
    pg.create_database("dob").unwrap();
    let app = TestApp::spawn_with(
        &pg.url("dob"),
        &[("DOB_POOL_TIMEOUT_MS", "500"), ("DOB_READY_GRACE_MS", "0")],
    );
    assert_eq!(app.put_dob("Mia", "1991-01-01").status, 204);

    pg.stop().unwrap();
    for path in ["/hello/Mia", "/readyz"] {
        let started = Instant::now();
        let response = app.get(path);
        assert_eq!(response.status, 503, "{path}: {response:?}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path} took {:?}",
            started.elapsed()
        );
    }
    let put = app.put_dob("Mia", "1992-02-02");
    put.assert_error(503);
    assert!(put.header("Retry-After").is_some());
    assert_eq!(
        app.get("/healthz").status,
        200,
        "liveness does not depend on the database"
    );

    pg.start().unwrap();
    wait_until(Duration::from_secs(15), "GET to work again", || {
        app.get("/hello/Mia").status == 200
    });
    assert_eq!(app.put_dob("Mia", "1992-02-02").status, 204);
}

#[test]
fn the_api_starts_while_the_database_is_down_and_migrates_once_it_is_up() {
    let mut pg = LocalServer::start_fresh().unwrap();
    pg.create_database("dob").unwrap();
    pg.stop().unwrap();
    let app = TestApp::spawn_unready(&pg.url("dob"), &[]);
    assert_eq!(app.get("/healthz").status, 200);
    app.get("/readyz").assert_error(503);
    app.get("/hello/Nia").assert_error(503);
    pg.start().unwrap();
    app.wait_ready();
    assert_eq!(app.put_dob("Nia", "1993-03-03").status, 204);
}

#[test]
fn a_multi_host_url_skips_a_dead_host_and_finds_the_writable_one() {
    let pg = shared_pg();
    let db = fresh_database(pg);
    let dead = free_port().unwrap();
    let url = format!(
        "postgresql://postgres@127.0.0.1:{dead},127.0.0.1:{}/{db}?target_session_attrs=read-write",
        pg.port()
    );
    let app = TestApp::spawn_with(&url, &[]);
    assert_eq!(app.put_dob("Omar", "1994-04-04").status, 204);
    assert_eq!(app.get("/hello/Omar").status, 200);
}

#[test]
fn concurrent_starts_apply_migrations_once() {
    let pg = shared_pg();
    let url = pg.url(&fresh_database(pg));
    let apps: Vec<TestApp> = (0..4).map(|_| TestApp::spawn_unready(&url, &[])).collect();
    for app in &apps {
        app.wait_ready();
    }
    let versions: i64 = apps[0]
        .sql()
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(versions as usize, dob::db::migrate::MIGRATIONS.len());
}

#[test]
fn read_only_connections_are_discarded_so_writes_resume_when_the_server_is_writable() {
    let pg = shared_pg();
    let db = fresh_database(pg);
    // A generous pool timeout: on a loaded machine reconnecting can take over a second.
    let app = TestApp::spawn_with(&pg.url(&db), &[("DOB_POOL_TIMEOUT_MS", "5000")]);
    assert_eq!(app.put_dob("Pia", "1995-05-05").status, 204);

    // New sessions start read-only; the pooled ones are recycled after a refusal.
    set_read_only(pg, &db, true);
    let mut refused = app.put_dob("Pia", "1996-06-06");
    wait_until(
        Duration::from_secs(10),
        "PUT to be refused as read-only",
        || {
            refused = app.put_dob("Pia", "1996-06-06");
            refused.body.contains("read-only")
        },
    );
    let error = refused.assert_error(503);
    assert!(error.contains("read-only"), "{error}");
    assert_eq!(refused.header("Retry-After"), Some("30"));
    assert_eq!(app.get("/hello/Pia").status, 200, "reads still work");

    set_read_only(pg, &db, false);
    wait_until(Duration::from_secs(10), "writes to resume", || {
        app.put_dob("Pia", "1996-06-06").status == 204
    });
}

#[test]
fn with_target_session_attrs_read_write_a_read_only_server_is_not_used_for_anything() {
    let pg = shared_pg();
    let db = fresh_database(pg);
    let url = format!("{}?target_session_attrs=read-write", pg.url(&db));
    let app = TestApp::spawn_with(&url, &[("DOB_POOL_TIMEOUT_MS", "500")]);
    set_read_only(pg, &db, true);
    wait_until(Duration::from_secs(10), "PUT to be refused", || {
        app.put_dob("Quin", "1997-07-07").status == 503
    });
    set_read_only(pg, &db, false);
    wait_until(Duration::from_secs(10), "writes to resume", || {
        app.put_dob("Quin", "1997-07-07").status == 204
    });
}

/// Makes new sessions on `db` read-only (or writable again) and ends the current ones, as
/// a server turning into (or out of) a read-only replica looks to a client.
fn set_read_only(pg: &LocalServer, db: &str, read_only: bool) {
    let mut admin = pg.connect("postgres").unwrap();
    let setting = if read_only {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    admin
        .batch_execute(&format!("ALTER DATABASE {db} {setting}"))
        .unwrap();
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&db],
        )
        .unwrap();
}

#[test]
fn migrations_are_skipped_on_a_read_only_server() {
    let pg = shared_pg();
    let db = fresh_database(pg);
    set_read_only(pg, &db, true);
    let mut client = pg.connect(&db).unwrap();
    assert_eq!(
        dob::db::migrate::run(&mut client).unwrap(),
        dob::db::migrate::Outcome::SkippedReadOnly
    );
    set_read_only(pg, &db, false);
    let mut client = pg.connect(&db).unwrap();
    let table: Option<String> = client
        .query_one("SELECT to_regclass('users')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(table, None, "nothing was created while read-only");
    assert_eq!(
        dob::db::migrate::run(&mut client).unwrap(),
        dob::db::migrate::Outcome::Applied(dob::db::migrate::MIGRATIONS.len())
    );
    assert_eq!(
        dob::db::migrate::run(&mut client).unwrap(),
        dob::db::migrate::Outcome::Applied(0),
        "a second run applies nothing"
    );
}

#[test]
fn readiness_stays_200_through_a_failovers_leaderless_window_then_turns_503() {
    let mut pg = LocalServer::start_fresh().unwrap();
    pg.create_database("dob").unwrap();
    let app = TestApp::spawn_with(&pg.url("dob"), &[("DOB_READY_GRACE_MS", "2000")]);
    assert_eq!(app.get("/readyz").status, 200);
    pg.stop().unwrap();
    let stopped = Instant::now();
    // Within the grace: still in service, and the body says no database answers.
    let ready = app.get("/readyz");
    assert_eq!(ready.status, 200, "{ready:?}");
    assert_eq!(ready.json()["role"], "none");
    app.get("/hello/Nobody").assert_error(503);
    // Beyond it: out of service.
    wait_until(Duration::from_secs(10), "readiness to turn 503", || {
        app.get("/readyz").status == 503
    });
    assert!(stopped.elapsed() >= Duration::from_secs(2));
    pg.start().unwrap();
    wait_until(Duration::from_secs(15), "readiness to return", || {
        app.get("/readyz").status == 200
    });
}

/// A commit waiting for a synchronous standby that never answers is not bounded by
/// PostgreSQL's statement_timeout: dob-api's own deadline cancels it, answers 503
/// "outcome unknown" (the row did commit locally) and discards the connection; the
/// next write works once the standby requirement is gone.
#[test]
fn a_commit_stuck_on_a_synchronous_standby_is_cancelled_at_its_deadline() {
    // The test servers' default (off) never waits for a standby.
    let pg = LocalServer::start_fresh_with(&[("synchronous_commit", "on")]).unwrap();
    pg.create_database("dob").unwrap();
    let app = TestApp::spawn_with(&pg.url("dob"), &[("DOB_STATEMENT_TIMEOUT_MS", "1000")]);
    assert_eq!(app.put_dob("Sam", "1990-01-01").status, 204);
    let mut admin = pg.connect("postgres").unwrap();
    let require_standby = |admin: &mut postgres::Client, names: &str| {
        // Two statements: ALTER SYSTEM refuses to run inside a multi-statement batch.
        admin
            .batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
            ))
            .unwrap();
        admin.batch_execute("SELECT pg_reload_conf()").unwrap();
        // The reload reaches every backend at its next command.
        std::thread::sleep(Duration::from_millis(300));
    };
    require_standby(&mut admin, "nobody");

    let started = Instant::now();
    let put = app.put_dob("Sam", "1991-02-02");
    let took = started.elapsed();
    let message = put.assert_error(503);
    assert!(message.contains("outcome is unknown"), "{message}");
    // 1 s statement timeout + 250 ms, and the cancel's round trip.
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(4),
        "answered after {took:?}"
    );
    let waiting: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(waiting, 0, "the cancelled commit still waits");
    // Committed locally all the same: that is why the answer is "unknown", not "failed".
    let stored: jiff::civil::Date = pg
        .connect("dob")
        .unwrap()
        .query_one(
            "SELECT date_of_birth FROM users WHERE username = 'Sam'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(stored.to_string(), "1991-02-02");

    let metrics = app.get("/metrics").body;
    assert!(
        metrics
            .lines()
            .any(|l| l == "dob_db_write_deadline_cancels_total 1"),
        "{metrics}"
    );

    require_standby(&mut admin, "");
    assert_eq!(app.put_dob("Sam", "1992-03-03").status, 204);
}
