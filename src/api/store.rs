//! The API's PostgreSQL side: a pool of connections and the two queries it needs.
//!
//! The pool hands out [`Conn`]s, which remember whether their server is a replica and
//! keep their prepared statements. A connection is discarded, never reused, when it
//! fails at the connection level or reports a read-only transaction on a server it
//! believed writable: with a multi-host `target_session_attrs=read-write` URL the next
//! connection then goes to whichever host is the primary now, which is how the API
//! follows a promotion without a restart.
//!
//! Every wait is bounded: connecting (`connect_timeout`), waiting for a pooled
//! connection (`pool_timeout`, which also bounds a request's wait in the coalescing
//! queue), unacknowledged writes to a dead host (`tcp_user_timeout`) and statements
//! (`statement_timeout`; for a write, commit included, also a client-side deadline just
//! past it, [`crate::api::deadline`], whose cancelled writes answer "outcome unknown"
//! and lose their connection). So while the database is
//! down, requests fail fast and the pool reconnects by itself when it returns. Faster
//! still: once a request finds the database unreachable, a circuit breaker
//! ([`crate::api::breaker`]) fails requests at once for a cooldown, letting one through at a
//! time to probe, so an outage costs milliseconds per request, not a pool timeout each.
//!
//! Connections use TLS as the URL's `sslmode` and [`crate::db::dbtls`] say.
//!
//! A database replaced by name (a restore or point-in-time recovery renames the live
//! database away and a verified copy in) keeps its sessions: the primary's are closed by
//! the restore, but a replica replays the rename without closing any, and a connection
//! there would go on reading, and after a promotion writing, the renamed copy. So every
//! connection remembers the OID of the database it reached, a watcher reads once a
//! second which OID the configured name has now (`pg_database` is shared by the whole
//! cluster, so any connection can ask), and a connection to any other OID is discarded
//! when it is next checked out.

use crate::api::breaker::{Admission, Breaker};
use crate::api::coalesce::Coalescer;
use crate::api::deadline::Deadlines;
use crate::api::dr_receipt::{position_of, WalPosition, POSITION_SQL};
use crate::config::ApiConfig;
use crate::db::migrate;
use crate::{Error, Result};
use jiff::civil::Date;
use postgres::error::SqlState;
use postgres::{Client, Statement};
use r2d2_postgres::PostgresConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

const GET_SQL: &str = "SELECT date_of_birth FROM users WHERE username = $1";
const GET_MANY_SQL: &str = "SELECT username, date_of_birth FROM users WHERE username = ANY($1)";
const UPSERT_SQL: &str = "INSERT INTO users (username, date_of_birth) VALUES ($1, $2) \
     ON CONFLICT (username) DO UPDATE SET date_of_birth = EXCLUDED.date_of_birth, updated_at = now()";
/// Concurrent PUTs as one statement, one transaction (see `coalesce`). The arrays hold
/// each username once (the last write of the batch for it, in arrival order): ON
/// CONFLICT cannot update one row twice in a statement.
const UPSERT_MANY_SQL: &str = "INSERT INTO users (username, date_of_birth) \
     SELECT * FROM unnest($1::text[], $2::date[]) \
     ON CONFLICT (username) DO UPDATE SET date_of_birth = EXCLUDED.date_of_birth, updated_at = now()";

/// What the database this process talks to currently is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Unknown,
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }

    fn from_recovery(in_recovery: bool) -> Role {
        if in_recovery {
            Role::Replica
        } else {
            Role::Primary
        }
    }

    fn from_u8(value: u8) -> Role {
        match value {
            1 => Role::Primary,
            2 => Role::Replica,
            _ => Role::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Role::Unknown => 0,
            Role::Primary => 1,
            Role::Replica => 2,
        }
    }
}

