//! Routing and handlers. A handler is a plain function from the request and the app
//! state to a [`Reply`]; the server module turns replies into HTTP responses, times
//! them and logs them. All of the API contract lives here.

use crate::api::dr_receipt::Receipt;
use crate::api::front::{Body, Request};
use crate::api::metrics::{DbSnapshot, HttpSnapshot, Metrics, RouteLabel};
use crate::api::store::{Role, Store, StoreError};
use crate::api::wire::Reply;
pub use crate::api::wire::JSON;
use crate::birthday;
use crate::domain::{DateOfBirth, Username, ValidationError};
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1024;

/// Seconds a client should wait before retrying a write refused by a read-only region:
/// about how long a failover takes.
const READ_ONLY_RETRY_AFTER: u32 = 30;

/// Shared state every handler sees.
pub struct App {
    pub store: Store,
    pub metrics: Metrics,
    pub timezone: TimeZone,
    /// Set on SIGTERM: readiness answers 503 so the load balancer drains this host.
    pub draining: AtomicBool,
    /// The HTTP front's counters, and its connection cap, for `/metrics`.
    pub http_stats: Arc<crate::api::front::Stats>,
    pub max_connections: usize,
    /// The cross-region write lease, when fencing is on.
    pub fence: Option<Arc<crate::failover::fence::FenceState>>,
    /// The longest a PUT can take to commit once it starts (pool wait plus statement
    /// timeout): a write goes ahead only if the lease outlasts it.
    pub write_hold: std::time::Duration,
    /// PUTs committed after their lease ran out, answered 503 "outcome unknown".
    pub late_commits: std::sync::atomic::AtomicU64,
    /// The DR region's receipt a committed PUT waits for, when `DOB_DR_RECEIPT_SLOT` is set.
    pub dr_receipt: Option<Arc<crate::api::dr_receipt::DrReceipt>>,
}

impl App {
    /// Today's date in `DOB_TIMEZONE`: the only place the API reads the clock.
    pub fn today(&self) -> Date {
        self.timezone.to_datetime(Timestamp::now()).date()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where a request target goes. The path is matched raw, as sent: no percent-decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Route<'a> {
    Hello(&'a str),
    Healthz,
    Readyz,
    Metrics,
    NotFound,
}

pub fn route(target: &str) -> Route<'_> {
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    match path {
        "/healthz" => Route::Healthz,
        "/readyz" => Route::Readyz,
        "/metrics" => Route::Metrics,
        _ => match path.strip_prefix("/hello/") {
            Some(segment) if !segment.contains('/') => Route::Hello(segment),
            _ => Route::NotFound,
        },
    }
}

/// The largest body a request may carry: only `PUT /hello/<username>` takes one.
/// Anything larger is never read (see `front`).
pub fn body_limit(method: &str, target: &str) -> usize {
    match (method, route(target)) {
        ("PUT", Route::Hello(_)) => MAX_BODY,
        _ => 0,
    }
}

/// Which endpoints a listening socket serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// One port for everything (no `DOB_ADMIN_LISTEN`).
    All,
    /// The public port when the admin endpoints have their own: `/hello/` only.
    Public,
    /// `DOB_ADMIN_LISTEN`: `/healthz`, `/readyz`, `/metrics` only.
    Admin,
}

