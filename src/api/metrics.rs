//! Request metrics, kept in atomics so recording never takes a lock or allocates, and
//! rendered in the Prometheus text exposition format for `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The routes requests are counted under (a bounded label set, not raw paths).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteLabel {
    HelloGet,
    HelloPut,
    Healthz,
    Readyz,
    Metrics,
    Other,
}

impl RouteLabel {
    const ALL: [RouteLabel; 6] = [
        RouteLabel::HelloGet,
        RouteLabel::HelloPut,
        RouteLabel::Healthz,
        RouteLabel::Readyz,
        RouteLabel::Metrics,
        RouteLabel::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteLabel::HelloGet => "GET /hello",
            RouteLabel::HelloPut => "PUT /hello",
            RouteLabel::Healthz => "/healthz",
            RouteLabel::Readyz => "/readyz",
            RouteLabel::Metrics => "/metrics",
            RouteLabel::Other => "other",
        }
    }

    /// The route's path as logged at info level: the username replaced by a placeholder,
    /// so request logs hold no personal data unless debug logging is asked for.
    pub fn path(self) -> &'static str {
        match self {
            RouteLabel::HelloGet | RouteLabel::HelloPut => "/hello/<username>",
            RouteLabel::Healthz => "/healthz",
            RouteLabel::Readyz => "/readyz",
            RouteLabel::Metrics => "/metrics",
            RouteLabel::Other => "<other>",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Status codes the server answers with; anything else is counted as "other".
const STATUSES: [u16; 16] = [
    200, 204, 400, 404, 405, 408, 413, 414, 415, 417, 431, 500, 501, 503, 505, 0,
];

fn status_index(status: u16) -> usize {
    STATUSES[..STATUSES.len() - 1]
        .iter()
        .position(|&s| s == status)
        .unwrap_or(STATUSES.len() - 1)
}

/// Upper bounds of the latency buckets, in microseconds (100 µs to 5 s).
const BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
    2_500_000, 5_000_000,
];