/// Why a store operation did not complete. Each maps to one HTTP answer. Cloneable:
/// one failed coalesced lookup fails every request in its batch.
#[derive(Debug, Clone)]
pub enum StoreError {
    /// No working connection within the time allowed: the database is down, unreachable
    /// or overloaded. Retrying later may succeed.
    Unavailable,
    /// The database is a replica (or otherwise read-only): reads work, writes cannot.
    ReadOnly,
    /// The schema has not been migrated yet (the database has not been reachable since
    /// start).
    NotReady,
    /// A write was cancelled at its client-side deadline: it may have committed (a
    /// commit waiting for a synchronous standby ends with only a warning when
    /// cancelled), or not.
    OutcomeUnknown,
    /// A query failed for a reason retrying will not fix. A bug or an operator change.
    Internal(Arc<postgres::Error>),
}

/// One pooled connection.
pub struct Conn {
    client: Client,
    in_recovery: bool,
    /// The OID of the database this connection reached.
    database_oid: u32,
    get_stmt: Option<Statement>,
    get_many_stmt: Option<Statement>,
    upsert_stmt: Option<Statement>,
    upsert_many_stmt: Option<Statement>,
    position_stmt: Option<Statement>,
    /// Set when this connection must not go back into the pool.
    broken: bool,
}

impl Conn {
    fn statement(&mut self, which: Query) -> std::result::Result<Statement, postgres::Error> {
        let (slot, sql) = match which {
            Query::Get => (&mut self.get_stmt, GET_SQL),
            Query::GetMany => (&mut self.get_many_stmt, GET_MANY_SQL),
            Query::Upsert => (&mut self.upsert_stmt, UPSERT_SQL),
            Query::UpsertMany => (&mut self.upsert_many_stmt, UPSERT_MANY_SQL),
            Query::Position => (&mut self.position_stmt, POSITION_SQL),
        };
        if let Some(stmt) = slot {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql)?;
        *slot = Some(stmt.clone());
        Ok(stmt)
    }
}

#[derive(Clone, Copy)]
enum Query {
    Get,
    GetMany,
    Upsert,
    UpsertMany,
    /// Where the last commit ended in the WAL (for the DR receipt).
    Position,
}

/// r2d2 manager: `r2d2_postgres` connects; this wrapper learns the server's role and
/// lets a connection be marked broken so the pool drops it.
pub struct Manager {
    inner: PostgresConnectionManager<MakeRustlsConnect>,
    role: Arc<AtomicU8>,
    /// The OID the configured database name has now (0: not known yet).
    database_oid: Arc<AtomicU32>,
}

impl r2d2::ManageConnection for Manager {
    type Connection = Conn;
    type Error = postgres::Error;

    fn connect(&self) -> std::result::Result<Conn, postgres::Error> {
        let mut client = self.inner.connect()?;
        let row = client.query_one(
            "SELECT pg_is_in_recovery(),
                    (SELECT oid FROM pg_database WHERE datname = current_database())",
            &[],
        )?;
        let in_recovery: bool = row.get(0);
        let database_oid: u32 = row.get(1);
        self.role
            .store(Role::from_recovery(in_recovery).to_u8(), Ordering::Relaxed);
        // Connecting by name reaches what the name means now.
        self.database_oid.store(database_oid, Ordering::Relaxed);
        Ok(Conn {
            client,
            in_recovery,
            database_oid,
            get_stmt: None,
            get_many_stmt: None,
            upsert_stmt: None,
            upsert_many_stmt: None,
            position_stmt: None,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Conn) -> std::result::Result<(), postgres::Error> {
        conn.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        conn.broken || conn.client.is_closed()
    }
}

/// Logs pool connection failures, at most once every few seconds: while the database
/// is down r2d2 retries constantly and one line per attempt would flood the journal.
struct RateLimitedErrorLog {
    last_logged_secs: AtomicU64,
    started: Instant,
}

impl r2d2::HandleError<postgres::Error> for RateLimitedErrorLog {
    fn handle_error(&self, error: postgres::Error) {
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.last_logged_secs.load(Ordering::Relaxed);
        if now >= last + 5
            && self
                .last_logged_secs
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            log::warn!(
                "database connection failed: {}",
                crate::error::chain(&error)
            );
        }
    }
}

impl std::fmt::Debug for RateLimitedErrorLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimitedErrorLog")
    }
}