/// Answers one request. Returns the route label it is counted under.
pub fn handle(app: &App, request: &Request, surface: Surface) -> (RouteLabel, Reply) {
    let route = route(request.target());
    let served = match route {
        Route::Hello(_) => surface != Surface::Admin,
        Route::Healthz | Route::Readyz | Route::Metrics => surface != Surface::Public,
        Route::NotFound => true,
    };
    if !served {
        // The same answer as for a path that exists nowhere: the public port does not
        // reveal the admin endpoints.
        return not_found(surface);
    }
    match (route, request.method()) {
        (Route::Hello(_), "GET") => (RouteLabel::HelloGet, get_hello(app, request)),
        (Route::Hello(_), "PUT") => (RouteLabel::HelloPut, put_hello(app, request)),
        (Route::Hello(_), _) => (RouteLabel::Other, method_not_allowed("GET, PUT")),
        (Route::Healthz, "GET") => (
            RouteLabel::Healthz,
            Reply::json(200, r#"{"status":"ok"}"#.to_owned()),
        ),
        (Route::Readyz, "GET") => (RouteLabel::Readyz, readyz(app)),
        (Route::Metrics, "GET") => (RouteLabel::Metrics, metrics(app)),
        (Route::Healthz | Route::Readyz | Route::Metrics, _) => {
            (RouteLabel::Other, method_not_allowed("GET"))
        }
        (Route::NotFound, _) => not_found(surface),
    }
}

fn not_found(surface: Surface) -> (RouteLabel, Reply) {
    let message = match surface {
        Surface::All => "no such endpoint: use /hello/<username>, /healthz, /readyz or /metrics",
        Surface::Public => "no such endpoint: use /hello/<username>",
        Surface::Admin => "no such endpoint: use /healthz, /readyz or /metrics",
    };
    (RouteLabel::Other, Reply::error(404, message))
}

fn method_not_allowed(allow: &'static str) -> Reply {
    let message = match allow {
        "GET" => "method not allowed: use GET",
        _ => "method not allowed: use GET or PUT",
    };
    Reply::error(405, message).with_allow(allow)
}

fn username_of<'a>(request: &'a Request<'_>) -> Result<Username<'a>, ValidationError> {
    match route(request.target()) {
        Route::Hello(segment) => Username::parse(segment),
        _ => Err(ValidationError::UsernameEmpty),
    }
}

fn get_hello(app: &App, request: &Request) -> Reply {
    let username = match username_of(request) {
        Ok(username) => username,
        Err(err) => return Reply::error(400, &err.to_string()),
    };
    match app.store.get_date_of_birth(username.as_str()) {
        Ok(Some(date)) => {
            let dob = DateOfBirth::from_stored(date);
            let days = birthday::days_until_birthday(dob.date(), app.today());
            let mut body = String::with_capacity(96 + username.as_str().len());
            birthday::write_greeting_json(&mut body, username.as_str(), days);
            Reply::json(200, body)
        }
        Ok(None) => Reply::error(
            404,
            "no such user: store a date of birth first with PUT /hello/<username>",
        ),
        Err(err) => store_error(err),
    }
}

fn put_hello(app: &App, request: &Request) -> Reply {
    let username = match username_of(request) {
        Ok(username) => username,
        Err(err) => return Reply::error(400, &err.to_string()),
    };
    let Body::Complete(body) = request.body else {
        return Reply::error(413, "request body too large: at most 1024 bytes");
    };
    if let Some(content_type) = request.header("Content-Type") {
        if !is_json_media_type(content_type) {
            return Reply::error(415, "Content-Type must be application/json");
        }
    }
    let raw_date = match date_of_birth_field(body) {
        Ok(raw) => raw,
        Err(message) => return Reply::error(400, message),
    };
    let dob = match DateOfBirth::parse(&raw_date, app.today()) {
        Ok(dob) => dob,
        Err(err) => return Reply::error(400, &err.to_string()),
    };
    if let Some(fence) = &app.fence {
        if let Err(refusal) = fence.check_write(std::time::Instant::now(), app.write_hold) {
            return Reply::error(503, &refusal.to_string()).with_retry_after(READ_ONLY_RETRY_AFTER);
        }
    }
    let position = match app
        .store
        .upsert_date_of_birth(username.as_str(), dob.date())
    {
        Ok(position) => position,
        Err(err) => return store_error(err),
    };
    // The connection is back in the pool; only this request waits.
    if let Some(dr) = &app.dr_receipt {
        match dr.wait(position) {
            Receipt::Confirmed | Receipt::Alone => {}
            Receipt::TimedOut => return Reply::error(
                503,
                "the write was committed in this region, but the DR region has not confirmed it in time: its outcome is unknown; retry",
            )
            .with_retry_after(1),
        }
    }
    // The lease checked before the statement may have run out while the commit or the
    // receipt waited (a hung synchronous commit, a long write queue): a takeover may be
    // promoting the DR region now, and a 204 must not outlive the lease.
    if let Some(fence) = &app.fence {
        if fence
            .check_write(
                std::time::Instant::now(),
                crate::failover::fence::ACK_MARGIN,
            )
            .is_err()
        {
            app.late_commits.fetch_add(1, Ordering::Relaxed);
            return Reply::error(
                503,
                "the write was committed in this region, but this region's write lease ran out before it could be acknowledged: its outcome is unknown; retry",
            )
            .with_retry_after(READ_ONLY_RETRY_AFTER);
        }
    }
    Reply::empty(204)
}

fn is_json_media_type(value: &str) -> bool {
    let media = value.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = media.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || (subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json")))
}

/// Extracts `dateOfBirth` from a JSON object body, borrowing it from the body when it
/// has no escapes. Other fields are ignored. The slow path only runs for bad bodies, to
/// say precisely what is wrong.
fn date_of_birth_field(body: &[u8]) -> Result<Cow<'_, str>, &'static str> {
    #[derive(Deserialize)]
    struct PutBody<'a> {
        #[serde(rename = "dateOfBirth", borrow, default)]
        date_of_birth: Option<Cow<'a, str>>,
    }
    let missing = "body must be a JSON object with a dateOfBirth field";
    // A derived struct also deserialises from a JSON array, positionally; only an
    // object may take the fast path.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let fast = if is_object {
        serde_json::from_slice::<PutBody>(body).ok()
    } else {
        None
    };
    match fast {
        Some(PutBody {
            date_of_birth: Some(date),
        }) => Ok(date),
        Some(PutBody {
            date_of_birth: None,
        }) => Err(missing),
        None => match serde_json::from_slice::<serde_json::Value>(body) {
            Err(_) => Err("body is not valid JSON"),
            Ok(serde_json::Value::Object(fields)) if fields.contains_key("dateOfBirth") => {
                Err("dateOfBirth must be a string in YYYY-MM-DD form")
            }
            Ok(_) => Err(missing),
        },
    }
}

