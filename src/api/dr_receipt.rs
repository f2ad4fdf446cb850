//! The DR region's receipt before a 204: the cross-region analogue of Patroni's
//! synchronous mode, kept in `dob-api` rather than in `synchronous_standby_names`
//! (Patroni owns that setting, and a synchronous wait there would also stall Patroni's
//! own queries).
//!
//! The DR region streams from the writing cluster's leader through the physical
//! replication slot `DOB_DR_RECEIPT_SLOT` (`dob_dr`); for a physical slot, PostgreSQL sets
//! the slot's `restart_lsn` to the flush position the standby reports, so the slot says
//! how far the DR region has *flushed*, whatever the stream's application name. Right
//! after a PUT's COMMIT, on the same connection, the store reads the WAL insert position
//! (at or past the commit record) and the timeline ([`WalPosition`]); the connection goes
//! back to the pool and the request waits. One watcher thread per `dob-api`, busy only
//! while some request waits, polls the leader every millisecond on a connection of its
//! own for its timeline, its insert position and the slot's position. A request is
//! confirmed, and answered 204, once a poll on its timeline finds the slot's flush
//! position at or past its position. A request not confirmed within
//! `DOB_DR_RECEIPT_TIMEOUT_MS` is answered 503: it committed here, but whether it would
//! survive the loss of this region is unknown.
//!
//! The polls' own insert positions time how long the DR region has left the leader
//! unconfirmed: past `DOB_DR_DETACH_AFTER_MS`, the watcher detaches through the fence
//! (`crate::failover::fence::detach`), and re-attaches once the DR region has caught up.
//!
//! [`Tracker`] is the pure bookkeeping (polls, positions, timelines), unit-tested here;
//! [`DrReceipt`] adds the waiting and the watcher, tested against a real primary and a
//! real streaming replica (tests/replication, tests/backup).

use crate::failover::fence::{AttachState, FenceConfig, FenceState, FenceStores};
use crate::failover::promote::Lsn;
use crate::failover::takeover::lease_wait;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often the watcher polls while requests wait: a commit waits little more than the
/// DR region's flush and its feedback (0.5 ms measured no faster on one machine, and
/// costs the leader twice the queries).
pub const POLL_INTERVAL: Duration = Duration::from_millis(1);
/// Polls whose insert position the DR region has not flushed yet, at most; beyond it the
/// two oldest are merged (the older waits a little longer, nothing is confirmed early).
/// At one poll every millisecond this is 4 s of an unconfirming DR region under load.
const MAX_PENDING_POLLS: usize = 4096;
/// Without waiting requests the watcher wakes this often anyway (to notice shutdown).
const IDLE_WAKE: Duration = Duration::from_millis(500);
/// After a failed poll (the leader changed, the connection broke), the next try.
const RECONNECT_DELAY: Duration = Duration::from_millis(50);

/// `DOB_DR_RECEIPT_SLOT` and its bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrReceiptConfig {
    /// The physical replication slot the DR region streams through.
    pub slot: String,
    /// How long a committed PUT waits for the DR region's flush before 503.
    pub timeout: Duration,
    /// How long the DR region may leave a waiting write unconfirmed before this region
    /// records itself detached and goes on alone (only with the fence configured).
    pub detach_after: Duration,
}

impl DrReceiptConfig {
    /// `None` when `DOB_DR_RECEIPT_SLOT` is unset: no DR region to wait for.
    pub fn from_lookup(
        get: &impl Fn(&str) -> Option<String>,
    ) -> crate::Result<Option<DrReceiptConfig>> {
        let Some(slot) = get("DOB_DR_RECEIPT_SLOT").filter(|s| !s.trim().is_empty()) else {
            return Ok(None);
        };
        let slot = slot.trim().to_owned();
        if !crate::failover::follow::valid_slot(&slot) {
            return Err(crate::Error::config(
                "DOB_DR_RECEIPT_SLOT",
                format!("{slot:?} is not a replication slot name (a-z, 0-9, _; at most 63)"),
            ));
        }
        use crate::config::millis_in_range;
        let timeout = millis_in_range(get, "DOB_DR_RECEIPT_TIMEOUT_MS", 3_000, 10, 60_000)?;
        let detach_after = millis_in_range(get, "DOB_DR_DETACH_AFTER_MS", 12_000, 1_000, 600_000)?;
        Ok(Some(DrReceiptConfig {
            slot,
            timeout,
            detach_after,
        }))
    }
}

