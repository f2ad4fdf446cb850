//! The HTTP API that `dob-api` runs: the listening socket, the HTTP/1.1 front and its
//! wire format, routing and handlers, its PostgreSQL pool and queries with request
//! coalescing and a circuit breaker, metrics, and the server that ties them together
//! with graceful shutdown.
//!
//! Migrations and TLS to PostgreSQL are [`crate::db`]'s; the write fence the API obeys
//! is [`crate::failover::fence`].

// A circuit breaker that fails database requests fast while it is unreachable.
pub mod breaker;
// Concurrent GET lookups and PUTs coalesced into one statement under load.
pub mod coalesce;
// Client-side statement deadlines: a write past its own is cancelled, outcome unknown.
pub mod deadline;
// The DR region's receipt (its flush of the commit) before a PUT is answered 204.
pub mod dr_receipt;
// The HTTP/1.1 front: connections, their limits and deadlines, requests in order.
pub mod front;
// Request routing and handlers: from a request and the app state to a response.
pub mod http;
// The listening socket: systemd socket activation or a fresh bind.
pub mod listener;
// Prometheus counters and histograms, rendered as text.
pub mod metrics;
// The API server: the front serving the handlers, and graceful shutdown.
pub mod server;
// The PostgreSQL connection pool and the two queries the API needs.
pub mod store;
// HTTP/1.1 bytes: bounded head parsing, chunked decoding, response writing.
pub mod wire;