pub struct Store {
    pool: r2d2::Pool<Manager>,
    /// See the module docs: the OID the configured database name has now.
    database_oid: Arc<AtomicU32>,
    pg_config: postgres::Config,
    tls: MakeRustlsConnect,
    role: Arc<AtomicU8>,
    schema_ready: AtomicBool,
    /// Set once the first migration attempt has ended, successfully or not: until then
    /// requests wait for it (a restart is typically milliseconds from ready), after it
    /// they answer 503 at once.
    schema_attempted: AtomicBool,
    pool_timeout: Duration,
    lookups: Coalescer<Box<str>, Option<Date>, StoreError>,
    /// Each write answered with the WAL insert position read right after its commit, on
    /// the same connection, when `wal_position_after_write` (the DR receipt's target).
    writes: Coalescer<(Box<str>, Date), Option<WalPosition>, StoreError>,
    wal_position_after_write: bool,
    /// The client-side deadline of a write, commit included.
    write_deadline: Duration,
    deadlines: Deadlines,
    write_deadline_cancels: AtomicU64,
    breaker: Breaker,
    /// When readiness last succeeded, in milliseconds since `epoch` (0: never).
    last_ready_ms: AtomicU64,
    ready_grace: Duration,
    epoch: Instant,
}

impl Store {
    /// Builds the pool without connecting: the API starts (and answers `/healthz`)
    /// even while the database is down.
    pub fn new(config: &ApiConfig) -> Result<Store> {
        let (pg_config, ssl_mode) = connection_config(config)?;
        let tls = crate::db::dbtls::connector_for(ssl_mode, config.database_ca_file.as_deref())?;
        let role = Arc::new(AtomicU8::new(Role::Unknown.to_u8()));
        let database_oid = Arc::new(AtomicU32::new(0));
        let manager = Manager {
            inner: PostgresConnectionManager::new(pg_config.clone(), tls.clone()),
            role: Arc::clone(&role),
            database_oid: Arc::clone(&database_oid),
        };
        let pool = r2d2::Pool::builder()
            .max_size(config.pool_size)
            .connection_timeout(config.pool_timeout)
            // A round trip per checkout would halve throughput; a dead connection is
            // instead detected by the query that uses it and retried (see `with_conn`).
            .test_on_check_out(false)
            .error_handler(Box::new(RateLimitedErrorLog {
                last_logged_secs: AtomicU64::new(0),
                started: Instant::now(),
            }))
            .build_unchecked(manager);
        Ok(Store {
            pool,
            database_oid,
            pg_config,
            tls,
            role,
            schema_ready: AtomicBool::new(false),
            schema_attempted: AtomicBool::new(false),
            pool_timeout: config.pool_timeout,
            lookups: Coalescer::new(
                config.lookup_concurrency,
                StoreError::Unavailable,
                StoreError::Unavailable,
            ),
            writes: Coalescer::new(
                config.write_concurrency,
                StoreError::Unavailable,
                StoreError::Unavailable,
            ),
            wal_position_after_write: config.dr_receipt.is_some(),
            write_deadline: write_deadline(config.statement_timeout),
            deadlines: Deadlines::start()
                .map_err(|e| Error::io("starting the statement deadline watcher", e))?,
            write_deadline_cancels: AtomicU64::new(0),
            breaker: Breaker::new(config.breaker_cooldown, Instant::now()),
            last_ready_ms: AtomicU64::new(0),
            ready_grace: config.ready_grace,
            epoch: Instant::now(),
        })
    }