/// Where a commit ended in the WAL: the insert position read right after it, on the
/// same connection, and the timeline that server writes on. Positions of two servers are
/// compared only on one timeline: a promoted replica writes on a new one, so a stale
/// primary's flush positions never confirm the new leader's commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalPosition {
    pub timeline: u32,
    pub lsn: u64,
}

/// One poll whose insert position the DR region has not flushed yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    poll: u64,
    insert: u64,
    at: Instant,
}

/// Tickets, polls and what they confirmed. Pure: the caller passes positions and times.
#[derive(Debug)]
pub struct Tracker {
    /// The number the next poll gets (and so the ticket a request takes now).
    next_poll: u64,
    /// Every poll up to this one has had its insert position flushed by the DR region.
    confirmed: u64,
    pending: VecDeque<Pending>,
    /// The last flush position the slot reported, on the current connection's server.
    last_flush: Option<u64>,
    /// The timeline the polled server writes on.
    timeline: Option<u32>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            next_poll: 1,
            confirmed: 0,
            pending: VecDeque::new(),
            last_flush: None,
            timeline: None,
        }
    }
}

impl Tracker {
    /// What a request that has just committed waits for: a poll that begins from now on.
    pub fn ticket(&self) -> u64 {
        self.next_poll
    }

    /// A poll is about to be sent; its number.
    pub fn begin_poll(&mut self) -> u64 {
        let poll = self.next_poll;
        self.next_poll += 1;
        poll
    }

    /// What poll `poll` read: the leader's timeline and insert position, and the slot's
    /// flush position (`None`: no such slot).
    pub fn observe(
        &mut self,
        poll: u64,
        timeline: u32,
        insert: u64,
        flush: Option<u64>,
        at: Instant,
    ) {
        if self.timeline != Some(timeline) {
            // Another server (or this one promoted since): nothing read before counts.
            self.forget_pending();
            self.timeline = Some(timeline);
        }
        if self.pending.len() >= MAX_PENDING_POLLS {
            // Merge the two oldest: the later poll number, the higher position.
            let first = self.pending.pop_front().expect("full");
            let second = self.pending.front_mut().expect("full");
            second.insert = second.insert.max(first.insert);
            second.at = first.at;
        }
        self.pending.push_back(Pending { poll, insert, at });
        if let Some(flush) = flush {
            // The highest: a standby's walreceiver that restarts (a timeline switch, a
            // reconnect) reports its streaming start point, below what it holds.
            self.last_flush = Some(self.last_flush.map_or(flush, |f| f.max(flush)));
            while let Some(front) = self.pending.front() {
                if front.insert > flush {
                    break;
                }
                self.confirmed = self.confirmed.max(front.poll);
                self.pending.pop_front();
            }
        }
    }

    /// Drops the polls not yet confirmed: their positions were read from a server the
    /// watcher is no longer connected to (a failover), so they say nothing about the
    /// next one's, and the clock of an unconfirming DR region starts again there.
    /// Waiting requests are confirmed by later polls, which began after their commits
    /// (a commit acknowledged in synchronous mode is in the new leader's history).
    pub fn forget_pending(&mut self) {
        self.pending.clear();
        self.last_flush = None;
        self.timeline = None;
    }

    /// Whether the DR region has flushed the WAL up to `position`, as the slot of the
    /// server on `position`'s timeline reports it.
    pub fn flushed(&self, position: WalPosition) -> bool {
        self.timeline == Some(position.timeline)
            && self.last_flush.is_some_and(|f| f >= position.lsn)
    }

    /// Whether the DR region holds every commit made before `ticket` was taken.
    pub fn confirms(&self, ticket: u64) -> bool {
        self.confirmed >= ticket
    }

