//! The API server: the HTTP front (`front`) serving the handlers (`http`), with the
//! limits from configuration, and graceful shutdown. Building (bind, learn the port) is
//! separate from running, so tests can bind `127.0.0.1:0`.
//!
//! Shutdown, in order: readiness turns 503 (`draining`), requests keep being served for
//! the drain period so the load balancer moves traffic away, accepting stops (the
//! listening socket stays open for the next process under socket activation), then
//! kept-alive connections are closed and requests in progress finish.
//!
//! With `DOB_ADMIN_LISTEN`, `/metrics`, `/healthz` and `/readyz` are served on a second
//! socket (a small front of its own) and answer 404 on the public one; it stops last,
//! so the load balancer's health checks see the drain's 503 to the end.

use crate::api::front::{self, Front, Request};
use crate::api::http::{self, App, Surface};
use crate::api::listener;
use crate::api::metrics::{Metrics, RouteLabel};
use crate::api::store::Store;
use crate::api::wire::{self, Reply};
use crate::config::ApiConfig;
use crate::{Error, Result};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// After accepting stops: how long connections already accepted get to deliver the
/// request they are sending before they are closed.
const LINGER: Duration = Duration::from_millis(250);

/// Descriptors kept back from the connection cap for everything else the process opens
/// (the pool's connections on top of this, migrations, logs, the listener).
const RESERVED_FDS: usize = 32;

/// How often the store checks which database the configured name means (a restore may
/// have replaced it; see `store`).
const DATABASE_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Connections open at once on the admin port: health checks and a scraper, never
/// clients. Counted in the reserved descriptors above.
const ADMIN_MAX_CONNECTIONS: usize = 16;

/// The admin endpoints' own socket and front settings.
struct Admin {
    listener: TcpListener,
    local_addr: SocketAddr,
    front_config: front::Config,
}

pub struct Server {
    listener: TcpListener,
    app: Arc<App>,
    front_config: front::Config,
    local_addr: SocketAddr,
    source: listener::Source,
    admin: Option<Admin>,
    drain: Duration,
    busy_grace: Duration,
    shutdown: ShutdownHandle,
}

/// Asks a running server to shut down gracefully. Cloneable; any thread may call it.
#[derive(Clone, Default)]
pub struct ShutdownHandle(Arc<(Mutex<bool>, Condvar)>);

impl ShutdownHandle {
    pub fn trigger(&self) {
        let (requested, wake) = &*self.0;
        *requested.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
    }

