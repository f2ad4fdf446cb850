//! Cross-region write fencing: which region may take writes, recorded as a *promotion
//! epoch* in several buckets, and the lease that makes `dob-api` stop writing when it
//! loses it.
//!
//! Inside a region Patroni and etcd decide who leads. Between regions nothing does: the
//! DR region is promoted by a person (`dob-promote --takeover`), and the old region may
//! still be up, cut off or coming back, with its own leader, still writable. So the
//! decision is written down where both regions look, in a way a partition cannot
//! outvote ([`crate::failover::quorum`]):
//!
//! - The records live in every bucket of `DOB_FENCE_BUCKETS`: each region's backup
//!   bucket and a small witness bucket in a third region. A change counts once it is in
//!   a majority of them; a reader believes only valid records from a majority.
//! - `epoch` (`<prefix>/fence/epoch.json`) names the writing region and an epoch that
//!   only grows. Only the takeover writes it, and `dob-promote --fence-init` creates it
//!   at deploy (epoch 0, the home region), both on the DR host; the home region's host
//!   role is explicitly denied it. A missing or unreadable record is never "writer":
//!   fewer than a majority of valid records and nobody writes.
//! - `detach` (`<prefix>/fence/detach.json`) says whether the writing region still waits
//!   for the DR region's receipt before a 204. The writing region's `dob-api`s write it
//!   (`--fence-init` creates it).
//! - Every `dob-api` reads the records every `DOB_FENCE_INTERVAL_MS` and acknowledges a
//!   write only while it holds a *lease*: a read round *sent* less than
//!   `DOB_FENCE_LEASE_MS` ago found this region the writer in a majority, and the write
//!   can commit (pool wait plus statement timeout) before that lease ends. A region cut
//!   off from a majority stops writing when its lease runs out; one that comes back
//!   reads the new epoch before its first write. Its `/readyz` turns 503 while it is
//!   fenced and its database is writable, so neither the load balancer nor DNS sends
//!   clients back to it.
//! - The takeover writes epoch N+1 to a majority, waits out the lease, and only then
//!   promotes: a `dob-api` of the old region has by then read N+1 (any majority it reads
//!   shares a bucket with the takeover's) or lost its lease.
//!
//! [`verdict`], [`detach_finding`] and [`FenceState`] are pure (the clock is passed
//! in); [`read_epochs`], [`read_detach`], [`initialize`] and [`spawn_watcher`] talk to
//! the buckets.

use crate::config::S3Config;
use crate::failover::promote::Lsn;
use crate::failover::quorum::{
    self, majority_records, Read, RecordStore, S3RecordStore, StoreRead, WriteReport,
};
use crate::s3::ObjectStore;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The promotion epoch's key under the bucket's prefix.
pub const EPOCH_KEY: &str = "fence/epoch.json";
/// The DR receipt state's key under the bucket's prefix.
pub const DETACH_KEY: &str = "fence/detach.json";
/// One S3 request of a read round or a takeover's write may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// A 204 is sent only with at least this much of the lease left after its COMMIT (and
/// after its DR receipt): the time from that check to the answer leaving the host, with
/// room for a stalled thread. Far below the lease less a read interval, so it refuses
/// nothing while the fence answers.
pub const ACK_MARGIN: Duration = Duration::from_secs(1);
/// Credentials from an instance profile expire: the watcher builds its clients anew
/// this often (and after any failed read).
const RECONNECT_EVERY: Duration = Duration::from_secs(300);

/// One region's bucket, as named in `DOB_FENCE_BUCKETS` (`bucket@region`, or
/// `bucket@region=http://endpoint` for an S3-compatible server of that region's own).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceBucket {
    pub bucket: String,
    pub region: String,
    /// Overrides `DOB_S3_ENDPOINT` for this bucket.
    pub endpoint: Option<String>,
}

/// The fencing configuration shared by `dob-api` and `dob-promote --takeover`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceConfig {
    /// `DOB_REGION`: the region this host is in.
    pub region: String,
    /// `DOB_FENCE_HOME_REGION`: the region that writes while no record exists.
    pub home_region: String,
    pub buckets: Vec<FenceBucket>,
    /// `DOB_S3_PREFIX` (default `dob`), as for backups.
    pub prefix: String,
    /// `DOB_S3_ENDPOINT`: a non-AWS S3 endpoint (tests, the drill).
    pub endpoint: Option<String>,
    pub lease: Duration,
    pub interval: Duration,
}

impl FenceConfig {
    /// `None` when `DOB_FENCE_BUCKETS` is unset: fencing off (the local stack, a single
    /// region). When it is set, everything else must be consistent.
    pub fn from_lookup(lookup: &impl Fn(&str) -> Option<String>) -> Result<Option<FenceConfig>> {
        let get = |key: &str| lookup(key).filter(|v| !v.trim().is_empty());
        let Some(raw) = get("DOB_FENCE_BUCKETS") else {
            return Ok(None);
        };
        let mut buckets = Vec::new();
        for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (name, endpoint) = match entry.split_once('=') {
                Some((name, endpoint))
                    if endpoint.starts_with("http://") || endpoint.starts_with("https://") =>
                {
                    (name, Some(endpoint.trim_end_matches('/').to_owned()))
                }
                Some(_) => {
                    return Err(Error::config(
                        "DOB_FENCE_BUCKETS",
                        format!(
                            "{entry:?}: the endpoint after = must start with http:// or https://"
                        ),
                    ))
                }
                None => (entry, None),
            };
            let (bucket, region) = name
                .split_once('@')
                .filter(|(b, r)| !b.is_empty() && !r.is_empty())
                .ok_or_else(|| {
                    Error::config(
                        "DOB_FENCE_BUCKETS",
                        format!("{entry:?} is not bucket@region"),
                    )
                })?;
            buckets.push(FenceBucket {
                bucket: bucket.to_owned(),
                region: region.to_owned(),
                endpoint,
            });
        }
        if buckets.is_empty() || buckets.len() > 8 {
            return Err(Error::config(
                "DOB_FENCE_BUCKETS",
                "must list from 1 to 8 buckets as bucket@region,bucket@region",
            ));
        }
        let region = get("DOB_REGION").ok_or_else(|| {
            Error::config(
                "DOB_REGION",
                "is required with DOB_FENCE_BUCKETS (this host's region)",
            )
        })?;
        let home_region = get("DOB_FENCE_HOME_REGION").ok_or_else(|| {
            Error::config(
                "DOB_FENCE_HOME_REGION",
                "is required with DOB_FENCE_BUCKETS (the region dob-promote --fence-init names in epoch 0)",
            )
        })?;
        for (key, value) in [
            ("DOB_REGION", &region),
            ("DOB_FENCE_HOME_REGION", &home_region),
        ] {
            if !buckets.iter().any(|b| &b.region == value) {
                return Err(Error::config(
                    key,
                    format!("{value:?} has no bucket in DOB_FENCE_BUCKETS"),
                ));
            }
        }
        let millis = |key: &str, default, min, max| {
            crate::config::millis_in_range(&get, key, default, min, max)
        };
        let lease = millis("DOB_FENCE_LEASE_MS", 15_000, 2_000, 600_000)?;
        let interval = millis("DOB_FENCE_INTERVAL_MS", 2_000, 200, 60_000)?;
        // A lease must outlive a read round that is slow or fails once.
        if interval * 2 + REQUEST_TIMEOUT > lease {
            return Err(Error::config(
                "DOB_FENCE_LEASE_MS",
                format!(
                    "{} ms is too short: it must be at least twice DOB_FENCE_INTERVAL_MS plus {} s",
                    lease.as_millis(),
                    REQUEST_TIMEOUT.as_secs()
                ),
            ));
        }
        let prefix = get("DOB_S3_PREFIX")
            .unwrap_or_else(|| "dob".to_owned())
            .trim_matches('/')
            .to_owned();
        Ok(Some(FenceConfig {
            region,
            home_region,
            buckets,
            prefix,
            endpoint: get("DOB_S3_ENDPOINT"),
            lease,
            interval,
        }))
    }

    fn s3_config(&self, bucket: &FenceBucket) -> S3Config {
        S3Config {
            bucket: bucket.bucket.clone(),
            prefix: self.prefix.clone(),
            region: bucket.region.clone(),
            endpoint: bucket.endpoint.clone().or_else(|| self.endpoint.clone()),
            sse: None,
        }
    }
}