    /// When the oldest poll the DR region has not caught up with was read.
    pub fn unconfirmed_since(&self) -> Option<Instant> {
        self.pending.front().map(|p| p.at)
    }

    /// The last flush position the slot reported, if any.
    pub fn last_flush(&self) -> Option<Lsn> {
        self.last_flush.map(Lsn)
    }
}

/// How a committed PUT's wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receipt {
    /// The DR region has flushed the commit.
    Confirmed,
    /// This region is detached (recorded in a majority of the fence buckets): the write
    /// is acknowledged without the DR region, inside the loss window a takeover reports.
    Alone,
    /// Neither within the timeout: the commit's survival of a region loss is unknown.
    TimedOut,
}

/// Where this `dob-api` stands with the DR region (only the watcher changes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Every 204 waits for the DR region's flush.
    Attached,
    /// Writes go on alone; once a poll begun after `catch_up` is confirmed, the DR
    /// region streams again and the way back starts.
    Detached { catch_up: u64 },
    /// `reattaching` is in a majority (no more writes alone here, nor, a lease later,
    /// anywhere). From `written` plus the lease wait on, a poll begun then must be
    /// confirmed (`ticket`) before `attached` may be written.
    Reattaching {
        epoch: u64,
        written: Instant,
        ticket: Option<u64>,
    },
}

struct Inner {
    tracker: Tracker,
    /// Requests waiting now: the watcher polls only while this is above zero (or while
    /// detached, to see the DR region come back).
    waiting: usize,
}

/// The fence a DR receipt detaches through: the lease state and the buckets.
pub struct DetachVia {
    pub state: Arc<FenceState>,
    pub config: FenceConfig,
}