    fn wait(&self) {
        let (requested, wake) = &*self.0;
        let mut guard = requested.lock().unwrap_or_else(|e| e.into_inner());
        while !*guard {
            guard = wake.wait(guard).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The connection cap that fits in the open-files limit: each connection is one
/// descriptor, and running out of descriptors is what the cap exists to prevent.
pub fn connection_cap(configured: usize, fd_limit: Option<u64>, pool_size: u32) -> usize {
    let Some(limit) = fd_limit else {
        return configured;
    };
    let reserved = RESERVED_FDS as u64 + u64::from(pool_size);
    let fits = usize::try_from(limit.saturating_sub(reserved)).unwrap_or(usize::MAX);
    configured.min(fits).max(1)
}

fn open_files_limit() -> Option<u64> {
    // SAFETY: getrlimit on a zeroed struct it fills in.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        (libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0).then_some(limit.rlim_cur)
    }
}

impl Server {
    /// Opens the listening socket (systemd's or a fresh bind) and the (lazy) pool.
    /// Does not touch the database: the server starts while it is down.
    pub fn build(config: &ApiConfig) -> Result<Server> {
        let (listener, source) = listener::open(config.listen)?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        let max_connections =
            connection_cap(config.max_connections, open_files_limit(), config.pool_size);
        if max_connections < config.max_connections {
            log::warn!(
                "DOB_MAX_CONNECTIONS={} does not fit the open-files limit; serving at most {max_connections} connections",
                config.max_connections
            );
        }
        let fence = match &config.fence {
            Some(fence_config) => {
                let state = Arc::new(crate::failover::fence::FenceState::new(
                    fence_config.lease,
                    std::time::Instant::now(),
                ));
                crate::failover::fence::spawn_watcher(fence_config.clone(), Arc::clone(&state))?;
                log::info!(
                    "fence: region {}, home region {}, lease {:?}, buckets {}",
                    fence_config.region,
                    fence_config.home_region,
                    fence_config.lease,
                    fence_config
                        .buckets
                        .iter()
                        .map(|b| format!("{}@{}", b.bucket, b.region))
                        .collect::<Vec<_>>()
                        .join(",")
                );
                Some(state)
            }
            None => None,
        };
        let dr_receipt = config.dr_receipt.clone().map(|dr| {
            log::info!(
                "dr receipt: a PUT is answered 204 once slot {} has flushed it (at most {:?}); {}",
                dr.slot,
                dr.timeout,
                if fence.is_some() {
                    format!(
                        "detaches after {:?} without a confirmation",
                        dr.detach_after
                    )
                } else {
                    "never detaches (no fence configured)".to_owned()
                }
            );
            let via = fence
                .as_ref()
                .zip(config.fence.as_ref())
                .map(|(state, fence_config)| crate::api::dr_receipt::DetachVia {
                    state: Arc::clone(state),
                    config: fence_config.clone(),
                });
            Arc::new(crate::api::dr_receipt::DrReceipt::new(dr, via))
        });
        let app = App {
            store: Store::new(config)?,
            metrics: Metrics::default(),
            timezone: config.timezone.clone(),
            draining: AtomicBool::new(false),
            http_stats: Arc::new(front::Stats::default()),
            max_connections,
            write_hold: config.pool_timeout
                + crate::api::store::write_deadline(config.statement_timeout),
            late_commits: std::sync::atomic::AtomicU64::new(0),
            dr_receipt,
            fence,
        };
        let front_config = front::Config {
            max_connections,
            min_threads: config.workers.min(max_connections),
            head_timeout: config.client_timeout,
            body_timeout: config.client_timeout,
            idle_timeout: config.idle_timeout,
            write_timeout: config.client_timeout,
            limits: wire::Limits {
                max_head_bytes: config.max_header_bytes,
                max_headers: config.max_headers,
            },
            max_body: http::MAX_BODY,
        };
        let admin = match config.admin_listen {
            None => None,
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .map_err(|e| Error::io(format!("binding DOB_ADMIN_LISTEN {address}"), e))?;
                let local_addr = listener
                    .local_addr()
                    .map_err(|e| Error::io("reading the admin listening address", e))?;
                Some(Admin {
                    listener,
                    local_addr,
                    front_config: front::Config {
                        max_connections: ADMIN_MAX_CONNECTIONS,
                        min_threads: 1,
                        max_body: 0,
                        ..front_config
                    },
                })
            }
        };
        Ok(Server {
            listener,
            app: Arc::new(app),
            front_config,
            local_addr,
            source,
            admin,
            drain: config.drain,
            // A request being handled waits at most for a pooled connection, then for
            // its statement (a write: its client-side deadline).
            busy_grace: config.pool_timeout
                + crate::api::store::write_deadline(config.statement_timeout)
                + Duration::from_secs(1),
            shutdown: ShutdownHandle::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where the admin endpoints are served, when they have a socket of their own.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|admin| admin.local_addr)
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until the shutdown handle is triggered, then drains and returns.
    pub fn run(self) -> Result<()> {
        let limits = &self.front_config;
        log::info!(
            "listening on http://{} ({}); at most {} connections, {} threads kept ready",
            self.local_addr,
            match self.source {
                listener::Source::Systemd => "socket from systemd",
                listener::Source::Bound => "bound",
            },
            limits.max_connections,
            limits.min_threads,
        );
        let stop = Arc::new(AtomicBool::new(false));
        {
            // Detached: it stops on its own once `stop` is set, and holds nothing that
            // must be released before exit.
            let app = Arc::clone(&self.app);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("migrations".into())
                .spawn(move || app.store.migrate_until_done(&stop))
                .map_err(|e| Error::io("starting the migration thread", e))?;
        }
        {
            // Detached like the migrations: it stops on its own once `stop` is set.
            let app = Arc::clone(&self.app);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("database-watch".into())
                .spawn(move || app.store.watch_database(&stop, DATABASE_WATCH_INTERVAL))
                .map_err(|e| Error::io("starting the database watch thread", e))?;
        }
        if let Some(dr) = &self.app.dr_receipt {
            // Detached like the others: it stops on its own once `stop` is set.
            let dr = Arc::clone(dr);
            let app = Arc::clone(&self.app);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("dr-receipt".into())
                .spawn(move || dr.watch(&stop, || app.store.connect_direct()))
                .map_err(|e| Error::io("starting the DR receipt thread", e))?;
        }
        let admin_front = match self.admin {
            None => None,
            Some(admin) => {
                log::info!(
                    "admin endpoints (/metrics, /healthz, /readyz) on http://{}",
                    admin.local_addr
                );
                Some(Front::start(
                    admin.listener,
                    admin.front_config,
                    ApiHandler {
                        app: Arc::clone(&self.app),
                        surface: Surface::Admin,
                    },
                    // Its own counters: /metrics reports the public front's.
                    Arc::new(front::Stats::default()),
                )?)
            }
        };
        let front = Front::start(
            self.listener,
            self.front_config,
            ApiHandler {
                app: Arc::clone(&self.app),
                surface: match admin_front {
                    Some(_) => Surface::Public,
                    None => Surface::All,
                },
            },
            Arc::clone(&self.app.http_stats),
        )?;

        self.shutdown.wait();
        self.app.draining.store(true, Ordering::Relaxed);
        log::info!("shutting down: {}", drain_message(self.drain));
        thread::sleep(self.drain);
        // No connection may be accepted that will not be answered: stop accepting first
        // (under socket activation, later connections wait in systemd's backlog for the
        // next process), give connections already accepted a moment to deliver a request
        // they are sending, then close the rest once their requests are answered.
        front.stop_accepting();
        front.finish(LINGER, self.busy_grace);
        if let Some(admin_front) = admin_front {
            admin_front.stop_accepting();
            admin_front.finish(LINGER, LINGER);
        }
        stop.store(true, Ordering::Relaxed);
        log::info!("all connections closed");
        Ok(())
    }
}

/// The API's handlers behind a front, timed, counted and logged.
struct ApiHandler {
    app: Arc<App>,
    surface: Surface,
}

impl front::Handler for ApiHandler {
    fn body_limit(&self, method: &str, target: &str) -> usize {
        http::body_limit(method, target)
    }

    fn handle(&self, request: &Request<'_>) -> Reply {
        let app = &*self.app;
        let started = Instant::now();
        // A panic unwinds to the front, which answers 500 and counts it.
        let (route, reply) = http::handle(app, request, self.surface);
        let elapsed = started.elapsed();
        app.metrics.record(route, reply.status, elapsed);
        // Never the body: it is personal data. Nor, at info level, the target: it names
        // the user (debug logging, asked for while investigating, keeps it).
        if log::log_enabled!(log::Level::Debug) {
            log::debug!(
                "{} {} {} {}us",
                request.method(),
                request.target().escape_debug(),
                reply.status,
                elapsed.as_micros()
            );
        } else {
            log::info!(
                "{} {} {} {}us",
                request.method(),
                route.path(),
                reply.status,
                elapsed.as_micros()
            );
        }
        reply
    }

    fn refused(&self, status: u16) {
        self.app
            .metrics
            .record(RouteLabel::Other, status, Duration::ZERO);
        log::info!("request refused with {status}");
    }
}

/// What the shutdown log says about the drain period (`DOB_DRAIN_SECONDS`).
fn drain_message(drain: Duration) -> String {
    if drain.is_zero() {
        "no drain period, readiness now 503 and accepting stops".to_owned()
    } else {
        format!(
            "readiness now 503, serving for {} s more",
            drain.as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shutdown_log_names_the_drain_period_or_its_absence() {
        assert_eq!(
            drain_message(Duration::ZERO),
            "no drain period, readiness now 503 and accepting stops"
        );
        assert_eq!(
            drain_message(Duration::from_secs(5)),
            "readiness now 503, serving for 5 s more"
        );
    }

    #[test]
    fn the_connection_cap_fits_the_open_files_limit() {
        assert_eq!(connection_cap(1024, Some(65_536), 8), 1024);
        assert_eq!(connection_cap(1024, Some(512), 4), 512 - 32 - 4);
        assert_eq!(connection_cap(1024, None, 4), 1024);
        assert_eq!(connection_cap(1024, Some(10), 4), 1, "never zero");
    }
}