    /// Applies migrations, retrying with backoff until it succeeds or `stop` is set.
    /// Runs on its own thread at start; requests answer 503 until it is done.
    pub fn migrate_until_done(&self, stop: &AtomicBool) {
        let mut delay = Duration::from_millis(100);
        while !stop.load(Ordering::Relaxed) {
            match self.migrate_once() {
                Ok(outcome) => {
                    log::info!("database schema ready ({outcome:?})");
                    self.schema_ready.store(true, Ordering::Release);
                    self.schema_attempted.store(true, Ordering::Release);
                    return;
                }
                Err(err) => {
                    self.schema_attempted.store(true, Ordering::Release);
                    log::warn!(
                        "migrations not applied yet, retrying in {delay:?}: {}",
                        err.chain()
                    );
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn migrate_once(&self) -> Result<migrate::Outcome> {
        let mut client = self
            .pg_config
            .connect(self.tls.clone())
            .map_err(|e| Error::db("connecting to run migrations", e))?;
        migrate::run(&mut client)
    }

    /// Reads, every `interval` until `stop` is set, which database the configured name
    /// means now; connections to another one are discarded at their next checkout (see
    /// the module docs). Runs on its own thread.
    pub fn watch_database(&self, stop: &AtomicBool, interval: Duration) {
        let name = self.pg_config.get_dbname().unwrap_or("postgres").to_owned();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(interval);
            let Ok(mut conn) = self.pool.get_timeout(interval) else {
                continue;
            };
            match conn
                .client
                .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
            {
                Ok(Some(row)) => {
                    let now: u32 = row.get(0);
                    let before = self.database_oid.swap(now, Ordering::Relaxed);
                    if before != 0 && before != now {
                        log::warn!(
                            "database {name} was replaced (a restore?): OID {before} -> {now}; reconnecting"
                        );
                    }
                }
                // Between a restore's two renames the name means nothing: keep the
                // last answer, the next round will have the new one.
                Ok(None) => {}
                Err(err) => {
                    if matches!(classify(&err), Failure::Connection) {
                        conn.broken = true;
                    }
                }
            }
        }
    }

    /// A connection of its own, outside the pool, to where the pool's URL leads (the
    /// leader, with a multi-host `target_session_attrs=read-write` URL).
    pub fn connect_direct(&self) -> std::result::Result<Client, postgres::Error> {
        self.pg_config.connect(self.tls.clone())
    }

    /// Whether requests are failing fast because the database was found unreachable.
    /// Writes cancelled at their client-side deadline since start.
    pub fn write_deadline_cancels(&self) -> u64 {
        self.write_deadline_cancels.load(Ordering::Relaxed)
    }

    pub fn breaker_open(&self) -> bool {
        self.breaker.is_open()
    }

    pub fn schema_ready(&self) -> bool {
        self.schema_ready.load(Ordering::Acquire)
    }

    /// The role last seen on any connection.
    pub fn role(&self) -> Role {
        Role::from_u8(self.role.load(Ordering::Relaxed))
    }

    pub fn pool_state(&self) -> (u32, u32, u32) {
        let state = self.pool.state();
        (
            state.connections,
            state.idle_connections,
            self.pool.max_size(),
        )
    }

    /// Concurrent lookups are coalesced (see `coalesce`); a lookup that finds the
    /// database idle runs alone as a single-row primary-key lookup.
    pub fn get_date_of_birth(
        &self,
        username: &str,
    ) -> std::result::Result<Option<Date>, StoreError> {
        self.lookups
            .submit(username.into(), self.queue_deadline(), |names| {
                self.lookup_batch(names)
            })
    }

    // The coalescer hands out its requests by reference; each request is the boxed name.
    #[allow(clippy::borrowed_box)]
    fn lookup_batch(
        &self,
        names: &[&Box<str>],
    ) -> std::result::Result<Vec<Option<Date>>, StoreError> {
        if let [name] = names {
            let name: &str = name;
            return self.with_conn(|conn| {
                let stmt = conn.statement(Query::Get)?;
                let row = conn.client.query_opt(&stmt, &[&name])?;
                Ok(vec![row.map(|row| row.get::<_, Date>(0))])
            });
        }
        let names: Vec<&str> = names.iter().map(|n| &***n).collect();
        self.with_conn(|conn| {
            let stmt = conn.statement(Query::GetMany)?;
            let rows = conn.client.query(&stmt, &[&names])?;
            Ok(names
                .iter()
                .map(|name| {
                    rows.iter()
                        .find(|row| row.get::<_, &str>(0) == *name)
                        .map(|row| row.get::<_, Date>(1))
                })
                .collect())
        })
    }

    /// One upsert, so concurrent PUTs of the same user never duplicate it; PUTs that
    /// arrive while `write_concurrency` batches are committing are coalesced into the
    /// next one (see `coalesce`). Returns once the statement carrying this write has
    /// committed, with the WAL insert position read after that commit on the same
    /// connection (at or past its commit record) when the DR receipt wants one; `None`
    /// when it was not asked for or could not be read.
    pub fn upsert_date_of_birth(
        &self,
        username: &str,
        dob: Date,
    ) -> std::result::Result<Option<WalPosition>, StoreError> {
        self.writes
            .submit((username.into(), dob), self.queue_deadline(), |batch| {
                self.upsert_batch(batch)
            })
    }

    /// A request waits behind busy batches as long as it would for a pooled connection
    /// (`DOB_POOL_TIMEOUT_MS`), then answers 503 unrun.
    fn queue_deadline(&self) -> Instant {
        Instant::now() + self.pool_timeout
    }

    fn upsert_batch(
        &self,
        batch: &[&(Box<str>, Date)],
    ) -> std::result::Result<Vec<Option<WalPosition>>, StoreError> {
        if let [(username, dob)] = batch {
            let username: &str = username;
            return self
                .upsert(Query::Upsert, &[&username, dob])
                .map(|position| vec![position]);
        }
        let (names, dates) = last_write_per_user(batch);
        self.upsert(Query::UpsertMany, &[&names, &dates])
            .map(|position| vec![position; batch.len()])
    }

    fn upsert(
        &self,
        query: Query,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> std::result::Result<Option<WalPosition>, StoreError> {
        let written = self.with_conn(|conn| {
            let stmt = conn.statement(query)?;
            let deadline = self.deadlines.arm(
                Instant::now() + self.write_deadline,
                (conn.client.cancel_token(), self.tls.clone()),
            );
            let result = conn.client.execute(&stmt, params);
            if deadline.finish() {
                // Whatever it returned: a cancelled commit wait reports success.
                conn.broken = true;
                return Ok(Written::Unknown);
            }
            result?;
            if conn.in_recovery {
                // The write worked, so this server has been promoted since we connected.
                conn.in_recovery = false;
            }
            if !self.wal_position_after_write {
                return Ok(Written::At(None));
            }
            // Autocommit: the statement's transaction has committed, so the insert
            // position now is at or past its commit record, on this very server. A
            // failure here leaves the write unconfirmable: 503, outcome unknown (and a
            // broken connection is found by its next use).
            let position = conn
                .statement(Query::Position)
                .and_then(|stmt| conn.client.query_one(&stmt, &[]))
                .ok()
                .and_then(|row| position_of(&row));
            Ok(Written::At(position))
        })?;
        match written {
            Written::At(position) => {
                self.role.store(Role::Primary.to_u8(), Ordering::Relaxed);
                Ok(position)
            }
            Written::Unknown => {
                self.write_deadline_cancels.fetch_add(1, Ordering::Relaxed);
                log::warn!(
                    "a write did not finish within its deadline ({} ms) and was cancelled: its outcome is unknown",
                    self.write_deadline.as_millis()
                );
                Err(StoreError::OutcomeUnknown)
            }
        }
    }

    /// Readiness: the database answers a query now. Returns its role.
    pub fn check_ready(&self) -> std::result::Result<Role, StoreError> {
        if !self.schema_ready() {
            return Err(StoreError::NotReady);
        }
        let role = self.with_conn(|conn| {
            let in_recovery: bool = conn
                .client
                .query_one("SELECT pg_is_in_recovery()", &[])?
                .get(0);
            conn.in_recovery = in_recovery;
            Ok(Role::from_recovery(in_recovery))
        })?;
        self.role.store(role.to_u8(), Ordering::Relaxed);
        let since_epoch = Instant::now().saturating_duration_since(self.epoch);
        // +1: 0 means "never".
        self.last_ready_ms.store(
            u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX) + 1,
            Ordering::Relaxed,
        );
        Ok(role)
    }

    /// After a failed readiness check: how long no database has been reachable, if that
    /// is still within the failover grace (a leader election in progress).
    pub fn failover_grace(&self) -> Option<Duration> {
        let last = match self.last_ready_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(self.epoch + Duration::from_millis(ms - 1)),
        };
        within_grace(last, Instant::now(), self.ready_grace)
    }

    /// Runs `op` on a pooled connection. A connection-level failure, or a read-only
    /// error on a connection believed writable, discards that connection and tries
    /// again on another (both operations are idempotent), all within `pool_timeout`.
    fn with_conn<T>(
        &self,
        op: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> std::result::Result<T, StoreError> {
        let deadline = Instant::now() + self.pool_timeout;
        // Just after start (a restart under socket activation hands over connections at
        // once) the schema check is typically milliseconds from done: wait for it
        // within the pool timeout rather than answer 503. Once it has failed, the
        // database is down: answer at once.
        while !self.schema_ready() {
            if Instant::now() >= deadline || self.schema_attempted.load(Ordering::Acquire) {
                return Err(StoreError::NotReady);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let admission = self.breaker.admit(Instant::now());
        if admission == Admission::Reject {
            return Err(StoreError::Unavailable);
        }
        let (result, reached) = self.with_conn_until(deadline, op);
        if reached {
            self.breaker.succeeded();
        } else {
            self.breaker.failed(Instant::now());
        }
        result
    }

    /// `with_conn` without the breaker. Also says whether the database was reached:
    /// an overloaded server answered, a dead one did not.
    fn with_conn_until<T>(
        &self,
        deadline: Instant,
        mut op: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> (std::result::Result<T, StoreError>, bool) {
        let mut last = StoreError::Unavailable;
        // After a database restart every pooled connection is dead, and each fails
        // at once; trying them all within the deadline means no request sees a 503.
        for _attempt in 0..=self.pool.max_size() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let Ok(mut conn) = self
                .pool
                .get_timeout(remaining.max(Duration::from_millis(1)))
            else {
                // Every connection in use by other requests is load, not an outage.
                let state = self.pool.state();
                let saturated =
                    state.connections >= self.pool.max_size() && state.idle_connections == 0;
                let reached = saturated || matches!(last, StoreError::ReadOnly);
                return (Err(last), reached);
            };
            if conn.database_oid != self.database_oid.load(Ordering::Relaxed) {
                // A database since replaced by name (see the module docs).
                conn.broken = true;
                continue;
            }
            let err = match op(&mut conn) {
                Ok(value) => return (Ok(value), true),
                Err(err) => err,
            };
            match classify(&err) {
                Failure::ReadOnly if conn.in_recovery => {
                    // A known replica: the connection is fine for reads, keep it.
                    self.role.store(Role::Replica.to_u8(), Ordering::Relaxed);
                    return (Err(StoreError::ReadOnly), true);
                }
                Failure::ReadOnly => {
                    conn.broken = true;
                    last = StoreError::ReadOnly;
                }
                Failure::Connection => {
                    conn.broken = true;
                    last = StoreError::Unavailable;
                }
                Failure::Busy => return (Err(StoreError::Unavailable), true),
                Failure::Other => {
                    conn.broken = true;
                    return (Err(StoreError::Internal(Arc::new(err))), true);
                }
            }
            log::debug!(
                "retrying on another connection after: {}",
                crate::error::chain(&err)
            );
        }
        let reached = matches!(last, StoreError::ReadOnly);
        (Err(last), reached)
    }
}

/// How a write ended, as far as this process can know.
enum Written {
    /// Committed; the WAL insert position after it, when asked for.
    At(Option<WalPosition>),
    /// Cancelled at its deadline.
    Unknown,
}

/// A write's client-side deadline: just past the server's `statement_timeout`, so a
/// statement the server stops itself ends with its clear error; only a wait the
/// server does not time out (the commit's, for a synchronous standby) reaches it.
pub fn write_deadline(statement_timeout: Duration) -> Duration {
    statement_timeout + Duration::from_millis(250)
}

/// The batch's usernames, each once, with the date of its last write in arrival order
/// (what applying the writes one by one would leave).
fn last_write_per_user<'a>(batch: &[&'a (Box<str>, Date)]) -> (Vec<&'a str>, Vec<Date>) {
    let mut names: Vec<&str> = Vec::with_capacity(batch.len());
    let mut dates: Vec<Date> = Vec::with_capacity(batch.len());
    for (name, date) in batch.iter().map(|w| (&*w.0, w.1)) {
        // Batches are at most coalesce::MAX_BATCH long: a scan beats hashing.
        match names.iter().position(|n| *n == name) {
            Some(i) => dates[i] = date,
            None => {
                names.push(name);
                dates.push(date);
            }
        }
    }
    (names, dates)
}

/// How long it has been since `last_ready`, if a readiness failure now is still within
/// `grace` of it. Never ready before: no grace.
pub fn within_grace(
    last_ready: Option<Instant>,
    now: Instant,
    grace: Duration,
) -> Option<Duration> {
    let without = now.saturating_duration_since(last_ready?);
    (without <= grace).then_some(without)
}

enum Failure {
    /// The connection is unusable (closed, reset, server shutting down).
    Connection,
    /// The server refused a write because it is read-only.
    ReadOnly,
    /// The server is alive but overloaded or cancelled the statement; keep the
    /// connection, do not retry now.
    Busy,
    Other,
}

fn classify(err: &postgres::Error) -> Failure {
    let Some(code) = err.code() else {
        // No SQLSTATE: an I/O or protocol failure on this connection.
        return Failure::Connection;
    };
    if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        Failure::ReadOnly
    } else if code.code().starts_with("08")
        || *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::IDLE_SESSION_TIMEOUT
    {
        Failure::Connection
    } else if *code == SqlState::QUERY_CANCELED || *code == SqlState::TOO_MANY_CONNECTIONS {
        Failure::Busy
    } else {
        Failure::Other
    }
}

/// The PostgreSQL client configuration: the URL plus the timeouts the API relies on,
/// unless the URL sets its own.
fn connection_config(config: &ApiConfig) -> Result<(postgres::Config, crate::db::dbtls::SslMode)> {
    let (mut pg, ssl_mode) = crate::db::dbtls::parse_url(&config.database_url, "DOB_DATABASE_URL")?;
    if pg.get_connect_timeout().is_none() {
        pg.connect_timeout(config.connect_timeout);
    }
    if pg.get_application_name().is_none() {
        pg.application_name("dob-api");
    }
    // A host that vanished (instance lost, AZ partition) would otherwise hold a request
    // until TCP gives up, minutes later.
    pg.tcp_user_timeout(config.statement_timeout + Duration::from_secs(1));
    pg.keepalives(true).keepalives_idle(Duration::from_secs(30));
    let statement_timeout = format!(
        "-c statement_timeout={}",
        config.statement_timeout.as_millis()
    );
    let options = match pg.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {statement_timeout}"),
        _ => statement_timeout,
    };
    pg.options(&options);
    Ok((pg, ssl_mode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_writes_each_user_once_with_its_last_date_in_arrival_order() {
        let d = |day| Date::constant(2000, 1, day);
        let writes: Vec<(Box<str>, Date)> = vec![
            ("Ada".into(), d(1)),
            ("Bob".into(), d(2)),
            ("Ada".into(), d(3)),
            ("ada".into(), d(4)),
            ("Bob".into(), d(5)),
        ];
        let batch: Vec<&(Box<str>, Date)> = writes.iter().collect();
        let (names, dates) = last_write_per_user(&batch);
        assert_eq!(names, ["Ada", "Bob", "ada"]);
        assert_eq!(dates, [d(3), d(5), d(4)]);
    }

    #[test]
    fn readiness_failures_are_forgiven_only_within_the_grace_after_a_success() {
        let t0 = Instant::now();
        let grace = Duration::from_secs(20);
        assert_eq!(within_grace(None, t0, grace), None, "never ready: no grace");
        let later = t0 + Duration::from_secs(12);
        assert_eq!(
            within_grace(Some(t0), later, grace),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            within_grace(Some(t0), t0 + Duration::from_secs(21), grace),
            None
        );
        assert_eq!(within_grace(Some(t0), later, Duration::ZERO), None);
    }
}
