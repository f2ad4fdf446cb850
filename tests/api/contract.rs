//! The API contract from DESIGN.md, request by request.

use crate::helpers::{send, send_raw, today_utc, TestApp};
use jiff::ToSpan;
use std::sync::Arc;

#[test]
fn put_then_get_greets_with_the_days_until_the_birthday() {
    let app = TestApp::spawn();
    let tomorrow = today_utc().checked_add(1.day()).unwrap();
    let dob = format!("1990-{:02}-{:02}", tomorrow.month(), tomorrow.day());
    // 29 February tomorrow: a 1990 birthday cannot be on it; use a leap year.
    let dob = if dob.ends_with("02-29") {
        "1992-02-29".to_owned()
    } else {
        dob
    };

    let put = app.put_dob("Alice", &dob);
    assert_eq!(put.status, 204, "{put:?}");
    assert!(put.body.is_empty());

    let get = app.get("/hello/Alice");
    assert_eq!(get.status, 200);
    assert_eq!(get.header("Content-Type"), Some("application/json"));
    assert_eq!(
        get.json()["message"],
        "Hello, Alice! Your birthday is in 1 day(s)"
    );
}

#[test]
fn a_birthday_today_gets_happy_birthday() {
    let app = TestApp::spawn();
    let today = today_utc();
    let dob = format!(
        "{}-{:02}-{:02}",
        today.year() - 20,
        today.month(),
        today.day()
    );
    assert_eq!(app.put_dob("Bob", &dob).status, 204);
    assert_eq!(
        app.get("/hello/Bob").json()["message"],
        "Hello, Bob! Happy birthday!"
    );
}

#[test]
fn put_again_updates_the_date_without_duplicating_the_user() {
    let app = TestApp::spawn();
    assert_eq!(app.put_dob("carol", "1980-01-01").status, 204);
    assert_eq!(app.put_dob("carol", "1981-02-02").status, 204);
    let rows = app
        .sql()
        .query(
            "SELECT date_of_birth::text FROM users WHERE username = 'carol'",
            &[],
        )
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "1981-02-02");
}

fn user_count(app: &TestApp) -> i64 {
    app.sql()
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0)
}