/// The receipt wait and its watcher, shared by every request of a `dob-api`.
pub struct DrReceipt {
    config: DrReceiptConfig,
    fence: Option<DetachVia>,
    inner: Mutex<Inner>,
    /// Wakes waiting requests after each poll, and when this region detaches.
    polled: Condvar,
    /// Wakes the watcher when a request starts waiting.
    wanted: Condvar,
    confirmed_total: AtomicU64,
    alone_total: AtomicU64,
    timed_out_total: AtomicU64,
    polls_total: AtomicU64,
    poll_errors_total: AtomicU64,
    detaches_total: AtomicU64,
    reattaches_total: AtomicU64,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReceiptStats {
    pub confirmed: u64,
    pub alone: u64,
    pub timed_out: u64,
    pub polls: u64,
    pub poll_errors: u64,
    pub detaches: u64,
    pub reattaches: u64,
    /// 1 while writes may be acknowledged without the DR region.
    pub detached: bool,
    /// Seconds the oldest unconfirmed poll has waited (0: none).
    pub unconfirmed_s: f64,
}

fn lock(mutex: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // Nothing panics while holding it; recover rather than cascade if it did.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The poll: whether the server is the leader, its insert position, and how far the
/// DR region's slot has flushed. A replica has no insert position (the function
/// raises during recovery), so it is asked only of a leader.
const POLL_SQL: &str = "SELECT CASE WHEN pg_is_in_recovery() THEN NULL \
     ELSE pg_current_wal_insert_lsn()::text END, \
     (SELECT restart_lsn::text FROM pg_replication_slots \
      WHERE slot_name = $1 AND slot_type = 'physical'), \
     CASE WHEN pg_is_in_recovery() THEN NULL ELSE \
     ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int END";

/// The watcher's connection, with [`POLL_SQL`] prepared once: a poll is then one round
/// trip, where a text query is parsed, planned and sent in two round trips each time.
struct PollConnection {
    conn: postgres::Client,
    poll: postgres::Statement,
}

/// What a write reads right after its commit, on the same connection: [`WalPosition`].
pub const POSITION_SQL: &str = "SELECT pg_current_wal_insert_lsn()::text, \
     ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int";

/// While detached or on the way back, the watcher polls this often without requests.
const CATCH_UP_POLL: Duration = Duration::from_millis(100);
/// After a failed write of a detach record, the next try.
const FENCE_RETRY: Duration = Duration::from_secs(1);

impl DrReceipt {
    pub fn new(config: DrReceiptConfig, fence: Option<DetachVia>) -> DrReceipt {
        DrReceipt {
            config,
            fence,
            inner: Mutex::new(Inner {
                tracker: Tracker::default(),
                waiting: 0,
            }),
            polled: Condvar::new(),
            wanted: Condvar::new(),
            confirmed_total: AtomicU64::new(0),
            alone_total: AtomicU64::new(0),
            timed_out_total: AtomicU64::new(0),
            polls_total: AtomicU64::new(0),
            poll_errors_total: AtomicU64::new(0),
            detaches_total: AtomicU64::new(0),
            reattaches_total: AtomicU64::new(0),
        }
    }

    pub fn config(&self) -> &DrReceiptConfig {
        &self.config
    }

    fn detached_now(&self) -> bool {
        self.fence.as_ref().is_some_and(|f| {
            // Still detached once the answer has left (see `ACK_MARGIN`).
            f.state
                .detached_at(Instant::now() + crate::failover::fence::ACK_MARGIN)
                .is_some()
        })
    }

    /// Called after a PUT's COMMIT, with its database connection released: blocks until
    /// the DR region has flushed it (the first poll whose flush position reaches
    /// `position`, on its timeline), this region is detached, or the timeout. Without a
    /// position (it could not be read after the commit) nothing can confirm the write:
    /// it goes on alone if detached, else its outcome is unknown at once.
    pub fn wait(&self, position: Option<WalPosition>) -> Receipt {
        let deadline = Instant::now() + self.config.timeout;
        let mut inner = lock(&self.inner);
        inner.waiting += 1;
        self.wanted.notify_one();
        let receipt = loop {
            if position.is_some_and(|p| inner.tracker.flushed(p)) {
                break Receipt::Confirmed;
            }
            if self.detached_now() {
                break Receipt::Alone;
            }
            let now = Instant::now();
            if now >= deadline || position.is_none() {
                break Receipt::TimedOut;
            }
            inner = self
                .polled
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        };
        inner.waiting -= 1;
        drop(inner);
        match receipt {
            Receipt::Confirmed => &self.confirmed_total,
            Receipt::Alone => &self.alone_total,
            Receipt::TimedOut => &self.timed_out_total,
        }
        .fetch_add(1, Ordering::Relaxed);
        receipt
    }

    pub fn stats(&self, now: Instant) -> ReceiptStats {
        let inner = lock(&self.inner);
        ReceiptStats {
            confirmed: self.confirmed_total.load(Ordering::Relaxed),
            alone: self.alone_total.load(Ordering::Relaxed),
            timed_out: self.timed_out_total.load(Ordering::Relaxed),
            polls: self.polls_total.load(Ordering::Relaxed),
            poll_errors: self.poll_errors_total.load(Ordering::Relaxed),
            detaches: self.detaches_total.load(Ordering::Relaxed),
            reattaches: self.reattaches_total.load(Ordering::Relaxed),
            detached: self
                .fence
                .as_ref()
                .is_some_and(|f| f.state.detached_at(now).is_some()),
            unconfirmed_s: inner
                .tracker
                .unconfirmed_since()
                .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64()),
        }
    }

    /// The watcher: polls while requests wait (and, while detached, to see the DR
    /// region come back), detaches when it has not confirmed for `detach_after`, and
    /// re-attaches once it has caught up; until `stop`. `connect` opens a connection to
    /// the writing cluster's leader (the pool's URL and TLS).
    pub fn watch(
        &self,
        stop: &AtomicBool,
        connect: impl Fn() -> std::result::Result<postgres::Client, postgres::Error>,
    ) {
        let mut client: Option<PollConnection> = None;
        let mut failing = false;
        let mut phase = Phase::Attached;
        let mut stores: Option<FenceStores> = None;
        let mut next_fence_try = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let poll = {
                let mut inner = lock(&self.inner);
                if inner.waiting == 0 {
                    let idle = if phase == Phase::Attached {
                        IDLE_WAKE
                    } else {
                        CATCH_UP_POLL
                    };
                    inner = self
                        .wanted
                        .wait_timeout(inner, idle)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                    if inner.waiting == 0 && phase == Phase::Attached {
                        continue;
                    }
                }
                inner.tracker.begin_poll()
            };
            let started = Instant::now();
            match self.poll_once(&mut client, &connect) {
                Ok((timeline, insert, flush)) => {
                    if failing {
                        log::info!("dr receipt: polling the leader again");
                        failing = false;
                    }
                    self.polls_total.fetch_add(1, Ordering::Relaxed);
                    let advanced = {
                        let mut inner = lock(&self.inner);
                        let before = inner.tracker.last_flush();
                        inner
                            .tracker
                            .observe(poll, timeline, insert, flush, started);
                        inner.tracker.last_flush() != before
                    };
                    // Waiting requests can only be confirmed by a flush position that
                    // moved; waking them on every poll would only make them contend.
                    if advanced {
                        self.polled.notify_all();
                    }
                }
                Err(why) => {
                    self.poll_errors_total.fetch_add(1, Ordering::Relaxed);
                    if !failing {
                        log::warn!("dr receipt: cannot poll the leader: {why}");
                        failing = true;
                    }
                    client = None;
                    lock(&self.inner).tracker.forget_pending();
                    std::thread::sleep(RECONNECT_DELAY);
                }
            }
            if let Some(fence) = &self.fence {
                if Instant::now() >= next_fence_try {
                    let before = phase;
                    phase = self.next_phase(phase, fence, &mut stores);
                    if phase != before {
                        self.polled.notify_all();
                    } else if stores.is_none() {
                        // A fence write failed (the clients are rebuilt): pace the retries.
                        next_fence_try = Instant::now() + FENCE_RETRY;
                    }
                }
            }
            std::thread::sleep(POLL_INTERVAL.saturating_sub(started.elapsed()));
        }
    }

