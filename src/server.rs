//! The HTTP server: N worker threads share one `tiny_http::Server`, each looping on
//! `recv`. Building (bind, learn the port) is separate from running, so tests can bind
//! `127.0.0.1:0`.
//!
//! Shutdown, in order: readiness turns 503 (`draining`), requests keep being served for
//! the drain period so the load balancer moves traffic away, accepting stops (the
//! listening socket stays open for the next process under socket activation), then
//! workers finish the request in hand and whatever is already queued, and exit.

use crate::config::ApiConfig;
use crate::http::{self, App, Reply};
use crate::listener;
use crate::metrics::{Metrics, RouteLabel};
use crate::store::Store;
use crate::{Error, Result};
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use tiny_http::{Header, Request, Response};

/// How often an idle worker checks whether it should stop.
const WORKER_POLL: Duration = Duration::from_millis(100);

/// After accepting stops: how long connections already accepted get to deliver the
/// request they are sending before workers stop taking requests.
const LINGER: Duration = Duration::from_millis(250);

pub struct Server {
    http: Arc<tiny_http::Server>,
    app: Arc<App>,
    local_addr: SocketAddr,
    source: listener::Source,
    workers: usize,
    drain: Duration,
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

impl Server {
    /// Opens the listening socket (systemd's or a fresh bind) and the (lazy) pool.
    /// Does not touch the database: the server starts while it is down.
    pub fn build(config: &ApiConfig) -> Result<Server> {
        let (tcp, source) = listener::open(config.listen)?;
        let local_addr = tcp
            .local_addr()
            .map_err(|e| Error::io("reading the listening address", e))?;
        let http = tiny_http::Server::from_listener_with_timeouts(
            tcp,
            None,
            Some(config.client_timeout),
            Some(config.client_timeout),
        )
        .map_err(|e| Error::with_source("starting the HTTP server", e))?;
        let app = App {
            store: Store::new(config)?,
            metrics: Metrics::default(),
            timezone: config.timezone.clone(),
            draining: AtomicBool::new(false),
        };
        Ok(Server {
            http: Arc::new(http),
            app: Arc::new(app),
            local_addr,
            source,
            workers: config.workers,
            drain: config.drain,
            shutdown: ShutdownHandle::default(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.shutdown.clone()
    }

    /// Serves until the shutdown handle is triggered, then drains and returns.
    pub fn run(self) -> Result<()> {
        log::info!(
            "listening on http://{} ({}), {} workers",
            self.local_addr,
            match self.source {
                listener::Source::Systemd => "socket from systemd",
                listener::Source::Bound => "bound",
            },
            self.workers
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
        let mut workers = Vec::with_capacity(self.workers);
        for i in 0..self.workers {
            let (http, app, stop) = (
                Arc::clone(&self.http),
                Arc::clone(&self.app),
                Arc::clone(&stop),
            );
            let worker = thread::Builder::new()
                .name(format!("worker-{i}"))
                .spawn(move || worker_loop(&http, &app, &stop))
                .map_err(|e| Error::io("starting a worker thread", e))?;
            workers.push(worker);
        }

        self.shutdown.wait();
        self.app.draining.store(true, Ordering::Relaxed);
        log::info!(
            "shutting down: readiness now 503, serving for {:?} more",
            self.drain
        );
        thread::sleep(self.drain);
        // No connection may be accepted that will not be answered: stop accepting first
        // (under socket activation, later connections wait in systemd's backlog for the
        // next process), give connections already accepted a moment to deliver a request
        // they are sending, then let the workers empty the queue and exit.
        self.http.stop_accepting();
        thread::sleep(LINGER);
        stop.store(true, Ordering::Relaxed);
        for worker in workers {
            let _ = worker.join();
        }
        log::info!("all workers stopped");
        Ok(())
    }
}

fn worker_loop(http: &tiny_http::Server, app: &App, stop: &AtomicBool) {
    loop {
        match http.recv_timeout(WORKER_POLL) {
            Ok(Some(request)) => serve(app, request),
            // Stop only when the queue is empty: queued requests are answered first.
            Ok(None) if stop.load(Ordering::Relaxed) => return,
            Ok(None) => {}
            Err(err) => {
                log::error!("accepting connections failed: {err}");
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                thread::sleep(WORKER_POLL);
            }
        }
    }
}

fn serve(app: &App, mut request: Request) {
    let started = Instant::now();
    let (route, reply) = match catch_unwind(AssertUnwindSafe(|| http::handle(app, &mut request))) {
        Ok(answer) => answer,
        // The panic message went to stderr through the default hook.
        Err(_) => (
            RouteLabel::Other,
            Reply::error(500, "internal error; it has been logged"),
        ),
    };
    let status = reply.status;
    let elapsed = started.elapsed();
    app.metrics.record(route, status, elapsed);
    // Never the body: it is personal data.
    log::info!(
        "{} {} {} {}us",
        request.method(),
        request.url().escape_debug(),
        status,
        elapsed.as_micros()
    );
    if let Err(err) = request.respond(into_response(reply)) {
        log::debug!("writing the response failed (client gone?): {err}");
    }
}

fn into_response(reply: Reply) -> Response<std::io::Cursor<Vec<u8>>> {
    let mut response = Response::from_data(reply.body).with_status_code(reply.status);
    if let Some(content_type) = reply.content_type {
        response.add_header(header("Content-Type", content_type));
    }
    if let Some(allow) = reply.allow {
        response.add_header(header("Allow", allow));
    }
    if let Some(seconds) = reply.retry_after {
        response.add_header(header("Retry-After", &seconds.to_string()));
    }
    response
}

fn header(name: &str, value: &str) -> Header {
    // Names and values here are ASCII constants or digits, which always convert.
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}
