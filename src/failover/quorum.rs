//! Records kept in several object stores (one bucket per region, plus a witness) that a
//! partition cannot outvote: a change counts only once it is in a *majority* of them,
//! and a reader believes only what a majority answered.
//!
//! Every change is a conditional write (S3's `If-Match` on the ETag it read, or
//! `If-None-Match: *` where it found nothing), so two writers racing on one store cannot
//! both win there; a write that timed out or failed without a definite answer has an
//! *unknown* outcome and is never counted as won (it may still land later, which the
//! protocols built on this allow for). Records carry a sequence number or a time that
//! changes on every write, so an ETag never comes back (no ABA).
//!
//! The safety argument the fence relies on (docs/design.md has it in full): any two
//! majorities of the same stores share one, and each store is linearizable (S3 is
//! strongly consistent for a single key). So when A writes to a majority and *then*
//! reads another key from a majority, and B does the same with the keys swapped, at
//! least one of them sees the other's write.
//!
//! [`RecordStore`] is the one seam: [`S3RecordStore`] in production, a model with
//! scripted faults in the tests. The fan-out ([`read_all`], [`write_majority`]) asks
//! every store at once, so a dead region costs one timeout, not one per store.

use crate::s3::{ConditionalPut, ObjectStore};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a store holds under a key, with the version to write against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Found { body: Vec<u8>, etag: String },
    Absent,
}

/// The condition a write is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Only if nothing is there (`If-None-Match: *`).
    Absent,
    /// Only if the object is still this version (`If-Match`).
    Matches(String),
}

/// How one conditional write ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// Certainly not applied: the condition failed (412), a concurrent write conflicted
    /// (409), or the object vanished (404).
    Conflict(String),
    /// Maybe applied: a timeout, a reset, a 5xx. Never counted as won.
    Unknown(String),
}

/// One bucket (or a model of one).
pub trait RecordStore: Sync {
    /// `bucket@region`, for reports and logs.
    fn name(&self) -> &str;
    fn fetch(&self, key: &str) -> Result<Fetched, String>;
    fn put_if(&self, key: &str, body: &[u8], precondition: &Precondition) -> PutOutcome;
}

/// The smallest number of `n` stores that any other such set overlaps.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// What one store said about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read<R> {
    Record {
        record: R,
        etag: String,
    },
    Absent,
    /// Unreachable, or not a record of this kind (garbage is never "no record").
    Failed(String),
}

impl<R> Read<R> {
    pub fn record(&self) -> Option<&R> {
        match self {
            Read::Record { record, .. } => Some(record),
            _ => None,
        }
    }
}

/// One store's answer, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreRead<R> {
    pub store: String,
    pub read: Read<R>,
}

/// The valid records among `reads`, if a majority of `total` stores gave one.
pub fn majority_records<R>(reads: &[StoreRead<R>], total: usize) -> Option<Vec<&R>> {
    let records: Vec<&R> = reads.iter().filter_map(|r| r.read.record()).collect();
    (records.len() >= majority(total)).then_some(records)
}

fn parse<R: DeserializeOwned>(key: &str, fetched: Result<Fetched, String>) -> Read<R> {
    match fetched {
        Ok(Fetched::Absent) => Read::Absent,
        Ok(Fetched::Found { body, etag }) => match serde_json::from_slice::<R>(&body) {
            Ok(record) => Read::Record { record, etag },
            Err(err) => Read::Failed(format!("{key} is not a valid record: {err}")),
        },
        Err(err) => Read::Failed(err),
    }
}

/// Reads `key` from every store at once.
pub fn read_all<R: DeserializeOwned + Send>(
    stores: &[&dyn RecordStore],
    key: &str,
) -> Vec<StoreRead<R>> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                scope.spawn(move || StoreRead {
                    store: store.name().to_owned(),
                    read: parse::<R>(key, store.fetch(key)),
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a record read thread panicked"))
            .collect()
    })
}

/// Whether a store's current record may be replaced by the new one, and why not.
pub type Admit<'a, R> = &'a (dyn Fn(Option<&R>) -> Result<(), String> + Sync);