    fn unconfirmed_too_long(&self) -> bool {
        let inner = lock(&self.inner);
        inner.waiting > 0
            && inner
                .tracker
                .unconfirmed_since()
                .is_some_and(|at| at.elapsed() >= self.config.detach_after)
    }

    /// One decision per turn, each logged in one sentence.
    fn next_phase(
        &self,
        phase: Phase,
        fence: &DetachVia,
        stores: &mut Option<FenceStores>,
    ) -> Phase {
        let now = Instant::now();
        match phase {
            Phase::Attached | Phase::Reattaching { .. } if self.unconfirmed_too_long() => {
                let Some(epoch) = fence.state.writer_epoch(now) else {
                    // Fenced or without a lease: writes fail before they commit anyway.
                    return phase;
                };
                let confirmed = lock(&self.inner)
                    .tracker
                    .last_flush()
                    .map(|l| l.to_string());
                let Some(all) = connect_stores(stores, &fence.config) else {
                    return phase;
                };
                match crate::failover::fence::detach(
                    &all.all(),
                    &fence.config.region,
                    epoch,
                    confirmed.clone(),
                    &jiff::Timestamp::now().to_string(),
                    hostname(),
                ) {
                    Ok(lease) => {
                        fence.state.set_detached(lease);
                        self.detaches_total.fetch_add(1, Ordering::Relaxed);
                        log::warn!(
                            "dr receipt: the DR region confirmed nothing for {:.1} s: detached (epoch {epoch}, last confirmed WAL position {}); writes go on without it",
                            self.config.detach_after.as_secs_f64(),
                            confirmed.as_deref().unwrap_or("none")
                        );
                        Phase::Detached {
                            catch_up: lock(&self.inner).tracker.ticket(),
                        }
                    }
                    Err(why) => {
                        log::warn!("dr receipt: cannot detach, writes keep waiting: {why}");
                        *stores = None;
                        phase
                    }
                }
            }
            Phase::Detached { catch_up } => {
                let Some(lease) = fence.state.detached_at(now) else {
                    // Another host re-attached, or the detach could not be read: every
                    // 204 waits for the DR region again.
                    log::info!(
                        "dr receipt: no detach in force any more: writes wait for the DR region again"
                    );
                    return Phase::Attached;
                };
                if !lock(&self.inner).tracker.confirms(catch_up) {
                    return phase;
                }
                let Some(all) = connect_stores(stores, &fence.config) else {
                    return phase;
                };
                match crate::failover::fence::write_reattach(
                    &all.all(),
                    lease.epoch,
                    AttachState::Reattaching,
                    &jiff::Timestamp::now().to_string(),
                    hostname(),
                ) {
                    Ok(_) => {
                        fence.state.clear_detached();
                        log::info!(
                            "dr receipt: the DR region streams again: re-attaching (no more writes alone; attached once it holds everything acknowledged alone)"
                        );
                        Phase::Reattaching {
                            epoch: lease.epoch,
                            written: Instant::now(),
                            ticket: None,
                        }
                    }
                    Err(why) => {
                        log::warn!("dr receipt: cannot record the re-attach yet: {why}");
                        *stores = None;
                        phase
                    }
                }
            }
            Phase::Reattaching {
                epoch,
                written,
                ticket,
            } => {
                // Every host's lease on the detach has run out a lease wait after
                // `reattaching` was in a majority; a poll begun after that covers every
                // write acknowledged alone.
                let Some(ticket) = ticket else {
                    if now.saturating_duration_since(written) < lease_wait(&fence.config) {
                        return phase;
                    }
                    return Phase::Reattaching {
                        epoch,
                        written,
                        ticket: Some(lock(&self.inner).tracker.ticket()),
                    };
                };
                if !lock(&self.inner).tracker.confirms(ticket) {
                    return phase;
                }
                let Some(all) = connect_stores(stores, &fence.config) else {
                    return phase;
                };
                match crate::failover::fence::write_reattach(
                    &all.all(),
                    epoch,
                    AttachState::Attached,
                    &jiff::Timestamp::now().to_string(),
                    hostname(),
                ) {
                    Ok(_) => {
                        self.reattaches_total.fetch_add(1, Ordering::Relaxed);
                        log::info!(
                            "dr receipt: re-attached: the DR region holds every acknowledged write"
                        );
                        Phase::Attached
                    }
                    Err(why) => {
                        // Another host may have finished the way back first.
                        if crate::failover::fence::latest_detach(&all.all())
                            .is_some_and(|r| r.state == AttachState::Attached)
                        {
                            return Phase::Attached;
                        }
                        log::warn!("dr receipt: cannot record the re-attach yet: {why}");
                        *stores = None;
                        phase
                    }
                }
            }
            Phase::Attached => phase,
        }
    }