#[test]
fn concurrent_puts_for_one_user_leave_exactly_one_row() {
    let app = Arc::new(TestApp::spawn());
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let app = Arc::clone(&app);
            std::thread::spawn(move || {
                for j in 0..10 {
                    let date = format!("19{:02}-03-{:02}", 50 + i, 1 + j);
                    assert_eq!(app.put_dob("Racer", &date).status, 204);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(user_count(&app), 1);
}

#[test]
fn concurrent_puts_are_each_acknowledged_only_once_committed() {
    // Sixteen writers at once: most PUTs share a batch's statement (DOB_WRITE_CONCURRENCY
    // is the CPUs). A 204 must mean committed: the writer's next GET sees its date.
    let app = Arc::new(TestApp::spawn_with(
        &{
            let pg = crate::helpers::shared_pg();
            pg.url(&crate::helpers::fresh_database(pg))
        },
        &[("DOB_WRITE_CONCURRENCY", "1"), ("DOB_POOL_SIZE", "4")],
    ));
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let app = Arc::clone(&app);
            std::thread::spawn(move || {
                let name = format!("Writer{}", char::from(b'a' + i as u8));
                for day in 1..=20 {
                    let date = format!("1990-04-{day:02}");
                    assert_eq!(app.put_dob(&name, &date).status, 204);
                    let stored: String = app
                        .sql()
                        .query_one(
                            "SELECT date_of_birth::text FROM users WHERE username = $1",
                            &[&name],
                        )
                        .unwrap()
                        .get(0);
                    assert_eq!(stored, date, "{name}: acknowledged but not committed");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(user_count(&app), 16);
}

#[test]
fn usernames_are_case_sensitive() {
    let app = TestApp::spawn();
    assert_eq!(app.put_dob("Dave", "1970-05-05").status, 204);
    app.get("/hello/dave").assert_error(404);
    assert_eq!(app.get("/hello/Dave").status, 200);
}

#[test]
fn an_unknown_user_is_404_with_a_json_error() {
    let app = TestApp::spawn();
    app.get("/hello/Nobody").assert_error(404);
}

#[test]
fn invalid_usernames_are_400_for_get_and_put_and_store_nothing() {
    let app = TestApp::spawn();
    let long = "a".repeat(65);
    for name in [
        "bob1",
        "%41lice",
        "bob%0A",
        "b%C3%B8b",
        "",
        "bob_",
        "bob.",
        long.as_str(),
    ] {
        app.get(&format!("/hello/{name}")).assert_error(400);
        app.put_dob(name, "1990-01-01").assert_error(400);
    }
    // Raw non-ASCII bytes in the request line.
    let raw = "GET /hello/b\u{f8}b HTTP/1.1\r\nConnection: close\r\n\r\n";
    app.get("/hello/b%C3%B8b").assert_error(400);
    // Not valid HTTP (a request target is ASCII): answered 400 or closed unanswered.
    let answer = crate::helpers::send_raw_bytes(app.addr, raw.as_bytes());
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let count: i64 = app
        .sql()
        .query_one("SELECT count(*) FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
    // 64 letters is the limit, not past it.
    assert_eq!(app.put_dob(&"a".repeat(64), "1990-01-01").status, 204);
}

#[test]
fn invalid_dates_are_400_and_change_nothing() {
    let app = TestApp::spawn();
    assert_eq!(app.put_dob("Erin", "1990-01-01").status, 204);
    let today = today_utc();
    let tomorrow = today.checked_add(1.day()).unwrap();
    for date in [
        today.to_string(),
        tomorrow.to_string(),
        "1990-02-30".into(),
        "1990-13-01".into(),
        "1990-1-01".into(),
        "01-01-1990".into(),
        "1990-01-01T00:00:00Z".into(),
        "".into(),
    ] {
        let error = app.put_dob("Erin", &date).assert_error(400);
        assert!(error.contains("dateOfBirth"), "{date}: {error}");
    }
    for body in [
        r#"{}"#,
        r#"{"dateOfBirth":19900101}"#,
        r#"["1990-01-01"]"#,
        r#""1990-01-01""#,
        "not json",
        "",
        "{",
    ] {
        app.put_json("/hello/Erin", body).assert_error(400);
    }
    let date: String = app
        .sql()
        .query_one("SELECT date_of_birth::text FROM users", &[])
        .unwrap()
        .get(0);
    assert_eq!(date, "1990-01-01");
}

#[test]
fn extra_json_fields_are_ignored_and_content_type_may_be_absent() {
    let app = TestApp::spawn();
    let body = br#"{"name":"Frank","dateOfBirth":"1985-07-07","tags":[1,2]}"#;
    assert_eq!(
        send(app.addr, "PUT", "/hello/Frank", &[], Some(body)).status,
        204
    );
    let with_charset = [("Content-Type", "application/json; charset=utf-8")];
    assert_eq!(
        send(app.addr, "PUT", "/hello/Frank", &with_charset, Some(body)).status,
        204
    );
}

#[test]
fn a_non_json_content_type_is_415() {
    let app = TestApp::spawn();
    let body = br#"{"dateOfBirth":"1985-07-07"}"#;
    for content_type in ["text/plain", "application/x-www-form-urlencoded"] {
        send(
            app.addr,
            "PUT",
            "/hello/Gina",
            &[("Content-Type", content_type)],
            Some(body),
        )
        .assert_error(415);
    }
    app.get("/hello/Gina").assert_error(404);
}

#[test]
fn a_body_over_1_kib_is_413_whether_sized_or_chunked() {
    let app = TestApp::spawn();
    let padding = "x".repeat(1100);
    let body = format!(r#"{{"dateOfBirth":"1985-07-07","pad":"{padding}"}}"#);
    app.put_json("/hello/Hank", &body).assert_error(413);

    let chunked = format!(
        "PUT /hello/Hank HTTP/1.1\r\nConnection: close\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    send_raw(app.addr, chunked.as_bytes()).assert_error(413);
    app.get("/hello/Hank").assert_error(404);

    // Exactly 1024 bytes is allowed.
    let fill = 1024 - r#"{"dateOfBirth":"1985-07-07","p":""}"#.len();
    let body = format!(
        r#"{{"dateOfBirth":"1985-07-07","p":"{}"}}"#,
        "y".repeat(fill)
    );
    assert_eq!(body.len(), 1024);
    assert_eq!(app.put_json("/hello/Hank", &body).status, 204);
}

#[test]
fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let app = TestApp::spawn();
    let response = send(app.addr, "DELETE", "/hello/Ivy", &[], None);
    response.assert_error(405);
    assert_eq!(response.header("Allow"), Some("GET, PUT"));
    let response = send(app.addr, "POST", "/healthz", &[], None);
    response.assert_error(405);
    assert_eq!(response.header("Allow"), Some("GET"));
    for path in ["/", "/hello", "/hello/Ivy/extra", "/nope"] {
        app.get(path).assert_error(404);
    }
}

#[test]
fn health_readiness_and_metrics_answer() {
    let app = TestApp::spawn();
    assert_eq!(app.get("/healthz").status, 200);
    let ready = app.get("/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["role"], "primary");

    app.put_dob("Jack", "1999-09-09");
    app.get("/hello/Jack");
    app.get("/hello/nobody");
    let metrics = app.get("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    for line in [
        "dob_http_requests_total{route=\"PUT /hello\",status=\"204\"} 1",
        "dob_http_requests_total{route=\"GET /hello\",status=\"200\"} 1",
        "dob_http_requests_total{route=\"GET /hello\",status=\"404\"} 1",
        "dob_db_role{role=\"primary\"} 1",
        "dob_db_pool_max_connections 4",
    ] {
        assert!(
            metrics.body.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            metrics.body
        );
    }
    assert!(metrics
        .body
        .contains("dob_http_request_duration_seconds_bucket{route=\"GET /hello\",le=\"+Inf\"} 2"));
}

#[test]
fn today_follows_dob_timezone() {
    // UTC+14 and UTC-11 are always on different dates.
    let pg = crate::helpers::shared_pg();
    let url = pg.url(&crate::helpers::fresh_database(pg));
    let ahead = TestApp::spawn_with(&url, &[("DOB_TIMEZONE", "Pacific/Kiritimati")]);
    let behind = TestApp::spawn_with(&url, &[("DOB_TIMEZONE", "Pacific/Pago_Pago")]);
    let now = jiff::Timestamp::now();
    let ahead_today = now.in_tz("Pacific/Kiritimati").unwrap().date();
    let dob = format!("1996-{:02}-{:02}", ahead_today.month(), ahead_today.day());

    assert_eq!(ahead.put_dob("Kim", &dob).status, 204);
    assert_eq!(
        ahead.get("/hello/Kim").json()["message"],
        "Hello, Kim! Happy birthday!"
    );
    let message = behind.get("/hello/Kim").json()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message == "Hello, Kim! Your birthday is in 1 day(s)"
            || message == "Hello, Kim! Your birthday is in 2 day(s)",
        "{message}"
    );
    // Kiritimati's today is still in the future west of the date line.
    behind
        .put_dob("Lee", &ahead_today.to_string())
        .assert_error(400);
}

#[test]
fn concurrent_gets_each_get_their_own_users_greeting() {
    // One lookup at a time: everything else is coalesced into shared queries.
    let pg = crate::helpers::shared_pg();
    let url = pg.url(&crate::helpers::fresh_database(pg));
    let app = Arc::new(TestApp::spawn_with(
        &url,
        &[("DOB_LOOKUP_CONCURRENCY", "1"), ("DOB_WORKERS", "16")],
    ));
    let today = today_utc();
    let names: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "user{}",
                "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
                    .chars()
                    .nth(i)
                    .unwrap()
            )
        })
        .collect();
    let expected: Vec<String> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let birthday = today.checked_add((i as i32 + 1).days()).unwrap();
            let dob = format!("1980-{:02}-{:02}", birthday.month(), birthday.day());
            let dob = if dob.ends_with("02-29") {
                "1980-02-29".to_owned()
            } else {
                dob
            };
            assert_eq!(app.put_dob(name, &dob).status, 204);
            app.get(&format!("/hello/{name}")).json()["message"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let (names, expected) = (Arc::new(names), Arc::new(expected));
    let threads: Vec<_> = (0..24)
        .map(|t| {
            let (app, names, expected) =
                (Arc::clone(&app), Arc::clone(&names), Arc::clone(&expected));
            std::thread::spawn(move || {
                for k in 0..30 {
                    let i = (t * 7 + k * 13) % names.len();
                    let response = app.get(&format!("/hello/{}", names[i]));
                    assert_eq!(response.status, 200);
                    assert_eq!(response.json()["message"], expected[i].as_str());
                }
                // Unknown users in the same batches stay unknown.
                app.get(&format!("/hello/nobody{}", names[t % names.len()]))
                    .assert_error(404);
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn a_204_carries_no_content_length_and_an_endless_header_line_is_cut_off() {
    let app = TestApp::spawn();
    let put = app.put_dob("Uma", "1990-01-01");
    assert_eq!(put.status, 204);
    assert_eq!(
        put.header("Content-Length"),
        None,
        "RFC 9110: no Content-Length on 204"
    );

    let mut raw = b"GET /hello/Uma HTTP/1.1\r\nX-Long: ".to_vec();
    raw.extend(std::iter::repeat_n(b'a', 64 * 1024));
    // The server gives up after 16 KiB and closes; a reset is an acceptable ending too.
    // Without the cap the server would read on until its 10 s client timeout.
    let started = std::time::Instant::now();
    let mut stream = std::net::TcpStream::connect(app.addr).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut stream, &raw);
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut answer);
    let elapsed = started.elapsed();
    assert!(
        !answer.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert!(
        elapsed < std::time::Duration::from_secs(3),
        "the connection was cut off only after {elapsed:?}"
    );
    assert_eq!(
        app.get("/hello/Uma").status,
        200,
        "the server is unaffected"
    );
}