fn store_error(err: StoreError) -> Reply {
    match err {
        StoreError::Unavailable => {
            Reply::error(503, "the database is unavailable; retry shortly").with_retry_after(1)
        }
        StoreError::NotReady => {
            Reply::error(503, "the database is not ready yet; retry shortly").with_retry_after(1)
        }
        StoreError::OutcomeUnknown => Reply::error(
            503,
            "the write may have been committed, but the database did not finish it within its deadline: its outcome is unknown; retry",
        )
        .with_retry_after(1),
        StoreError::ReadOnly => Reply::error(
            503,
            "this region is read-only: its database is a replica; retry after failover or write to the primary region",
        )
        .with_retry_after(READ_ONLY_RETRY_AFTER),
        StoreError::Internal(err) => {
            log::error!("database query failed: {err}");
            Reply::error(500, "internal error; it has been logged")
        }
    }
}

fn readyz(app: &App) -> Reply {
    if app.is_draining() {
        return readyz_not_ready("shutting down", app.store.role());
    }
    if let Some(fence) = &app.fence {
        if !fence.has_read() {
            return readyz_not_ready("the fence record has not been read yet", app.store.role());
        }
        // A fenced region may still serve reads from a replica (the DR region before a
        // takeover), but a writable database behind a fence is an old primary that must
        // not get clients back.
        if fence.is_fenced() && app.store.role() != Role::Replica {
            return readyz_not_ready(
                "this region is fenced: another region holds writes",
                app.store.role(),
            );
        }
    }
    match app.store.check_ready() {
        Ok(role) => Reply::json(
            200,
            format!(r#"{{"status":"ready","role":"{}"}}"#, role.as_str()),
        ),
        Err(StoreError::NotReady) => {
            readyz_not_ready("database schema not ready yet", app.store.role())
        }
        Err(StoreError::Internal(err)) => {
            log::warn!("readiness query failed: {err}");
            readyz_not_ready("database query failed", app.store.role())
        }
        Err(_) => match app.store.failover_grace() {
            // A failover's leaderless window: keep this host in the load balancer, so
            // one host's loss never takes every host (and the region) out of service.
            Some(without) => Reply::json(
                200,
                format!(
                    r#"{{"status":"ready","role":"none","note":"no writable database for {:.1} s; within the failover grace"}}"#,
                    without.as_secs_f64()
                ),
            ),
            None => readyz_not_ready("database unavailable", app.store.role()),
        },
    }
}

fn readyz_not_ready(reason: &str, role: Role) -> Reply {
    Reply::json(
        503,
        format!(
            r#"{{"error":"not ready: {reason}","role":"{}"}}"#,
            role.as_str()
        ),
    )
}

fn metrics(app: &App) -> Reply {
    let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
    let front = &app.http_stats;
    let (connections, idle, max) = app.store.pool_state();
    let snapshot = DbSnapshot {
        role: app.store.role().as_str(),
        pool_connections: connections,
        pool_idle: idle,
        pool_max: max,
        schema_ready: app.store.schema_ready(),
        draining: app.is_draining(),
        fence_writable: app.fence.as_ref().is_none_or(|f| {
            f.check_write(std::time::Instant::now(), app.write_hold)
                .is_ok()
        }),
        fence_late_commits: load(&app.late_commits),
        write_deadline_cancels: app.store.write_deadline_cancels(),
        http: HttpSnapshot {
            connections_open: front.open.load(Ordering::Relaxed) as u64,
            connections_max: app.max_connections as u64,
            threads: front.threads.load(Ordering::Relaxed) as u64,
            accepted: load(&front.accepted),
            refused: load(&front.refused),
            evicted: load(&front.evicted),
            accept_errors: load(&front.accept_errors),
            panics: load(&front.panics),
            timeouts: load(&front.timeouts),
            breaker_open: u64::from(app.store.breaker_open()),
        },
        dr: app
            .dr_receipt
            .as_ref()
            .map(|dr| dr.stats(std::time::Instant::now())),
    };
    let mut reply = Reply::json(200, app.metrics.render(&snapshot));
    reply.content_type = Some(PROMETHEUS_TEXT);
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_the_raw_path() {
        assert_eq!(route("/hello/Bob"), Route::Hello("Bob"));
        assert_eq!(route("/hello/Bob?x=1"), Route::Hello("Bob"));
        assert_eq!(route("/hello/%41"), Route::Hello("%41"));
        assert_eq!(route("/hello/"), Route::Hello(""));
        assert_eq!(route("/hello/a/b"), Route::NotFound);
        assert_eq!(route("/hello"), Route::NotFound);
        assert_eq!(route("/healthz"), Route::Healthz);
        assert_eq!(route("/readyz?verbose"), Route::Readyz);
        assert_eq!(route("/metrics"), Route::Metrics);
        assert_eq!(route("/"), Route::NotFound);
    }

    #[test]
    fn json_media_types_are_recognised() {
        for ok in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
            "",
            "application/+json",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }

    #[test]
    fn the_date_field_is_extracted_and_extra_fields_are_ignored() {
        assert_eq!(
            date_of_birth_field(br#"{"dateOfBirth":"1990-01-02"}"#).unwrap(),
            "1990-01-02"
        );
        assert_eq!(
            date_of_birth_field(br#"{"name":"x","dateOfBirth":"1990-01-02","n":[1,{}]}"#).unwrap(),
            "1990-01-02"
        );
        assert_eq!(
            date_of_birth_field(br#"{"dateOfBirth":"\u0031990-01-02"}"#).unwrap(),
            "1990-01-02"
        );
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let missing = "body must be a JSON object with a dateOfBirth field";
        assert_eq!(
            date_of_birth_field(b"").unwrap_err(),
            "body is not valid JSON"
        );
        assert_eq!(
            date_of_birth_field(b"{").unwrap_err(),
            "body is not valid JSON"
        );
        assert_eq!(date_of_birth_field(b"[]").unwrap_err(), missing);
        assert_eq!(
            date_of_birth_field(br#"["1990-01-02"]"#).unwrap_err(),
            missing
        );
        assert_eq!(date_of_birth_field(b"\"1990-01-02\"").unwrap_err(), missing);
        assert_eq!(date_of_birth_field(b"{}").unwrap_err(), missing);
        assert_eq!(
            date_of_birth_field(br#"{"dateOfBirth":null}"#).unwrap_err(),
            missing
        );
        assert_eq!(
            date_of_birth_field(br#"{"dateOfBirth":19900102}"#).unwrap_err(),
            "dateOfBirth must be a string in YYYY-MM-DD form"
        );
    }

    #[test]
    fn error_bodies_are_json() {
        let reply = Reply::error(400, "a \"quoted\" reason");
        assert_eq!(reply.content_type, Some(JSON));
        let value: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        assert_eq!(value["error"], "a \"quoted\" reason");
    }
}