/// How a write to every store went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    pub total: usize,
    pub written: Vec<String>,
    /// Certainly not written there, and why.
    pub refused: Vec<(String, String)>,
    /// Maybe written there.
    pub unknown: Vec<(String, String)>,
}

impl WriteReport {
    /// The write counts: a majority of stores definitely hold it.
    pub fn won(&self) -> bool {
        self.written.len() >= majority(self.total)
    }

    /// One line for logs and errors.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "written to {} of {} ({})",
            self.written.len(),
            self.total,
            if self.written.is_empty() {
                "none".to_owned()
            } else {
                self.written.join(", ")
            }
        )];
        for (name, why) in &self.refused {
            parts.push(format!("{name} refused: {why}"));
        }
        for (name, why) in &self.unknown {
            parts.push(format!("{name} unknown: {why}"));
        }
        parts.join("; ")
    }
}

/// A lost race on one store (its version changed between our read and our write) is
/// retried this many times, each time re-reading and asking `admit` again.
const RACE_RETRIES: usize = 3;

/// Writes `record` under `key` to every store at once: on each, read the current version,
/// ask `admit` whether it may be replaced, and write conditionally on that version. The
/// caller decides from [`WriteReport::won`] whether the change counts.
pub fn write_majority<R: Serialize + DeserializeOwned>(
    stores: &[&dyn RecordStore],
    key: &str,
    record: &R,
    admit: Admit<'_, R>,
) -> WriteReport {
    let body = serde_json::to_vec_pretty(record).expect("a record serialises");
    let outcomes: Vec<(String, PutOutcome)> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|store| {
                let body = &body;
                scope.spawn(move || {
                    (
                        store.name().to_owned(),
                        write_one::<R>(*store, key, body, admit),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a record write thread panicked"))
            .collect()
    });
    let mut report = WriteReport {
        total: stores.len(),
        ..WriteReport::default()
    };
    for (name, outcome) in outcomes {
        match outcome {
            PutOutcome::Written => report.written.push(name),
            PutOutcome::Conflict(why) => report.refused.push((name, why)),
            PutOutcome::Unknown(why) => report.unknown.push((name, why)),
        }
    }
    report
}

fn write_one<R: DeserializeOwned>(
    store: &dyn RecordStore,
    key: &str,
    body: &[u8],
    admit: Admit<'_, R>,
) -> PutOutcome {
    let mut last = PutOutcome::Unknown("not tried".into());
    for _ in 0..=RACE_RETRIES {
        let precondition = match parse::<R>(key, store.fetch(key)) {
            // Unreachable or garbage: nothing was sent, so nothing was written (and
            // garbage is never replaced as if it were absent).
            Read::Failed(why) => return PutOutcome::Conflict(format!("reading first: {why}")),
            Read::Absent => match admit(None) {
                Ok(()) => Precondition::Absent,
                Err(why) => return PutOutcome::Conflict(why),
            },
            Read::Record { record, etag } => match admit(Some(&record)) {
                Ok(()) => Precondition::Matches(etag),
                Err(why) => return PutOutcome::Conflict(why),
            },
        };
        last = store.put_if(key, body, &precondition);
        match &last {
            // Someone else wrote in between: read again and ask again.
            PutOutcome::Conflict(_) => continue,
            _ => return last,
        }
    }
    last
}

/// A bucket through [`ObjectStore`], its keys under the configured prefix.
pub struct S3RecordStore {
    name: String,
    store: ObjectStore,
}

impl S3RecordStore {
    pub fn new(name: String, store: ObjectStore) -> S3RecordStore {
        S3RecordStore { name, store }
    }
}

impl RecordStore for S3RecordStore {
    fn name(&self) -> &str {
        &self.name
    }

    fn fetch(&self, key: &str) -> Result<Fetched, String> {
        let key = self.store.key(key);
        match self.store.get_small_versioned(&key) {
            Ok(None) => Ok(Fetched::Absent),
            Ok(Some((body, etag))) => Ok(Fetched::Found { body, etag }),
            Err(err) => Err(err.chain()),
        }
    }

    fn put_if(&self, key: &str, body: &[u8], precondition: &Precondition) -> PutOutcome {
        let key = self.store.key(key);
        let condition = match precondition {
            Precondition::Absent => ConditionalPut::IfNoneMatch,
            Precondition::Matches(etag) => ConditionalPut::IfMatch(etag),
        };
        match self
            .store
            .put_small_if(&key, body, "application/json", condition)
        {
            Ok(()) => PutOutcome::Written,
            Err(crate::s3::PutIfError::PreconditionFailed(status)) => {
                PutOutcome::Conflict(format!("S3 answered {status}: changed since it was read"))
            }
            Err(crate::s3::PutIfError::Unknown(err)) => PutOutcome::Unknown(err.chain()),
        }
    }
}

#[cfg(test)]
pub mod model {
    //! An in-memory store whose operations can be scripted to fail the ways S3 does.

    use super::*;
    use std::collections::{HashMap, VecDeque};
    use std::sync::Mutex;

    /// What the next operation on a model store does instead of its normal work.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Fault {
        /// A read or write that never arrives (a timeout; nothing applied).
        Timeout,
        /// A write applied, then the answer lost: the caller sees a timeout.
        AppliedThenTimeout,
        /// 409 ConditionalRequestConflict: a concurrent write won.
        Conflict,
        /// Another writer changes the object just before this write (so it gets 412).
        RacedBy(Vec<u8>),
    }

    #[derive(Default)]
    struct Inner {
        objects: HashMap<String, (Vec<u8>, u64)>,
        version: u64,
        faults: VecDeque<Fault>,
        down: bool,
    }

    pub struct ModelStore {
        name: String,
        inner: Mutex<Inner>,
    }

    impl ModelStore {
        pub fn new(name: &str) -> ModelStore {
            ModelStore {
                name: name.into(),
                inner: Mutex::new(Inner::default()),
            }
        }

        pub fn fail_next(&self, fault: Fault) {
            self.inner.lock().unwrap().faults.push_back(fault);
        }

        pub fn set_down(&self, down: bool) {
            self.inner.lock().unwrap().down = down;
        }

        pub fn raw(&self, key: &str) -> Option<Vec<u8>> {
            let inner = self.inner.lock().unwrap();
            inner.objects.get(key).map(|(b, _)| b.clone())
        }

        pub fn put_raw(&self, key: &str, body: &[u8]) {
            let mut inner = self.inner.lock().unwrap();
            inner.version += 1;
            let version = inner.version;
            inner.objects.insert(key.into(), (body.to_vec(), version));
        }
    }

    impl RecordStore for ModelStore {
        fn name(&self) -> &str {
            &self.name
        }

        fn fetch(&self, key: &str) -> Result<Fetched, String> {
            let mut inner = self.inner.lock().unwrap();
            if inner.down {
                return Err("connection refused".into());
            }
            if inner.faults.front() == Some(&Fault::Timeout) {
                inner.faults.pop_front();
                return Err("timed out".into());
            }
            Ok(match inner.objects.get(key) {
                Some((body, version)) => Fetched::Found {
                    body: body.clone(),
                    etag: format!("\"v{version}\""),
                },
                None => Fetched::Absent,
            })
        }

        fn put_if(&self, key: &str, body: &[u8], precondition: &Precondition) -> PutOutcome {
            let mut inner = self.inner.lock().unwrap();
            if inner.down {
                return PutOutcome::Unknown("connection refused".into());
            }
            let fault = inner.faults.pop_front();
            match &fault {
                Some(Fault::Timeout) => return PutOutcome::Unknown("timed out".into()),
                Some(Fault::Conflict) => return PutOutcome::Conflict("409".into()),
                Some(Fault::RacedBy(other)) => {
                    inner.version += 1;
                    let version = inner.version;
                    inner.objects.insert(key.into(), (other.clone(), version));
                }
                _ => {}
            }
            let current = inner.objects.get(key).map(|(_, v)| format!("\"v{v}\""));
            let holds = match precondition {
                Precondition::Absent => current.is_none(),
                Precondition::Matches(etag) => current.as_deref() == Some(etag.as_str()),
            };
            if !holds {
                return PutOutcome::Conflict("412".into());
            }
            inner.version += 1;
            let version = inner.version;
            inner.objects.insert(key.into(), (body.to_vec(), version));
            if fault == Some(Fault::AppliedThenTimeout) {
                return PutOutcome::Unknown("timed out".into());
            }
            PutOutcome::Written
        }
    }
}

#[cfg(test)]
mod tests {
    use super::model::{Fault, ModelStore};
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    struct Counter {
        value: u64,
    }

    fn three() -> [ModelStore; 3] {
        [
            ModelStore::new("a"),
            ModelStore::new("b"),
            ModelStore::new("w"),
        ]
    }

    fn refs(stores: &[ModelStore]) -> Vec<&dyn RecordStore> {
        stores.iter().map(|s| s as &dyn RecordStore).collect()
    }

    fn grows(next: u64) -> impl Fn(Option<&Counter>) -> Result<(), String> + Sync {
        move |current| match current {
            Some(c) if c.value >= next => Err(format!("holds {}", c.value)),
            _ => Ok(()),
        }
    }

    #[test]
    fn majorities_overlap() {
        assert_eq!(majority(1), 1);
        assert_eq!(majority(2), 2);
        assert_eq!(majority(3), 2);
        assert_eq!(majority(5), 3);
        for n in 1..9 {
            assert!(2 * majority(n) > n, "two majorities of {n} share a store");
        }
    }

    #[test]
    fn a_write_counts_only_with_a_majority_of_definite_answers() {
        let stores = three();
        let all = refs(&stores);
        let report = write_majority(&all, "k", &Counter { value: 1 }, &grows(1));
        assert!(report.won(), "{}", report.summary());
        assert_eq!(report.written.len(), 3);

        // One store down, one times out after applying: one definite answer of three.
        stores[0].set_down(true);
        stores[1].fail_next(Fault::AppliedThenTimeout);
        let report = write_majority(&all, "k", &Counter { value: 2 }, &grows(2));
        assert!(!report.won(), "{}", report.summary());
        assert_eq!(report.written, ["w"]);
        assert_eq!(report.unknown.len(), 1);
        // ...although the write did land on b: an unknown outcome may be either.
        assert_eq!(stores[1].raw("k").unwrap(), stores[2].raw("k").unwrap());
        stores[0].set_down(false);
    }

    #[test]
    fn a_lost_race_is_read_again_and_asked_again() {
        let stores = three();
        let all = refs(&stores);
        // b is changed to 5 between our read and our write: the retry sees 5 and refuses.
        let five = serde_json::to_vec(&Counter { value: 5 }).unwrap();
        stores[1].fail_next(Fault::RacedBy(five));
        let report = write_majority(&all, "k", &Counter { value: 3 }, &grows(3));
        assert!(report.won());
        assert_eq!(report.refused, [("b".to_string(), "holds 5".to_string())]);
        // A 409 once is retried and then written.
        stores[2].fail_next(Fault::Conflict);
        let report = write_majority(&all, "k", &Counter { value: 4 }, &grows(4));
        assert_eq!(report.written.len(), 2, "{}", report.summary());
        assert!(report.refused.iter().any(|(n, _)| n == "b"));
    }

    #[test]
    fn reads_need_a_majority_of_valid_records() {
        let stores = three();
        let all = refs(&stores);
        stores[0].put_raw("k", br#"{"value": 7}"#);
        stores[1].put_raw("k", b"{garbage");
        let reads = read_all::<Counter>(&all, "k");
        assert!(matches!(reads[1].read, Read::Failed(_)));
        assert_eq!(reads[2].read, Read::Absent);
        assert_eq!(majority_records(&reads, 3), None, "one valid of three");
        stores[2].put_raw("k", br#"{"value": 6}"#);
        let reads = read_all::<Counter>(&all, "k");
        let records = majority_records(&reads, 3).unwrap();
        assert_eq!(records.iter().map(|c| c.value).max(), Some(7));
        // Garbage is never overwritten as if it were absent.
        let report = write_majority(&all, "k", &Counter { value: 8 }, &grows(8));
        assert!(report.refused.iter().any(|(n, _)| n == "b"));
        assert_eq!(stores[1].raw("k").unwrap(), b"{garbage");
    }
}