    fn poll_once(
        &self,
        client: &mut Option<PollConnection>,
        connect: &impl Fn() -> std::result::Result<postgres::Client, postgres::Error>,
    ) -> std::result::Result<(u32, u64, Option<u64>), String> {
        if client.is_none() {
            let mut conn = connect().map_err(|e| crate::error::chain(&e))?;
            let poll = conn
                .prepare(POLL_SQL)
                .map_err(|e| crate::error::chain(&e))?;
            *client = Some(PollConnection { conn, poll });
        }
        let PollConnection { conn, poll } = client.as_mut().expect("connected");
        let row = conn
            .query_one(&*poll, &[&self.config.slot])
            .map_err(|e| crate::error::chain(&e))?;
        let insert: Option<String> = row.get(0);
        let flush: Option<String> = row.get(1);
        let timeline: Option<i32> = row.get(2);
        let insert = insert
            .ok_or("the server is not the leader (in recovery)")?
            .parse_lsn()?;
        let flush = flush.map(|f| f.parse_lsn()).transpose()?;
        let timeline = timeline
            .and_then(|t| u32::try_from(t).ok())
            .ok_or("the server reported no timeline")?;
        Ok((timeline, insert, flush))
    }
}

/// Reads a [`WalPosition`] from a row of [`POSITION_SQL`].
pub fn position_of(row: &postgres::Row) -> Option<WalPosition> {
    let lsn: Option<String> = row.get(0);
    let timeline: Option<i32> = row.get(1);
    Some(WalPosition {
        timeline: u32::try_from(timeline?).ok()?,
        lsn: Lsn::parse(&lsn?)?.0,
    })
}