/// Which region writes, from when, and who decided: the `epoch` key, written only by a
/// takeover or by `--fence-init` (the home region's host role is denied it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    pub epoch: u64,
    pub writer_region: String,
    /// RFC 3339, when the record was written (so no two records are alike).
    pub promoted_at: String,
    #[serde(default)]
    pub previous_writer_region: Option<String>,
    /// The host that ran the takeover.
    #[serde(default)]
    pub promoted_by: Option<String>,
}

/// Whether the writing region still waits for the DR region's receipt before a 204:
/// the `detach` key, written by the writing region's `dob-api`s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DetachRecord {
    /// The promotion epoch the writing region held when it wrote this.
    pub epoch: u64,
    pub state: AttachState,
    /// With `detached` and `reattaching`: the last WAL position the DR region confirmed
    /// before the writing region first went on alone. Writes after it may exist only
    /// there.
    #[serde(default)]
    pub confirmed_lsn: Option<String>,
    /// RFC 3339: with `detached` and `reattaching`, when the writing region first went
    /// on alone (another host's later detach, and the way back, keep it); with
    /// `attached`, when the region re-attached.
    pub since: String,
    #[serde(default)]
    pub by: Option<String>,
    /// Grows with every write, so no two records (and no two ETags) are alike.
    pub seq: u64,
}

/// See [`DetachRecord`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachState {
    /// Every 204 waited for the DR region's flush.
    Attached,
    /// The writing region acknowledges without the DR region.
    Detached,
    /// On the way back: no more writes alone, but some acknowledged alone may not be
    /// in the DR region yet. A takeover treats it as detached.
    Reattaching,
}

/// Who writes, according to a majority of the buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This region writes, as of `epoch`.
    Writer { epoch: u64 },
    /// Another region holds writes since `epoch`.
    Fenced { epoch: u64, writer_region: String },
    /// Fewer than a majority of buckets gave a valid record: nobody may be sure, so
    /// nobody writes (the lease runs out).
    Unknown,
}

/// Fails closed: without valid records from a majority of `total` buckets there is no
/// verdict (a missing or unreadable record is never "writer"). Among a majority the
/// highest epoch wins, because a takeover's epoch is in a majority too and any two
/// majorities share a bucket. At the same epoch, a record naming another region fences
/// (two takeovers raced: no region may write until a person settles it).
pub fn verdict(reads: &[StoreRead<FenceRecord>], total: usize, region: &str) -> Verdict {
    let Some(records) = majority_records(reads, total) else {
        return Verdict::Unknown;
    };
    let top = records.iter().map(|r| r.epoch).max().expect("a majority");
    match records
        .iter()
        .find(|r| r.epoch == top && r.writer_region != region)
    {
        Some(record) => Verdict::Fenced {
            epoch: top,
            writer_region: record.writer_region.clone(),
        },
        None => Verdict::Writer { epoch: top },
    }
}

/// The highest-epoch record read, if any.
pub fn top_record(reads: &[StoreRead<FenceRecord>]) -> Option<&FenceRecord> {
    reads
        .iter()
        .filter_map(|r| r.read.record())
        .max_by_key(|r| r.epoch)
}

/// What a takeover learnt from the `detach` key after its epoch was in a majority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetachFinding {
    /// Every acknowledged write of the old region waited for the DR region's flush.
    Attached,
    /// The old region acknowledged writes without the DR region from this record on.
    Detached(DetachRecord),
    /// A majority could not be read: the loss cannot be ruled out.
    Unknown(String),
}

/// Reads the `detach` answers a takeover got once epoch `superseded + 1` was in a
/// majority: any record at `superseded` or later that is not `attached` means the old
/// region went on alone (and a majority must answer, or nothing is known).
pub fn detach_finding(
    reads: &[StoreRead<DetachRecord>],
    total: usize,
    superseded: u64,
) -> DetachFinding {
    let Some(records) = majority_records(reads, total) else {
        let failed: Vec<String> = reads
            .iter()
            .filter(|r| r.read.record().is_none())
            .map(|r| match &r.read {
                Read::Failed(why) => format!("{}: {why}", r.store),
                _ => format!("{}: no record", r.store),
            })
            .collect();
        return DetachFinding::Unknown(format!(
            "the DR receipt state is not readable in a majority of {total} buckets ({})",
            failed.join("; ")
        ));
    };
    records
        .into_iter()
        .filter(|r| r.epoch >= superseded && r.state != AttachState::Attached)
        .max_by_key(|r| r.seq)
        .map_or(DetachFinding::Attached, |r| {
            DetachFinding::Detached(r.clone())
        })
}

/// Why a write is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteRefusal {
    /// Another region holds writes.
    Fenced { epoch: u64, writer_region: String },
    /// No read round confirmed this region as the writer within the lease.
    NoLease { read_age: Option<Duration> },
}

impl std::fmt::Display for WriteRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteRefusal::Fenced {
                epoch,
                writer_region,
            } => write!(
                f,
                "this region is fenced: {writer_region} has taken writes over (promotion epoch {epoch})"
            ),
            WriteRefusal::NoLease { read_age: None } => {
                write!(f, "writes wait for the first read of the fence record")
            }
            WriteRefusal::NoLease {
                read_age: Some(age),
            } => write!(
                f,
                "writes are paused: the fence record was last confirmed {:.1} s ago",
                age.as_secs_f64()
            ),
        }
    }
}

/// The detach record a writing region goes on alone under: in force (in a majority, at
/// the epoch it holds) as of a read sent at `sent`; good for one lease from then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetachLease {
    pub epoch: u64,
    pub seq: u64,
    pub sent: Instant,
}

/// What `dob-api` knows about the fence, updated by the watcher and read on every PUT
/// (two atomic loads; the mutex only on the refusal path and on updates).
pub struct FenceState {
    origin: Instant,
    lease: Duration,
    /// Milliseconds after `origin` at which the last read round that found this region
    /// the writer started, plus one (0: never).
    writer_since_ms: AtomicU64,
    fenced: AtomicBool,
    read_once: AtomicBool,
    detail: Mutex<Verdict>,
    detached: Mutex<Option<DetachLease>>,
}