#[derive(Default)]
struct Histogram {
    /// Per-bucket counts (not cumulative); the last slot is +Inf.
    buckets: [AtomicU64; BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

#[derive(Default)]
pub struct Metrics {
    requests: [[AtomicU64; STATUSES.len()]; RouteLabel::ALL.len()],
    latency: [Histogram; RouteLabel::ALL.len()],
}

/// Database-side values sampled at render time.
pub struct DbSnapshot {
    pub role: &'static str,
    pub pool_connections: u32,
    pub pool_idle: u32,
    pub pool_max: u32,
    pub schema_ready: bool,
    pub draining: bool,
    /// 1 while this host may acknowledge writes under the cross-region fence (always 1
    /// with fencing off); 0 when fenced or without a current lease.
    pub fence_writable: bool,
    /// PUTs whose lease ran out between the check before the statement and the answer.
    pub fence_late_commits: u64,
    /// Writes cancelled at their client-side deadline (outcome unknown).
    pub write_deadline_cancels: u64,
    pub http: HttpSnapshot,
    /// The DR region's receipt, when `DOB_DR_RECEIPT_SLOT` is set.
    pub dr: Option<crate::api::dr_receipt::ReceiptStats>,
}

/// The HTTP front's connection counters, sampled at render time.
#[derive(Default)]
pub struct HttpSnapshot {
    pub connections_open: u64,
    pub connections_max: u64,
    pub threads: u64,
    pub accepted: u64,
    pub refused: u64,
    pub evicted: u64,
    pub accept_errors: u64,
    pub panics: u64,
    pub timeouts: u64,
    /// 1 while the database circuit breaker fails requests fast.
    pub breaker_open: u64,
}

impl Metrics {
    pub fn record(&self, route: RouteLabel, status: u16, elapsed: Duration) {
        let r = route.index();
        self.requests[r][status_index(status)].fetch_add(1, Ordering::Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let hist = &self.latency[r];
        let bucket = BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(BUCKETS_US.len());
        hist.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        hist.sum_us.fetch_add(us, Ordering::Relaxed);
        hist.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self, db: &DbSnapshot) -> String {
        let mut out = String::with_capacity(8 * 1024);
        out.push_str(
            "# HELP dob_http_requests_total HTTP requests answered, by route and status.\n",
        );
        out.push_str("# TYPE dob_http_requests_total counter\n");
        for route in RouteLabel::ALL {
            for (i, status) in STATUSES.iter().enumerate() {
                let n = self.requests[route.index()][i].load(Ordering::Relaxed);
                if n == 0 {
                    continue;
                }
                let status = if *status == 0 {
                    "other".to_owned()
                } else {
                    status.to_string()
                };
                let _ = writeln!(
                    out,
                    "dob_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                    route.as_str()
                );
            }
        }
        out.push_str("# HELP dob_http_request_duration_seconds Time from request received to response written.\n");
        out.push_str("# TYPE dob_http_request_duration_seconds histogram\n");
        for route in RouteLabel::ALL {
            let hist = &self.latency[route.index()];
            let count = hist.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let label = route.as_str();
            let mut cumulative = 0;
            for (i, bound) in BUCKETS_US.iter().enumerate() {
                cumulative += hist.buckets[i].load(Ordering::Relaxed);
                let le = *bound as f64 / 1e6;
                let _ = writeln!(
                    out,
                    "dob_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += hist.buckets[BUCKETS_US.len()].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "dob_http_request_duration_seconds_bucket{{route=\"{label}\",le=\"+Inf\"}} {cumulative}"
            );
            let sum = hist.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(
                out,
                "dob_http_request_duration_seconds_sum{{route=\"{label}\"}} {sum}"
            );
            let _ = writeln!(
                out,
                "dob_http_request_duration_seconds_count{{route=\"{label}\"}} {count}"
            );
        }
        let gauges: [(&str, &str, u64); 6] = [
            (
                "dob_db_pool_connections",
                "Open pooled database connections.",
                db.pool_connections.into(),
            ),
            (
                "dob_db_pool_idle_connections",
                "Idle pooled database connections.",
                db.pool_idle.into(),
            ),
            (
                "dob_db_pool_max_connections",
                "Configured pool size.",
                db.pool_max.into(),
            ),
            (
                "dob_db_schema_ready",
                "1 once migrations are applied (or skipped on a replica).",
                db.schema_ready.into(),
            ),
            (
                "dob_draining",
                "1 while shutting down (readiness reports 503).",
                db.draining.into(),
            ),
            (
                "dob_fence_writable",
                "1 while the cross-region fence lets this host acknowledge writes.",
                db.fence_writable.into(),
            ),
        ];
        for (name, help, value) in gauges {
            write_single(&mut out, "gauge", name, help, value);
        }
        write_single(
            &mut out,
            "counter",
            "dob_fence_late_commits_total",
            "PUTs committed after their write lease ran out, answered 503 (outcome unknown).",
            db.fence_late_commits,
        );
        write_single(
            &mut out,
            "counter",
            "dob_db_write_deadline_cancels_total",
            "Writes (batches) cancelled at their client-side deadline, commit included; their PUTs answered 503 (outcome unknown).",
            db.write_deadline_cancels,
        );
        let http = &db.http;
        let counters: [(&str, &str, u64); 6] = [
            (
                "dob_http_connections_accepted_total",
                "Connections accepted.",
                http.accepted,
            ),
            (
                "dob_http_connections_refused_total",
                "Connections answered 503 and closed at the connection cap.",
                http.refused,
            ),
            (
                "dob_http_connections_evicted_total",
                "Waiting connections closed to make room (idle keep-alive first).",
                http.evicted,
            ),
            (
                "dob_http_accept_errors_total",
                "accept() failures survived (out of descriptors, aborted connections).",
                http.accept_errors,
            ),
            (
                "dob_http_panics_total",
                "Panics while serving a request; each cost one request, never a thread.",
                http.panics,
            ),
            (
                "dob_http_client_timeouts_total",
                "Request heads or bodies not received before their deadline.",
                http.timeouts,
            ),
        ];
        for (name, help, value) in counters {
            write_single(&mut out, "counter", name, help, value);
        }
        let gauges: [(&str, &str, u64); 4] = [
            (
                "dob_http_connections_open",
                "Client connections open now.",
                http.connections_open,
            ),
            (
                "dob_http_connections_max",
                "The connection cap in force.",
                http.connections_max,
            ),
            (
                "dob_http_threads",
                "Connection threads alive (busy or ready).",
                http.threads,
            ),
            (
                "dob_db_breaker_open",
                "1 while requests fail fast because the database was found unreachable.",
                http.breaker_open,
            ),
        ];
        for (name, help, value) in gauges {
            write_single(&mut out, "gauge", name, help, value);
        }
        if let Some(dr) = &db.dr {
            let counters: [(&str, &str, u64); 7] = [
                (
                    "dob_dr_receipt_confirmed_total",
                    "Committed PUTs the DR region confirmed (flushed) before their 204.",
                    dr.confirmed,
                ),
                (
                    "dob_dr_receipt_alone_total",
                    "Committed PUTs answered 204 without the DR region, while detached.",
                    dr.alone,
                ),
                (
                    "dob_dr_detaches_total",
                    "Times this host recorded the region detached from the DR region.",
                    dr.detaches,
                ),
                (
                    "dob_dr_reattaches_total",
                    "Times this host recorded the region attached again.",
                    dr.reattaches,
                ),
                (
                    "dob_dr_receipt_timeouts_total",
                    "Committed PUTs answered 503 because the DR region did not confirm them in time.",
                    dr.timed_out,
                ),
                (
                    "dob_dr_receipt_polls_total",
                    "Polls of the leader's WAL position and the DR slot's flush position.",
                    dr.polls,
                ),
                (
                    "dob_dr_receipt_poll_errors_total",
                    "Polls that failed (no leader, a broken connection).",
                    dr.poll_errors,
                ),
            ];
            for (name, help, value) in counters {
                write_single(&mut out, "counter", name, help, value);
            }
            write_single(
                &mut out,
                "gauge",
                "dob_dr_detached",
                "1 while this host may acknowledge writes without the DR region (detached).",
                dr.detached.into(),
            );
            let _ = writeln!(
                out,
                "# HELP dob_dr_unconfirmed_seconds How long the oldest WAL position waiting for the DR region's flush has waited (0: none).\n# TYPE dob_dr_unconfirmed_seconds gauge\ndob_dr_unconfirmed_seconds {:.3}",
                dr.unconfirmed_s
            );
        }
        out.push_str("# HELP dob_db_role Role of the database this process talks to (1 for the current one).\n");
        out.push_str("# TYPE dob_db_role gauge\n");
        for role in ["primary", "replica", "unknown"] {
            let _ = writeln!(
                out,
                "dob_db_role{{role=\"{role}\"}} {}",
                u8::from(role == db.role)
            );
        }
        out
    }
}

/// One unlabelled sample with its HELP and TYPE lines.
fn write_single(out: &mut String, kind: &str, name: &str, help: &str, value: u64) {
    // Writing into a String cannot fail.
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot() -> DbSnapshot {
        DbSnapshot {
            role: "primary",
            pool_connections: 4,
            pool_idle: 3,
            pool_max: 8,
            schema_ready: true,
            draining: false,
            fence_writable: true,
            fence_late_commits: 0,
            write_deadline_cancels: 0,
            http: HttpSnapshot {
                panics: 2,
                ..HttpSnapshot::default()
            },
            dr: None,
        }
    }

    #[test]
    fn requests_are_counted_by_route_and_status() {
        let m = Metrics::default();
        m.record(RouteLabel::HelloGet, 200, Duration::from_micros(300));
        m.record(RouteLabel::HelloGet, 200, Duration::from_micros(300));
        m.record(RouteLabel::HelloPut, 418, Duration::from_micros(300));
        let text = m.render(&snapshot());
        assert!(
            text.contains("dob_http_requests_total{route=\"GET /hello\",status=\"200\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("dob_http_requests_total{route=\"PUT /hello\",status=\"other\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_in_inf() {
        let m = Metrics::default();
        m.record(RouteLabel::Healthz, 200, Duration::from_micros(90));
        m.record(RouteLabel::Healthz, 200, Duration::from_millis(3));
        m.record(RouteLabel::Healthz, 200, Duration::from_secs(60));
        let text = m.render(&snapshot());
        assert!(
            text.contains("route=\"/healthz\",le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("route=\"/healthz\",le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("route=\"/healthz\",le=\"5\"} 2\n"), "{text}");
        assert!(
            text.contains("route=\"/healthz\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("dob_http_request_duration_seconds_count{route=\"/healthz\"} 3\n"));
    }

    #[test]
    fn the_database_role_is_one_hot() {
        let text = Metrics::default().render(&snapshot());
        assert!(text.contains("dob_db_role{role=\"primary\"} 1\n"));
        assert!(text.contains("dob_db_role{role=\"replica\"} 0\n"));
        assert!(text.contains("dob_db_pool_max_connections 8\n"));
        assert!(text.contains("dob_http_panics_total 2\n"), "{text}");
    }
}