/// The fence buckets' clients, built on first use and after a failure.
fn connect_stores<'a>(
    stores: &'a mut Option<FenceStores>,
    config: &FenceConfig,
) -> Option<&'a FenceStores> {
    if stores.is_none() {
        match FenceStores::connect(config) {
            Ok(s) => *stores = Some(s),
            Err(err) => {
                log::warn!(
                    "dr receipt: cannot build the fence clients: {}",
                    err.chain()
                );
                return None;
            }
        }
    }
    stores.as_ref()
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

trait ParseLsn {
    fn parse_lsn(&self) -> std::result::Result<u64, String>;
}

impl ParseLsn for String {
    fn parse_lsn(&self) -> std::result::Result<u64, String> {
        Lsn::parse(self)
            .map(|l| l.0)
            .ok_or_else(|| format!("{self:?} is not a WAL position"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_confirmed_only_by_a_poll_that_began_after_it() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        // A poll already in flight when the request committed cannot confirm it...
        let early = tracker.begin_poll();
        let ticket = tracker.ticket();
        tracker.observe(early, 1, 100, Some(100), t0);
        assert!(!tracker.confirms(ticket));
        // ...a poll that began after it can, once the flush reaches its insert position.
        let later = tracker.begin_poll();
        tracker.observe(later, 1, 180, Some(150), t0);
        assert!(!tracker.confirms(ticket), "flush 150 < insert 180");
        assert_eq!(tracker.unconfirmed_since(), Some(t0));
        let next = tracker.begin_poll();
        tracker.observe(next, 1, 260, Some(200), t0);
        assert!(
            tracker.confirms(ticket),
            "flush 200 covers the poll that read 180"
        );
        assert!(!tracker.confirms(tracker.ticket()));
        assert_eq!(tracker.last_flush(), Some(Lsn(200)));
    }

    #[test]
    fn without_a_slot_nothing_is_confirmed_and_the_wait_is_seen() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        let ticket = tracker.ticket();
        for i in 0..10u64 {
            let poll = tracker.begin_poll();
            tracker.observe(poll, 1, 100 + i, None, t0 + Duration::from_millis(i));
        }
        assert!(!tracker.confirms(ticket));
        assert_eq!(tracker.unconfirmed_since(), Some(t0));
        // The slot comes back, caught up: everything is confirmed at once.
        let poll = tracker.begin_poll();
        tracker.observe(poll, 1, 500, Some(500), t0);
        assert!(tracker.confirms(ticket));
        assert_eq!(tracker.unconfirmed_since(), None);
    }

    #[test]
    fn after_a_reconnect_only_polls_of_the_new_server_count() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(20);
        let mut tracker = Tracker::default();
        let ticket = tracker.ticket();
        let poll = tracker.begin_poll();
        // The old leader's position, never flushed by the DR region before it died.
        tracker.observe(poll, 1, 900, Some(500), t0);
        let at = |timeline, lsn| WalPosition { timeline, lsn };
        assert!(tracker.flushed(at(1, 500)) && !tracker.flushed(at(1, 501)));
        assert!(!tracker.flushed(at(2, 10)), "another timeline's position");
        tracker.forget_pending();
        assert_eq!(tracker.unconfirmed_since(), None, "the clock starts again");
        assert!(
            !tracker.flushed(at(1, 1)),
            "another server's positions say nothing here"
        );
        let poll = tracker.begin_poll();
        tracker.observe(poll, 1, 700, Some(650), later);
        assert_eq!(tracker.unconfirmed_since(), Some(later));
        let poll = tracker.begin_poll();
        tracker.observe(poll, 1, 720, Some(700), later);
        assert!(
            tracker.confirms(ticket),
            "a poll begun after the commit, covered"
        );
    }