impl FenceState {
    pub fn new(lease: Duration, origin: Instant) -> FenceState {
        FenceState {
            origin,
            lease,
            writer_since_ms: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            read_once: AtomicBool::new(false),
            detail: Mutex::new(Verdict::Unknown),
            detached: Mutex::new(None),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// The epoch this region writes at, while its lease holds at `now`.
    pub fn writer_epoch(&self, now: Instant) -> Option<u64> {
        self.check_write(now, Duration::ZERO).ok()?;
        match *self.detail.lock().unwrap_or_else(|p| p.into_inner()) {
            Verdict::Writer { epoch } => Some(epoch),
            _ => None,
        }
    }

    /// A detach found (or made) in force: writes may be acknowledged without the DR
    /// region's receipt until a lease after `lease.sent`. A later read extends it.
    pub fn set_detached(&self, lease: DetachLease) {
        let mut detached = self.detached.lock().unwrap_or_else(|p| p.into_inner());
        match &*detached {
            Some(current) if current.epoch == lease.epoch && current.sent >= lease.sent => {}
            _ => *detached = Some(lease),
        }
    }

    /// No detach in force any more (re-attached, or it could not be read).
    pub fn clear_detached(&self) {
        *self.detached.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether a write may be acknowledged without the DR region's receipt at `now`: a
    /// detach in force at the epoch this region still writes at, read less than a lease
    /// ago.
    pub fn detached_at(&self, now: Instant) -> Option<DetachLease> {
        let lease = (*self.detached.lock().unwrap_or_else(|p| p.into_inner()))?;
        (now.saturating_duration_since(lease.sent) < self.lease
            && self.writer_epoch(now) == Some(lease.epoch))
        .then_some(lease)
    }

    /// Records a read round that started at `started`. Returns whether the verdict
    /// changed (for logging).
    pub fn record(&self, verdict: Verdict, started: Instant) -> bool {
        let mut detail = self.detail.lock().unwrap_or_else(|p| p.into_inner());
        match &verdict {
            Verdict::Writer { .. } => {
                let ms = started.saturating_duration_since(self.origin).as_millis() as u64 + 1;
                self.writer_since_ms.fetch_max(ms, Ordering::AcqRel);
                self.fenced.store(false, Ordering::Release);
            }
            Verdict::Fenced { .. } => {
                self.writer_since_ms.store(0, Ordering::Release);
                self.fenced.store(true, Ordering::Release);
                self.clear_detached();
            }
            // Nothing learnt: the lease runs out on its own.
            Verdict::Unknown => {}
        }
        if verdict != Verdict::Unknown {
            self.read_once.store(true, Ordering::Release);
        }
        let changed = *detail != verdict;
        *detail = verdict;
        changed
    }

    /// Whether a write that starts `now` and may take up to `hold` (waiting for a
    /// pooled connection, then its statement) may go ahead: the lease must still hold
    /// when the write can last commit, so that no write of this region commits after a
    /// takeover has waited out the lease.
    pub fn check_write(
        &self,
        now: Instant,
        hold: Duration,
    ) -> std::result::Result<(), WriteRefusal> {
        let since = self.writer_since_ms.load(Ordering::Acquire);
        if since > 0 {
            let confirmed = self.origin + Duration::from_millis(since - 1);
            if now.saturating_duration_since(confirmed) + hold < self.lease {
                return Ok(());
            }
        }
        if self.fenced.load(Ordering::Acquire) {
            if let Verdict::Fenced {
                epoch,
                writer_region,
            } = &*self.detail.lock().unwrap_or_else(|p| p.into_inner())
            {
                return Err(WriteRefusal::Fenced {
                    epoch: *epoch,
                    writer_region: writer_region.clone(),
                });
            }
        }
        Err(WriteRefusal::NoLease {
            read_age: (since > 0).then(|| {
                now.saturating_duration_since(self.origin + Duration::from_millis(since - 1))
            }),
        })
    }

    /// Another region positively holds writes (not merely an expired lease).
    pub fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::Acquire)
    }

    /// Whether any read round has had an answer since the start.
    pub fn has_read(&self) -> bool {
        self.read_once.load(Ordering::Acquire)
    }

    /// The last verdict, for `/metrics` and logs.
    pub fn verdict(&self) -> Verdict {
        self.detail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// One client per bucket, built with short request deadlines.
pub struct FenceStores {
    stores: Vec<S3RecordStore>,
}

impl FenceStores {
    pub fn connect(config: &FenceConfig) -> Result<FenceStores> {
        let stores = config
            .buckets
            .iter()
            .map(|bucket| {
                let mut store = ObjectStore::connect(&config.s3_config(bucket))?;
                store.set_request_timeout(REQUEST_TIMEOUT);
                Ok(S3RecordStore::new(
                    format!("{}@{}", bucket.bucket, bucket.region),
                    store,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FenceStores { stores })
    }

    pub fn all(&self) -> Vec<&dyn RecordStore> {
        self.stores.iter().map(|s| s as &dyn RecordStore).collect()
    }
}

/// Reads the promotion epoch from every store at once.
pub fn read_epochs(stores: &[&dyn RecordStore]) -> Vec<StoreRead<FenceRecord>> {
    quorum::read_all(stores, EPOCH_KEY)
}

/// Reads the DR receipt state from every store at once.
pub fn read_detach(stores: &[&dyn RecordStore]) -> Vec<StoreRead<DetachRecord>> {
    quorum::read_all(stores, DETACH_KEY)
}

/// The writing region's half of the detach protocol: it may acknowledge writes without
/// the DR region's receipt only once its detach record is in a majority
/// (`detach_write` won) and a read of the epoch *sent after that* still finds this
/// region the writer at `held_epoch`. The takeover does the mirror image (epoch first,
/// then the detach record), so one of the two always sees the other.
pub fn may_go_alone(
    detach_write: &WriteReport,
    epoch_reads_after: &[StoreRead<FenceRecord>],
    total: usize,
    region: &str,
    held_epoch: u64,
) -> bool {
    detach_write.won()
        && verdict(epoch_reads_after, total, region) == Verdict::Writer { epoch: held_epoch }
}

/// The newest `detach` record among `reads`, if it says `detached` at `epoch` and that
/// very record (same sequence number) is in a majority of the `total` buckets: only then
/// may a writing region lean on it (a record that landed in fewer, from a write whose
/// outcome was unknown, may be missed by a takeover's read).
pub fn detach_in_force(
    reads: &[StoreRead<DetachRecord>],
    total: usize,
    epoch: u64,
) -> Option<&DetachRecord> {
    let latest = reads
        .iter()
        .filter_map(|r| r.read.record())
        .max_by_key(|r| r.seq)?;
    let copies = reads
        .iter()
        .filter(|r| r.read.record() == Some(latest))
        .count();
    (latest.state == AttachState::Detached
        && latest.epoch == epoch
        && copies >= quorum::majority(total))
    .then_some(latest)
}

/// Writes a new `detach` record with the next sequence number to a majority, each bucket
/// only if its record is older. Returns the report and the record written.
fn write_attach_state(
    stores: &[&dyn RecordStore],
    make: impl FnOnce(u64, Option<&DetachRecord>) -> DetachRecord,
) -> std::result::Result<(WriteReport, DetachRecord), String> {
    let reads = read_detach(stores);
    let latest = reads
        .iter()
        .filter_map(|r| r.read.record())
        .max_by_key(|r| r.seq);
    let seq = latest
        .map_or(0, |r| r.seq)
        .checked_add(1)
        .ok_or("the detach record's sequence number is at its largest: settle it by hand")?;
    let record = make(seq, latest);
    let admit = |current: Option<&DetachRecord>| match current {
        Some(c) if c.seq >= seq => Err(format!("holds a newer record (sequence {})", c.seq)),
        _ => Ok(()),
    };
    let report = quorum::write_majority(stores, DETACH_KEY, &record, &admit);
    Ok((report, record))
}

/// Where the window of writes acknowledged alone starts, for a record about to be
/// written at `epoch`: while the latest record at that epoch is not `attached` (another
/// host detached first, or the region is on its way back), the window is still open, so
/// its start stays: the earlier time and the lower confirmed WAL position (none known
/// beats any). Otherwise it starts now, at `confirmed`.
pub fn loss_window_start(
    latest: Option<&DetachRecord>,
    epoch: u64,
    now: &str,
    confirmed: Option<String>,
) -> (String, Option<String>) {
    let Some(open) = latest.filter(|r| r.epoch == epoch && r.state != AttachState::Attached) else {
        return (now.to_owned(), confirmed);
    };
    let lower = match (open.confirmed_lsn.as_deref(), confirmed.as_deref()) {
        (Some(a), Some(b)) => match (Lsn::parse(a), Lsn::parse(b)) {
            (Some(x), Some(y)) if y < x => confirmed.clone(),
            (Some(_), Some(_)) => open.confirmed_lsn.clone(),
            // An unreadable position bounds nothing.
            _ => None,
        },
        _ => None,
    };
    (open.since.clone(), lower)
}

/// The writing region's half of the detach protocol, run by a `dob-api` whose DR region
/// has not confirmed for too long: record `detached` (at `epoch`, with the last WAL
/// position the DR region confirmed) in a majority, *then* read the epoch; go on alone
/// only if it is still `epoch` naming `region` ([`may_go_alone`]).
pub fn detach(
    stores: &[&dyn RecordStore],
    region: &str,
    epoch: u64,
    confirmed_lsn: Option<String>,
    now: &str,
    by: Option<String>,
) -> std::result::Result<DetachLease, String> {
    let (report, record) = write_attach_state(stores, |seq, latest| {
        let (since, confirmed_lsn) = loss_window_start(latest, epoch, now, confirmed_lsn);
        DetachRecord {
            epoch,
            state: AttachState::Detached,
            confirmed_lsn,
            since,
            by,
            seq,
        }
    })?;
    if !report.won() {
        return Err(format!(
            "the detach is not in a majority ({})",
            report.summary()
        ));
    }
    let sent = Instant::now();
    let epochs = read_epochs(stores);
    if may_go_alone(&report, &epochs, stores.len(), region, epoch) {
        Ok(DetachLease {
            epoch,
            seq: record.seq,
            sent,
        })
    } else {
        Err(format!(
            "after the detach, the epoch is not {epoch} naming {region} in a majority ({:?}): a takeover may be under way",
            verdict(&epochs, stores.len(), region)
        ))
    }
}

/// The way back: `reattaching` (no more writes alone, but some acknowledged alone may not
/// be in the DR region yet; a takeover treats it as detached), then, once the DR region
/// has caught up with everything acknowledged alone, `attached`. Counts only in a
/// majority.
pub fn write_reattach(
    stores: &[&dyn RecordStore],
    epoch: u64,
    state: AttachState,
    now: &str,
    by: Option<String>,
) -> std::result::Result<u64, String> {
    let (report, record) = write_attach_state(stores, |seq, latest| {
        let (since, confirmed_lsn) = match state {
            AttachState::Attached => (now.to_owned(), None),
            // The way back adds nothing to the window: it keeps what the detach opened.
            _ => loss_window_start(
                latest,
                epoch,
                now,
                latest.and_then(|r| r.confirmed_lsn.clone()),
            ),
        };
        DetachRecord {
            epoch,
            state,
            confirmed_lsn,
            since,
            by,
            seq,
        }
    })?;
    if report.won() {
        Ok(record.seq)
    } else {
        Err(format!(
            "{state:?} is not in a majority ({})",
            report.summary()
        ))
    }
}

/// The newest `detach` record a majority read shows, for a re-attach that lost a race.
pub fn latest_detach(stores: &[&dyn RecordStore]) -> Option<DetachRecord> {
    read_detach(stores)
        .into_iter()
        .filter_map(|r| match r.read {
            Read::Record { record, .. } => Some(record),
            _ => None,
        })
        .max_by_key(|r| r.seq)
}

/// What `dob-promote --fence-init` did to one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InitOutcome {
    pub bucket: String,
    pub key: &'static str,
    /// `created`, `kept` (a valid record was there already) or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Creates the records a deploy starts from, where they do not exist yet: epoch 0
/// naming `home_region`, and the DR receipt state `attached`. Never replaces a record
/// (`If-None-Match: *`): running it again, or after a takeover, changes nothing.
pub fn initialize(
    stores: &[&dyn RecordStore],
    home_region: &str,
    now: &str,
    by: Option<String>,
) -> Vec<InitOutcome> {
    let epoch = FenceRecord {
        epoch: 0,
        writer_region: home_region.to_owned(),
        promoted_at: now.to_owned(),
        previous_writer_region: None,
        promoted_by: by.clone(),
    };
    let detach = DetachRecord {
        epoch: 0,
        state: AttachState::Attached,
        confirmed_lsn: None,
        since: now.to_owned(),
        by,
        seq: 0,
    };
    let only_new = |current: Option<&FenceRecord>| match current {
        None => Ok(()),
        Some(_) => Err(KEPT.to_owned()),
    };
    let only_new_detach = |current: Option<&DetachRecord>| match current {
        None => Ok(()),
        Some(_) => Err(KEPT.to_owned()),
    };
    let mut outcomes = init_outcomes(
        EPOCH_KEY,
        quorum::write_majority(stores, EPOCH_KEY, &epoch, &only_new),
    );
    outcomes.extend(init_outcomes(
        DETACH_KEY,
        quorum::write_majority(stores, DETACH_KEY, &detach, &only_new_detach),
    ));
    outcomes
}

/// The refusal `initialize` gives itself for a record that exists.
const KEPT: &str = "a valid record is there already";

fn init_outcomes(key: &'static str, report: WriteReport) -> Vec<InitOutcome> {
    let mut outcomes: Vec<InitOutcome> = report
        .written
        .into_iter()
        .map(|bucket| InitOutcome {
            bucket,
            key,
            result: "created",
            error: None,
        })
        .collect();
    for (bucket, why) in report.refused.into_iter().chain(report.unknown) {
        let kept = why == KEPT;
        outcomes.push(InitOutcome {
            bucket,
            key,
            result: if kept { "kept" } else { "failed" },
            error: (!kept).then_some(why),
        });
    }
    outcomes.sort_by(|a, b| a.bucket.cmp(&b.bucket));
    outcomes
}

/// Starts the thread that keeps `state` current: a read round every interval, forever.
pub fn spawn_watcher(config: FenceConfig, state: Arc<FenceState>) -> Result<()> {
    std::thread::Builder::new()
        .name("fence-watch".into())
        .spawn(move || watch(&config, &state))
        .map_err(|e| Error::io("starting the fence watcher thread", e))?;
    Ok(())
}

fn watch(config: &FenceConfig, state: &FenceState) {
    let mut stores: Option<(FenceStores, Instant)> = None;
    let mut failing = false;
    let total = config.buckets.len();
    loop {
        // The lease counts from here: before any request of the round is sent.
        let started = Instant::now();
        if stores
            .as_ref()
            .is_some_and(|(_, at)| started.duration_since(*at) >= RECONNECT_EVERY)
        {
            stores = None;
        }
        if stores.is_none() {
            match FenceStores::connect(config) {
                Ok(s) => stores = Some((s, started)),
                Err(err) => log::warn!("fence: cannot build the S3 clients: {}", err.chain()),
            }
        }
        if let Some((current, _)) = &stores {
            // The detach state first, then the epoch: a detach in force must have been
            // in a majority before the epoch was read (see `may_go_alone`).
            let detach_reads = read_detach(&current.all());
            let reads = read_epochs(&current.all());
            let failures: Vec<String> = reads
                .iter()
                .filter_map(|r| match &r.read {
                    Read::Failed(why) => Some(format!("{}: {why}", r.store)),
                    Read::Absent => Some(format!("{}: no record", r.store)),
                    Read::Record { .. } => None,
                })
                .collect();
            let verdict = verdict(&reads, total, &config.region);
            if !failures.is_empty() {
                if !failing {
                    log::warn!("fence: reading the record failed: {}", failures.join("; "));
                }
                failing = true;
                stores = None;
            } else if failing {
                log::info!("fence: every bucket answers again");
                failing = false;
            }
            let took = started.elapsed();
            if took > config.interval {
                // A slow round eats into the lease; say so before writes pause.
                log::warn!(
                    "fence: a read round took {:.1} s (interval {:.1} s, lease {:.1} s)",
                    took.as_secs_f64(),
                    config.interval.as_secs_f64(),
                    config.lease.as_secs_f64()
                );
            }
            if let Verdict::Writer { epoch } = verdict {
                match detach_in_force(&detach_reads, total, epoch) {
                    Some(record) => state.set_detached(DetachLease {
                        epoch,
                        seq: record.seq,
                        sent: started,
                    }),
                    None => state.clear_detached(),
                }
            }
            if state.record(verdict.clone(), started) {
                match &verdict {
                    Verdict::Writer { epoch } => {
                        log::info!("fence: {} writes (epoch {epoch})", config.region)
                    }
                    Verdict::Fenced {
                        epoch,
                        writer_region,
                    } => log::warn!(
                        "fence: {writer_region} holds writes (epoch {epoch}); this region refuses them"
                    ),
                    Verdict::Unknown => log::warn!(
                        "fence: fewer than {} of {total} buckets gave a valid record; writes stop when the lease ends",
                        quorum::majority(total)
                    ),
                }
            }
        }
        std::thread::sleep(config.interval.saturating_sub(started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, region: &str) -> Read<FenceRecord> {
        Read::Record {
            record: FenceRecord {
                epoch,
                writer_region: region.into(),
                promoted_at: "2026-12-04T00:00:00Z".into(),
                previous_writer_region: None,
                promoted_by: None,
            },
            etag: format!("\"e{epoch}\""),
        }
    }

    fn reads<R>(answers: Vec<Read<R>>) -> Vec<StoreRead<R>> {
        answers
            .into_iter()
            .enumerate()
            .map(|(i, read)| StoreRead {
                store: format!("bucket{i}"),
                read,
            })
            .collect()
    }

    const WEST: &str = "eu-west-1";
    const DR: &str = "eu-central-1";

    #[test]
    fn the_writer_is_the_highest_epoch_among_a_majority() {
        let three = reads(vec![record(0, WEST), record(0, WEST), record(0, WEST)]);
        assert_eq!(verdict(&three, 3, WEST), Verdict::Writer { epoch: 0 });
        assert_eq!(
            verdict(&three, 3, DR),
            Verdict::Fenced {
                epoch: 0,
                writer_region: WEST.into()
            }
        );
        // The takeover reached the DR and witness buckets: any majority sees it.
        let after = reads(vec![
            Read::Failed("cut".into()),
            record(1, DR),
            record(1, DR),
        ]);
        assert_eq!(verdict(&after, 3, DR), Verdict::Writer { epoch: 1 });
        let west_view = reads(vec![
            record(0, WEST),
            Read::Failed("cut".into()),
            record(1, DR),
        ]);
        assert_eq!(
            verdict(&west_view, 3, WEST),
            Verdict::Fenced {
                epoch: 1,
                writer_region: DR.into()
            }
        );
        // Failed back later: epoch 2 names the home region again.
        let back = reads(vec![record(2, WEST), record(1, DR), record(2, WEST)]);
        assert_eq!(verdict(&back, 3, WEST), Verdict::Writer { epoch: 2 });
    }

    #[test]
    fn a_missing_or_unreadable_record_never_makes_a_writer() {
        // The bug this replaces: no record in its own bucket and the DR bucket
        // unreadable read as "writer, epoch 0".
        let cut = reads(vec![
            Read::Absent,
            Read::Failed("timeout".into()),
            Read::Absent,
        ]);
        assert_eq!(verdict(&cut, 3, WEST), Verdict::Unknown);
        let one = reads(vec![
            record(0, WEST),
            Read::Failed("timeout".into()),
            Read::Absent,
        ]);
        assert_eq!(verdict(&one, 3, WEST), Verdict::Unknown, "one of three");
        let garbage = reads(vec![record(0, WEST), Read::Failed("not json".into())]);
        assert_eq!(
            verdict(&garbage, 2, WEST),
            Verdict::Unknown,
            "two of two needed"
        );
        assert_eq!(verdict(&[], 3, WEST), Verdict::Unknown);
    }

    #[test]
    fn a_tie_between_regions_fences_both() {
        let tie = reads(vec![record(3, WEST), record(3, DR), Read::Absent]);
        assert!(matches!(verdict(&tie, 3, WEST), Verdict::Fenced { .. }));
        assert!(matches!(verdict(&tie, 3, DR), Verdict::Fenced { .. }));
    }

    fn detach(epoch: u64, state: AttachState, seq: u64) -> Read<DetachRecord> {
        Read::Record {
            record: DetachRecord {
                epoch,
                state,
                confirmed_lsn: Some("0/3000000".into()),
                since: "t".into(),
                by: None,
                seq,
            },
            etag: format!("\"d{seq}\""),
        }
    }

    #[test]
    fn a_takeover_finds_a_detach_at_the_epoch_it_supersedes() {
        use AttachState::*;
        let attached = reads(vec![
            detach(4, Attached, 7),
            detach(4, Attached, 7),
            Read::Absent,
        ]);
        assert_eq!(detach_finding(&attached, 3, 4), DetachFinding::Attached);
        // One of the majority saw the detach: that is enough.
        let one = reads(vec![
            detach(4, Attached, 7),
            detach(4, Detached, 8),
            Read::Absent,
        ]);
        assert!(matches!(
            detach_finding(&one, 3, 4),
            DetachFinding::Detached(r) if r.seq == 8
        ));
        let reattaching = reads(vec![detach(4, Reattaching, 9), detach(4, Attached, 7)]);
        assert!(matches!(
            detach_finding(&reattaching, 3, 4),
            DetachFinding::Detached(_)
        ));
        // A detach from an older epoch was settled by the takeover that ended it.
        let old = reads(vec![detach(2, Detached, 3), detach(2, Detached, 3)]);
        assert_eq!(detach_finding(&old, 3, 4), DetachFinding::Attached);
        // Fewer than a majority readable: nothing is known.
        let cut = reads(vec![
            detach(4, Attached, 7),
            Read::Failed("timeout".into()),
            Read::Absent,
        ]);
        assert!(matches!(
            detach_finding(&cut, 3, 4),
            DetachFinding::Unknown(why) if why.contains("timeout") && why.contains("no record")
        ));
    }

    /// One step of either side of the detach/takeover race, on one bucket.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Step {
        HomeWritesDetach(usize),
        HomeReadsEpoch(usize),
        TakeoverWritesEpoch(usize),
        TakeoverReadsDetach(usize),
    }

    /// What goes wrong with one step: a write lost on the way (not applied, outcome
    /// unknown), a write applied whose answer was lost, a read that gets no answer.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum StepFault {
        Lost,
        AppliedUnknown,
        Unreadable,
    }

    /// Runs one interleaving of the two sides against three model buckets, with at most
    /// one fault per side, and returns (home went alone, takeover won its majority, the
    /// takeover's finding), each decided by the production functions.
    fn race(order: &[Step], faults: &[(Step, StepFault)]) -> (bool, bool, DetachFinding) {
        use AttachState::*;
        let fault = |step: Step| faults.iter().find(|(s, _)| *s == step).map(|(_, f)| *f);
        let initial = FenceRecord {
            epoch: 0,
            writer_region: WEST.into(),
            promoted_at: "t0".into(),
            previous_writer_region: None,
            promoted_by: None,
        };
        let taken = FenceRecord {
            epoch: 1,
            writer_region: DR.into(),
            ..initial.clone()
        };
        let attached = DetachRecord {
            epoch: 0,
            state: Attached,
            confirmed_lsn: None,
            since: "t0".into(),
            by: None,
            seq: 0,
        };
        let detached = DetachRecord {
            state: Detached,
            seq: 1,
            ..attached.clone()
        };
        let mut epochs = vec![initial; 3];
        let mut detaches = vec![attached; 3];
        let mut home_write = WriteReport {
            total: 3,
            ..WriteReport::default()
        };
        let mut takeover_write = home_write.clone();
        let (mut home_reads, mut takeover_reads) = (Vec::new(), Vec::new());
        let name = |b: usize| format!("bucket{b}");
        let outcome = |report: &mut WriteReport, b: usize, fault: Option<StepFault>| match fault {
            None => report.written.push(name(b)),
            Some(_) => report.unknown.push((name(b), "timed out".into())),
        };
        for &step in order {
            let f = fault(step);
            match step {
                Step::HomeWritesDetach(b) => {
                    if f != Some(StepFault::Lost) {
                        detaches[b] = detached.clone();
                    }
                    outcome(&mut home_write, b, f);
                }
                Step::TakeoverWritesEpoch(b) => {
                    if f != Some(StepFault::Lost) {
                        epochs[b] = taken.clone();
                    }
                    outcome(&mut takeover_write, b, f);
                }
                Step::HomeReadsEpoch(b) => home_reads.push(StoreRead {
                    store: name(b),
                    read: match f {
                        Some(_) => Read::Failed("timed out".into()),
                        None => Read::Record {
                            record: epochs[b].clone(),
                            etag: "\"e\"".into(),
                        },
                    },
                }),
                Step::TakeoverReadsDetach(b) => takeover_reads.push(StoreRead {
                    store: name(b),
                    read: match f {
                        Some(_) => Read::Failed("timed out".into()),
                        None => Read::Record {
                            record: detaches[b].clone(),
                            etag: "\"d\"".into(),
                        },
                    },
                }),
            }
        }
        (
            may_go_alone(&home_write, &home_reads, 3, WEST, 0),
            takeover_write.won(),
            detach_finding(&takeover_reads, 3, 0),
        )
    }

    /// Every way to merge two sequences, keeping each one's own order.
    fn merges(a: &[Step], b: &[Step], out: &mut Vec<Vec<Step>>, prefix: &mut Vec<Step>) {
        if a.is_empty() || b.is_empty() {
            let mut whole = prefix.clone();
            whole.extend_from_slice(a);
            whole.extend_from_slice(b);
            out.push(whole);
            return;
        }
        for (first, rest, other) in [(a[0], &a[1..], b), (b[0], &b[1..], a)] {
            prefix.push(first);
            if rest.len() + other.len() == a.len() + b.len() - 1 {
                merges(rest, other, out, prefix);
            }
            prefix.pop();
        }
    }

    #[test]
    fn in_every_interleaving_either_home_sees_the_takeover_or_the_takeover_sees_the_detach() {
        // Each side's writes all finish before its reads start (the fan-out waits for
        // every bucket), in any order among themselves: two orders of buckets each.
        let side = |write: fn(usize) -> Step, read: fn(usize) -> Step, order: [usize; 3]| {
            let mut steps: Vec<Step> = order.iter().map(|&b| write(b)).collect();
            steps.extend(order.iter().map(|&b| read(b)));
            steps
        };
        let faults_per_side = |write: fn(usize) -> Step, read: fn(usize) -> Step| {
            let mut all: Vec<Option<(Step, StepFault)>> = vec![None];
            for b in 0..3 {
                all.push(Some((write(b), StepFault::Lost)));
                all.push(Some((write(b), StepFault::AppliedUnknown)));
                all.push(Some((read(b), StepFault::Unreadable)));
            }
            all
        };
        let home_faults = faults_per_side(Step::HomeWritesDetach, Step::HomeReadsEpoch);
        let takeover_faults = faults_per_side(Step::TakeoverWritesEpoch, Step::TakeoverReadsDetach);
        let (mut runs, mut home_alone, mut takeover_clean) = (0, 0, 0);
        for home_order in [[0, 1, 2], [2, 0, 1]] {
            for takeover_order in [[0, 1, 2], [1, 2, 0]] {
                let home = side(Step::HomeWritesDetach, Step::HomeReadsEpoch, home_order);
                let takeover = side(
                    Step::TakeoverWritesEpoch,
                    Step::TakeoverReadsDetach,
                    takeover_order,
                );
                let mut orders = Vec::new();
                merges(&home, &takeover, &mut orders, &mut Vec::new());
                assert_eq!(orders.len(), 924);
                // One side entirely first: that side gets its way, the other yields.
                let home_first = [home.clone(), takeover.clone()].concat();
                assert_eq!(
                    race(&home_first, &[]),
                    (
                        true,
                        true,
                        DetachFinding::Detached(DetachRecord {
                            epoch: 0,
                            state: AttachState::Detached,
                            confirmed_lsn: None,
                            since: "t0".into(),
                            by: None,
                            seq: 1,
                        })
                    )
                );
                let takeover_first = [takeover.clone(), home.clone()].concat();
                assert_eq!(
                    race(&takeover_first, &[]),
                    (false, true, DetachFinding::Attached)
                );
                for order in &orders {
                    for hf in &home_faults {
                        for tf in &takeover_faults {
                            let faults: Vec<(Step, StepFault)> =
                                hf.iter().chain(tf.iter()).copied().collect();
                            let (alone, won, finding) = race(order, &faults);
                            runs += 1;
                            home_alone += usize::from(alone);
                            let clean = won && finding == DetachFinding::Attached;
                            takeover_clean += usize::from(clean);
                            assert!(
                                !(alone && clean),
                                "both sides went on: {order:?} with {faults:?}"
                            );
                        }
                    }
                }
            }
        }
        // Not a vacuous pass: each side does get its way in many interleavings.
        assert_eq!(runs, 4 * 924 * 100);
        assert!(home_alone > 1_000, "{home_alone} of {runs}");
        assert!(takeover_clean > 1_000, "{takeover_clean} of {runs}");
    }

    /// Epoch 1 naming the DR region, as a takeover writes it.
    fn taken_by_dr() -> Vec<u8> {
        serde_json::to_vec(&FenceRecord {
            epoch: 1,
            writer_region: DR.into(),
            promoted_at: "t1".into(),
            previous_writer_region: Some(WEST.into()),
            promoted_by: None,
        })
        .unwrap()
    }

    fn model_deployment() -> [crate::failover::quorum::model::ModelStore; 3] {
        use crate::failover::quorum::model::ModelStore;
        let stores = [
            ModelStore::new("a"),
            ModelStore::new("b"),
            ModelStore::new("w"),
        ];
        let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
        assert!(initialize(&all, WEST, "t0", None)
            .iter()
            .all(|o| o.result == "created"));
        stores
    }

    #[test]
    fn a_detach_goes_alone_only_in_a_majority_and_under_the_epoch_it_held() {
        use crate::failover::quorum::model::Fault;
        let stores = model_deployment();
        let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
        // The DR region's bucket is unreachable: the other two are a majority.
        stores[1].set_down(true);
        let lease = super::detach(&all, WEST, 0, Some("0/5000000".into()), "t1", None).unwrap();
        assert_eq!((lease.epoch, lease.seq), (0, 1));
        let reads = read_detach(&all);
        let in_force = detach_in_force(&reads, 3, 0).unwrap();
        assert_eq!(in_force.confirmed_lsn.as_deref(), Some("0/5000000"));
        assert!(detach_in_force(&reads, 3, 1).is_none(), "another epoch");
        // A takeover now sees it (its read overlaps the detach's majority).
        stores[1].set_down(false);
        assert!(matches!(
            detach_finding(&read_detach(&all), 3, 0),
            DetachFinding::Detached(r) if r.seq == 1
        ));

        // Re-attaching: `reattaching` supersedes it everywhere it lands; no longer in force.
        let seq = write_reattach(&all, 0, AttachState::Reattaching, "t2", None).unwrap();
        assert_eq!(seq, 2);
        assert!(detach_in_force(&read_detach(&all), 3, 0).is_none());
        assert!(matches!(
            detach_finding(&read_detach(&all), 3, 0),
            DetachFinding::Detached(r) if r.state == AttachState::Reattaching
        ));
        write_reattach(&all, 0, AttachState::Attached, "t3", None).unwrap();
        assert_eq!(
            detach_finding(&read_detach(&all), 3, 0),
            DetachFinding::Attached
        );

        // A detach that landed in one bucket only, its answer lost, the others down: its
        // writer does not go alone, and nobody may lean on it...
        stores[0].set_down(true);
        stores[2].set_down(true);
        stores[1].fail_next(Fault::AppliedThenTimeout);
        assert!(super::detach(&all, WEST, 0, None, "t4", None).is_err());
        stores[0].set_down(false);
        stores[2].set_down(false);
        let reads = read_detach(&all);
        assert!(detach_in_force(&reads, 3, 0).is_none());
        // ...yet a takeover that reads it refuses: an unknown outcome errs on the safe side.
        assert!(matches!(
            detach_finding(&reads, 3, 0),
            DetachFinding::Detached(r) if r.seq == 4
        ));
    }

    #[test]
    fn a_second_hosts_detach_and_the_way_back_keep_where_the_window_began() {
        let stores = model_deployment();
        let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
        let first = super::detach(&all, WEST, 0, Some("0/5000".into()), "t1", Some("a".into()));
        assert!(first.is_ok(), "{first:?}");
        // Host b's watcher gave up on the DR region a moment later, having seen less
        // confirmed: the window is the union of both.
        assert!(
            super::detach(&all, WEST, 0, Some("0/4000".into()), "t2", Some("b".into())).is_ok()
        );
        let record = latest_detach(&all).unwrap();
        assert_eq!(
            (record.since.as_str(), record.confirmed_lsn.as_deref()),
            ("t1", Some("0/4000"))
        );
        assert_eq!(record.by.as_deref(), Some("b"));

        // Re-attaching: no more writes alone, but the window is not closed yet.
        write_reattach(&all, 0, AttachState::Reattaching, "t3", None).unwrap();
        let record = latest_detach(&all).unwrap();
        assert_eq!(
            (record.since.as_str(), record.confirmed_lsn.as_deref()),
            ("t1", Some("0/4000"))
        );

        // Attached closes it; the next detach opens a new one.
        write_reattach(&all, 0, AttachState::Attached, "t4", None).unwrap();
        assert_eq!(latest_detach(&all).unwrap().confirmed_lsn, None);
        assert!(super::detach(&all, WEST, 0, Some("0/9000".into()), "t5", None).is_ok());
        let record = latest_detach(&all).unwrap();
        assert_eq!(
            (record.since.as_str(), record.confirmed_lsn.as_deref()),
            ("t5", Some("0/9000"))
        );
    }

    #[test]
    fn a_window_opened_under_an_older_epoch_or_without_a_position_is_not_carried_over() {
        let open = |epoch, lsn: Option<&str>| DetachRecord {
            epoch,
            state: AttachState::Detached,
            confirmed_lsn: lsn.map(Into::into),
            since: "t1".into(),
            by: None,
            seq: 3,
        };
        let older = open(0, Some("0/1"));
        assert_eq!(
            loss_window_start(Some(&older), 1, "t9", Some("0/8".into())),
            ("t9".into(), Some("0/8".into()))
        );
        let unknown = open(1, None);
        assert_eq!(
            loss_window_start(Some(&unknown), 1, "t9", Some("0/8".into())),
            ("t1".into(), None),
            "no known position bounds nothing"
        );
        assert_eq!(loss_window_start(None, 1, "t9", None), ("t9".into(), None));
    }

    #[test]
    fn a_detach_after_a_takeover_does_not_go_alone() {
        let stores = model_deployment();
        let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
        // A takeover's epoch 1 is in two buckets; the home region still thinks epoch 0.
        let taken = taken_by_dr();
        stores[1].put_raw(EPOCH_KEY, &taken);
        stores[2].put_raw(EPOCH_KEY, &taken);
        let err = super::detach(&all, WEST, 0, None, "t2", None).unwrap_err();
        assert!(err.contains("takeover"), "{err}");
    }

    #[test]
    fn a_detach_lease_holds_for_one_lease_at_the_epoch_it_was_read_at() {
        let origin = Instant::now();
        let state = FenceState::new(Duration::from_secs(10), origin);
        state.record(Verdict::Writer { epoch: 3 }, origin);
        state.set_detached(DetachLease {
            epoch: 3,
            seq: 7,
            sent: origin,
        });
        assert!(state.detached_at(origin + Duration::from_secs(9)).is_some());
        assert!(state
            .detached_at(origin + Duration::from_secs(10))
            .is_none());
        // A detach from another epoch is no detach.
        state.set_detached(DetachLease {
            epoch: 2,
            seq: 8,
            sent: origin + Duration::from_secs(1),
        });
        assert!(state.detached_at(origin + Duration::from_secs(2)).is_none());
        // Fenced: gone at once.
        state.set_detached(DetachLease {
            epoch: 3,
            seq: 9,
            sent: origin + Duration::from_secs(1),
        });
        assert!(state.detached_at(origin + Duration::from_secs(2)).is_some());
        state.record(
            Verdict::Fenced {
                epoch: 4,
                writer_region: DR.into(),
            },
            origin + Duration::from_secs(2),
        );
        assert!(state.detached_at(origin + Duration::from_secs(3)).is_none());
    }

    #[test]
    fn initializing_creates_records_once_and_never_replaces_one() {
        use crate::failover::quorum::model::ModelStore;
        let stores = [
            ModelStore::new("a"),
            ModelStore::new("b"),
            ModelStore::new("w"),
        ];
        let all: Vec<&dyn RecordStore> = stores.iter().map(|s| s as &dyn RecordStore).collect();
        stores[2].set_down(true);
        let first = initialize(&all, WEST, "t0", None);
        let created = first.iter().filter(|o| o.result == "created").count();
        assert_eq!(created, 4, "{first:?}");
        assert_eq!(first.iter().filter(|o| o.result == "failed").count(), 2);
        stores[2].set_down(false);
        // A takeover happened meanwhile on a and w: running init again keeps it.
        let taken = taken_by_dr();
        stores[0].put_raw(EPOCH_KEY, &taken);
        let again = initialize(&all, WEST, "t2", None);
        assert!(
            again
                .iter()
                .all(|o| (o.bucket == "w") == (o.result == "created")),
            "{again:?}"
        );
        assert_eq!(stores[0].raw(EPOCH_KEY).unwrap(), taken);
        assert_eq!(
            verdict(&read_epochs(&all), 3, WEST),
            Verdict::Fenced {
                epoch: 1,
                writer_region: DR.into()
            }
        );
    }

    #[test]
    fn writes_need_a_lease_that_has_not_run_out() {
        let origin = Instant::now();
        let lease = Duration::from_secs(10);
        let state = FenceState::new(lease, origin);
        assert_eq!(
            state.check_write(origin, Duration::ZERO),
            Err(WriteRefusal::NoLease { read_age: None })
        );
        let round = origin + Duration::from_secs(1);
        state.record(Verdict::Writer { epoch: 0 }, round);
        assert_eq!(
            state.check_write(round + Duration::from_secs(9), Duration::ZERO),
            Ok(())
        );
        // The lease counts from when the round started, not when it ended.
        assert!(matches!(
            state.check_write(round + Duration::from_secs(10), Duration::ZERO),
            Err(WriteRefusal::NoLease { read_age: Some(age) }) if age == Duration::from_secs(10)
        ));
        // A write that may take 3 s more must start 3 s before the lease ends.
        assert_eq!(
            state.check_write(round + Duration::from_secs(6), Duration::from_secs(3)),
            Ok(())
        );
        assert!(state
            .check_write(round + Duration::from_secs(7), Duration::from_secs(3))
            .is_err());
        // Rounds that read nothing do not extend it.
        state.record(Verdict::Unknown, round + Duration::from_secs(5));
        assert!(state
            .check_write(round + Duration::from_secs(11), Duration::ZERO)
            .is_err());
    }

    #[test]
    fn a_fenced_verdict_ends_the_lease_at_once() {
        let origin = Instant::now();
        let state = FenceState::new(Duration::from_secs(10), origin);
        state.record(Verdict::Writer { epoch: 0 }, origin);
        assert!(state.record(
            Verdict::Fenced {
                epoch: 1,
                writer_region: DR.into()
            },
            origin + Duration::from_secs(1)
        ));
        assert_eq!(
            state.check_write(origin + Duration::from_secs(2), Duration::ZERO),
            Err(WriteRefusal::Fenced {
                epoch: 1,
                writer_region: DR.into()
            })
        );
        assert!(state.is_fenced());
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |key| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn configuration_is_off_without_buckets_and_checked_with_them() {
        assert_eq!(FenceConfig::from_lookup(&lookup(&[])).unwrap(), None);
        let base = [
            (
                "DOB_FENCE_BUCKETS",
                "west-b@eu-west-1, dr-b@eu-central-1, witness-b@us-east-1",
            ),
            ("DOB_REGION", "eu-central-1"),
            ("DOB_FENCE_HOME_REGION", "eu-west-1"),
        ];
        let config = FenceConfig::from_lookup(&lookup(&base)).unwrap().unwrap();
        assert_eq!(config.buckets.len(), 3);
        assert_eq!(config.buckets[1].bucket, "dr-b");
        assert_eq!(config.lease, Duration::from_secs(15));

        let err = |pairs: &[(&str, &str)]| {
            FenceConfig::from_lookup(&lookup(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[("DOB_FENCE_BUCKETS", "nobucket")]).contains("bucket@region"));
        assert!(err(&[("DOB_FENCE_BUCKETS", "b@eu-west-1=ftp://x")]).contains("http://"));
        let own_endpoint = [
            (
                "DOB_FENCE_BUCKETS",
                "w@eu-west-1=http://10.0.0.1:9000/,d@eu-central-1",
            ),
            ("DOB_REGION", "eu-west-1"),
            ("DOB_FENCE_HOME_REGION", "eu-west-1"),
            ("DOB_S3_ENDPOINT", "http://10.0.0.2:9000"),
        ];
        let config = FenceConfig::from_lookup(&lookup(&own_endpoint))
            .unwrap()
            .unwrap();
        assert_eq!(
            config.s3_config(&config.buckets[0]).endpoint.as_deref(),
            Some("http://10.0.0.1:9000")
        );
        assert_eq!(
            config.s3_config(&config.buckets[1]).endpoint.as_deref(),
            Some("http://10.0.0.2:9000")
        );
        assert!(err(&base[..2]).contains("DOB_FENCE_HOME_REGION"));
        let mut unknown = base;
        unknown[1] = ("DOB_REGION", "ap-south-1");
        assert!(err(&unknown).contains("DOB_REGION"));
        let mut short = base.to_vec();
        short.push(("DOB_FENCE_LEASE_MS", "3000"));
        assert!(err(&short).contains("too short"));
    }
}
