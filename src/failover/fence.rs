//! Cross-region write fencing: which region may take writes, recorded as a *promotion
//! epoch* in S3, and the lease that makes `dob-api` stop writing when it loses it.
//!
//! Inside a region Patroni and etcd decide who leads. Between regions nothing does: the
//! DR region is promoted by a person (`dob-promote --takeover`), and the old region may
//! come back afterwards with its own leader, still writable. So the decision is written
//! down where both regions look:
//!
//! - The *fence record* is a small JSON object, `<prefix>/fence/epoch.json`, kept in
//!   every region's backup bucket (`DOB_FENCE_BUCKETS`). It names the region that
//!   writes and an epoch that only grows. No record anywhere means epoch 0: the home
//!   region (`DOB_FENCE_HOME_REGION`) writes.
//! - `dob-promote --takeover` writes epoch N+1 naming its own region to every bucket it
//!   reaches (its own is required), then waits one lease before it promotes.
//! - Every `dob-api` reads the records every `DOB_FENCE_INTERVAL_MS` and acknowledges a
//!   write only while it holds a *lease*: a read round that started less than
//!   `DOB_FENCE_LEASE_MS` ago found this region to be the writer, and the write can
//!   commit (pool wait plus statement timeout) before that lease ends. A region cut off from
//!   S3 stops writing when its lease runs out; a region that comes back reads the new
//!   record before its first write (its lease ran out while it was away), so it never
//!   takes another write. Its `/readyz` turns 503 while it is fenced and its database
//!   is writable, so neither the load balancer nor DNS sends clients back to it.
//!
//! The highest epoch among the buckets read wins. A region that can read only its own
//! bucket, while a takeover could write only the other one, would keep writing: the
//! takeover reports that it could not fence the old region's bucket, and the runbook
//! says what to do (docs/failover.md).
//!
//! [`verdict`] and [`FenceState`] are pure (the clock is passed in); only
//! [`FenceStores::read_all`], [`FenceStores::write_all`] and [`spawn_watcher`] talk to S3.

use crate::config::S3Config;
use crate::s3::ObjectStore;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The record's key under the bucket's prefix.
pub const RECORD_KEY: &str = "fence/epoch.json";
/// One S3 request of a read round or a takeover's write may take this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
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
                "is required with DOB_FENCE_BUCKETS (the region that writes while no takeover was recorded)",
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
        let millis = |key: &str, default: u64, min: u64, max: u64| -> Result<Duration> {
            match get(key) {
                None => Ok(Duration::from_millis(default)),
                Some(raw) => raw
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|v| (min..=max).contains(v))
                    .map(Duration::from_millis)
                    .ok_or_else(|| {
                        Error::config(key, format!("{raw:?} is not from {min} to {max}"))
                    }),
            }
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

/// Which region writes, from when, and who decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FenceRecord {
    pub epoch: u64,
    pub writer_region: String,
    /// RFC 3339, when the takeover wrote the record.
    pub promoted_at: String,
    #[serde(default)]
    pub previous_writer_region: Option<String>,
    /// The host that ran the takeover.
    #[serde(default)]
    pub promoted_by: Option<String>,
}

/// What one bucket said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BucketRead {
    Record(FenceRecord),
    Absent,
    Failed(String),
}

/// Who writes, according to the buckets that answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// This region writes, as of `epoch` (0: no record, the home region).
    Writer { epoch: u64 },
    /// Another region holds writes since `epoch`.
    Fenced { epoch: u64, writer_region: String },
    /// No bucket answered.
    Unknown,
}

/// The highest epoch wins; at the same epoch, a record naming another region fences
/// (two takeovers raced: no region may write until a person settles it).
pub fn verdict(reads: &[BucketRead], region: &str, home_region: &str) -> Verdict {
    let records: Vec<&FenceRecord> = reads
        .iter()
        .filter_map(|r| match r {
            BucketRead::Record(record) => Some(record),
            _ => None,
        })
        .collect();
    if let Some(top) = records.iter().map(|r| r.epoch).max() {
        let others = records
            .iter()
            .find(|r| r.epoch == top && r.writer_region != region);
        return match others {
            Some(record) => Verdict::Fenced {
                epoch: top,
                writer_region: record.writer_region.clone(),
            },
            None => Verdict::Writer { epoch: top },
        };
    }
    if reads.iter().any(|r| matches!(r, BucketRead::Absent)) {
        return if region == home_region {
            Verdict::Writer { epoch: 0 }
        } else {
            Verdict::Fenced {
                epoch: 0,
                writer_region: home_region.to_owned(),
            }
        };
    }
    Verdict::Unknown
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
        }
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
    stores: Vec<(FenceBucket, ObjectStore)>,
}