    #[test]
    fn a_new_timeline_forgets_the_old_servers_positions() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        let poll = tracker.begin_poll();
        // A stale primary (timeline 3) whose DR slot is far ahead in LSN terms...
        tracker.observe(poll, 3, 9_000, Some(9_000), t0);
        let commit = WalPosition {
            timeline: 4,
            lsn: 5_000,
        };
        assert!(
            !tracker.flushed(commit),
            "...never confirms the new leader's commit"
        );
        let poll = tracker.begin_poll();
        tracker.observe(poll, 4, 5_100, Some(4_000), t0);
        assert!(!tracker.flushed(commit));
        let poll = tracker.begin_poll();
        tracker.observe(poll, 4, 5_200, Some(5_000), t0);
        assert!(tracker.flushed(commit));
    }

    #[test]
    fn the_pending_polls_are_bounded_and_merging_never_confirms_early() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        let ticket = tracker.ticket();
        for i in 0..(MAX_PENDING_POLLS as u64 * 3) {
            let poll = tracker.begin_poll();
            tracker.observe(poll, 1, 1_000 + i, Some(999), t0);
        }
        assert!(tracker.pending.len() <= MAX_PENDING_POLLS);
        assert_eq!(tracker.unconfirmed_since(), Some(t0));
        assert!(!tracker.confirms(ticket));
        // The first poll's position alone is not enough: it was merged into a later one.
        let poll = tracker.begin_poll();
        tracker.observe(poll, 1, 99_999, Some(1_000), t0);
        assert!(!tracker.confirms(ticket));
        let poll = tracker.begin_poll();
        tracker.observe(poll, 1, 99_999, Some(99_999), t0);
        assert!(tracker.confirms(ticket));
    }

    #[test]
    fn a_request_waits_no_longer_than_the_timeout() {
        let receipt = DrReceipt::new(
            DrReceiptConfig {
                slot: "dob_dr".into(),
                timeout: Duration::from_millis(50),
                detach_after: Duration::from_secs(10),
            },
            None,
        );
        let started = Instant::now();
        assert_eq!(
            receipt.wait(Some(WalPosition {
                timeline: 1,
                lsn: 1
            })),
            Receipt::TimedOut
        );
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50) && took < Duration::from_secs(2));
        // Without a position nothing could confirm it: no wait at all.
        let started = Instant::now();
        assert_eq!(receipt.wait(None), Receipt::TimedOut);
        assert!(started.elapsed() < Duration::from_millis(50));
        assert_eq!(receipt.stats(Instant::now()).timed_out, 2);
    }

    #[test]
    fn slot_names_and_timeouts_are_checked() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(DrReceiptConfig::from_lookup(&env(&[])).unwrap(), None);
        let config = DrReceiptConfig::from_lookup(&env(&[("DOB_DR_RECEIPT_SLOT", "dob_dr")]))
            .unwrap()
            .unwrap();
        assert_eq!(config.timeout, Duration::from_secs(3));
        for bad in [
            &[("DOB_DR_RECEIPT_SLOT", "dob-dr")][..],
            &[("DOB_DR_RECEIPT_SLOT", "x'; DROP")],
            &[
                ("DOB_DR_RECEIPT_SLOT", "dob_dr"),
                ("DOB_DR_RECEIPT_TIMEOUT_MS", "5"),
            ],
            &[
                ("DOB_DR_RECEIPT_SLOT", "dob_dr"),
                ("DOB_DR_RECEIPT_TIMEOUT_MS", "soon"),
            ],
            &[
                ("DOB_DR_RECEIPT_SLOT", "dob_dr"),
                ("DOB_DR_DETACH_AFTER_MS", "999"),
            ],
            &[
                ("DOB_DR_RECEIPT_SLOT", "dob_dr"),
                ("DOB_DR_DETACH_AFTER_MS", "-1"),
            ],
        ] {
            let bad: &'static [(&'static str, &'static str)] =
                Box::leak(bad.to_vec().into_boxed_slice());
            assert!(DrReceiptConfig::from_lookup(&env(bad)).is_err(), "{bad:?}");
        }
    }
}
