//! TLS between dob-api and PostgreSQL: a server with `ssl = on` and a certificate for
//! 127.0.0.1 from a test CA (`LocalServer::start_fresh_with_tls`).

use crate::helpers::{fresh_database, TestApp};
use dob::testing::{LocalServer, TestCerts};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn tls_server() -> &'static (LocalServer, TestCerts) {
    static SERVER: OnceLock<(LocalServer, TestCerts)> = OnceLock::new();
    SERVER.get_or_init(|| {
        LocalServer::start_fresh_with_tls().expect("starting PostgreSQL with ssl = on")
    })
}

/// Whether every connection of dob-api to `db` is encrypted (and there is one).
fn api_connections_encrypted(pg: &LocalServer, db: &str) -> bool {
    let mut sql = pg.connect("postgres").unwrap();
    let row = sql
        .query_one(
            "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_ssl s \
             JOIN pg_stat_activity a USING (pid) \
             WHERE a.datname = $1 AND a.application_name = 'dob-api'",
            &[&db],
        )
        .unwrap();
    let (count, all_ssl): (i64, bool) = (row.get(0), row.get(1));
    count > 0 && all_ssl
}

#[test]
fn with_verify_full_the_api_talks_to_a_verified_server_over_tls() {
    let (pg, certs) = tls_server();
    let db = fresh_database(pg);
    let url = format!("{}?sslmode=verify-full", pg.url(&db));
    let ca = certs.ca_file.display().to_string();
    let app = TestApp::spawn_with(
        &url,
        &[
            ("DOB_DATABASE_CA_FILE", &ca),
            ("DOB_ALLOW_INSECURE_DB", "0"),
        ],
    );
    assert_eq!(app.put_dob("Tessa", "1990-02-03").status, 204);
    assert_eq!(app.get("/hello/Tessa").status, 200);
    assert!(api_connections_encrypted(pg, &db));
}

#[test]
fn a_server_whose_certificate_is_not_from_the_ca_file_is_refused() {
    let (pg, certs) = tls_server();
    let db = fresh_database(pg);
    let url = format!("{}?sslmode=verify-full", pg.url(&db));
    let other_ca = certs.other_ca_file.display().to_string();
    let app = TestApp::spawn_unready(
        &url,
        &[
            ("DOB_DATABASE_CA_FILE", &other_ca),
            ("DOB_ALLOW_INSECURE_DB", "0"),
            ("DOB_POOL_TIMEOUT_MS", "300"),
        ],
    );
    let started = Instant::now();
    let response = app.put_dob("Mallory", "1990-02-03");
    assert_eq!(response.status, 503, "an unverified server was written to");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(app.get("/readyz").status, 503);
    let users: bool = pg
        .connect(&db)
        .unwrap()
        .query_one("SELECT to_regclass('users') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(
        !users,
        "migrations ran on a server the API could not verify"
    );
}

#[test]
fn without_a_ca_file_an_allowed_insecure_connection_is_still_encrypted() {
    let (pg, _) = tls_server();
    let db = fresh_database(pg);
    let app = TestApp::spawn_with(&pg.url(&db), &[]);
    assert_eq!(app.put_dob("Ursula", "1990-02-03").status, 204);
    assert!(api_connections_encrypted(pg, &db));
}

#[test]
fn with_verify_full_a_certificate_that_does_not_name_the_host_is_refused() {
    let (pg, certs) = tls_server();
    let db = fresh_database(pg);
    // The certificate names 127.0.0.1 only; "localhost" reaches the same server.
    let url = pg.url(&db).replacen("127.0.0.1", "localhost", 1);
    assert!(url.contains("@localhost:"), "{url}");
    let url = format!("{url}?sslmode=verify-full");
    let ca = certs.ca_file.display().to_string();
    let app = TestApp::spawn_unready(
        &url,
        &[
            ("DOB_DATABASE_CA_FILE", &ca),
            ("DOB_ALLOW_INSECURE_DB", "0"),
            ("DOB_POOL_TIMEOUT_MS", "300"),
        ],
    );
    assert_eq!(app.put_dob("Mallory", "1990-02-03").status, 503);
    assert_eq!(app.get("/readyz").status, 503);
}