impl FenceStores {
    pub fn connect(config: &FenceConfig) -> Result<FenceStores> {
        let stores = config
            .buckets
            .iter()
            .map(|bucket| {
                let mut store = ObjectStore::connect(&config.s3_config(bucket))?;
                store.set_request_timeout(REQUEST_TIMEOUT);
                Ok((bucket.clone(), store))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(FenceStores { stores })
    }

    /// Reads every bucket's record, all at once (a dead region costs one timeout).
    pub fn read_all(&self) -> Vec<(FenceBucket, BucketRead)> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .stores
                .iter()
                .map(|(bucket, store)| scope.spawn(move || (bucket.clone(), read_one(store))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fence read thread panicked"))
                .collect()
        })
    }

    /// Writes `record` to every bucket `which` selects, all at once; one result per
    /// bucket written.
    pub fn write_all(
        &self,
        record: &FenceRecord,
        which: impl Fn(&FenceBucket) -> bool,
    ) -> Vec<(FenceBucket, Result<()>)> {
        let body = serde_json::to_vec_pretty(record).expect("a fence record serialises");
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .stores
                .iter()
                .filter(|(bucket, _)| which(bucket))
                .map(|(bucket, store)| {
                    let body = &body;
                    scope.spawn(move || {
                        let key = store.key(RECORD_KEY);
                        (
                            bucket.clone(),
                            store.put_small(&key, body, "application/json"),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a fence write thread panicked"))
                .collect()
        })
    }
}

fn read_one(store: &ObjectStore) -> BucketRead {
    let key = store.key(RECORD_KEY);
    match store.get_small(&key) {
        Ok(None) => BucketRead::Absent,
        Ok(Some(bytes)) => match serde_json::from_slice::<FenceRecord>(&bytes) {
            Ok(record) => BucketRead::Record(record),
            // A record that cannot be read is not "no record": that would hand writes
            // back to the home region.
            Err(err) => BucketRead::Failed(format!("{key} is not a fence record: {err}")),
        },
        Err(err) => BucketRead::Failed(err.chain()),
    }
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
    loop {
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
            let reads = current.read_all();
            let failures: Vec<String> = reads
                .iter()
                .filter_map(|(b, r)| match r {
                    BucketRead::Failed(why) => Some(format!("{}: {why}", b.bucket)),
                    _ => None,
                })
                .collect();
            let reads: Vec<BucketRead> = reads.into_iter().map(|(_, r)| r).collect();
            let verdict = verdict(&reads, &config.region, &config.home_region);
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
                    Verdict::Unknown => {
                        log::warn!("fence: no bucket answered; writes stop when the lease ends")
                    }
                }
            }
        }
        std::thread::sleep(config.interval.saturating_sub(started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: u64, region: &str) -> BucketRead {
        BucketRead::Record(FenceRecord {
            epoch,
            writer_region: region.into(),
            promoted_at: "2026-12-04T00:00:00Z".into(),
            previous_writer_region: None,
            promoted_by: None,
        })
    }

    const WEST: &str = "eu-west-1";
    const DR: &str = "eu-central-1";

    #[test]
    fn no_record_means_the_home_region_writes() {
        let reads = [BucketRead::Absent, BucketRead::Absent];
        assert_eq!(verdict(&reads, WEST, WEST), Verdict::Writer { epoch: 0 });
        assert_eq!(
            verdict(&reads, DR, WEST),
            Verdict::Fenced {
                epoch: 0,
                writer_region: WEST.into()
            }
        );
    }

    #[test]
    fn the_highest_epoch_wins_even_from_one_bucket() {
        // The takeover reached only its own bucket: the old region reads both.
        let reads = [BucketRead::Absent, record(1, DR)];
        assert_eq!(
            verdict(&reads, WEST, WEST),
            Verdict::Fenced {
                epoch: 1,
                writer_region: DR.into()
            }
        );
        assert_eq!(verdict(&reads, DR, WEST), Verdict::Writer { epoch: 1 });
        // Failed back later: epoch 2 names the home region again.
        let reads = [record(2, WEST), record(1, DR)];
        assert_eq!(verdict(&reads, WEST, WEST), Verdict::Writer { epoch: 2 });
    }

    #[test]
    fn a_tie_between_regions_fences_both() {
        let reads = [record(3, WEST), record(3, DR)];
        assert!(matches!(
            verdict(&reads, WEST, WEST),
            Verdict::Fenced { .. }
        ));
        assert!(matches!(verdict(&reads, DR, WEST), Verdict::Fenced { .. }));
    }

    #[test]
    fn nothing_read_is_unknown_not_absent() {
        let reads = [BucketRead::Failed("timeout".into())];
        assert_eq!(verdict(&reads, WEST, WEST), Verdict::Unknown);
        // A failed bucket next to an absent one: the one that answered decides.
        let reads = [BucketRead::Failed("timeout".into()), BucketRead::Absent];
        assert_eq!(verdict(&reads, WEST, WEST), Verdict::Writer { epoch: 0 });
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
            ("DOB_FENCE_BUCKETS", "west-b@eu-west-1, dr-b@eu-central-1"),
            ("DOB_REGION", "eu-central-1"),
            ("DOB_FENCE_HOME_REGION", "eu-west-1"),
        ];
        let config = FenceConfig::from_lookup(&lookup(&base)).unwrap().unwrap();
        assert_eq!(config.buckets.len(), 2);
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
        unknown[1] = ("DOB_REGION", "us-east-1");
        assert!(err(&unknown).contains("DOB_REGION"));
        let mut short = base.to_vec();
        short.push(("DOB_FENCE_LEASE_MS", "3000"));
        assert!(err(&short).contains("too short"));
    }
}
