//! Coalescing of concurrent GET lookups into one query.
//!
//! Under load, PostgreSQL's per-statement cost (a backend wake-up, executor start-up,
//! a round trip) dominates a primary-key lookup. At most `max_leaders` lookups run at
//! once; a lookup that arrives while all of them are busy waits in `pending`, and when
//! a leader finishes it hands *all* pending lookups to one of them, which runs them as
//! a single `username = ANY($1)` query and wakes the rest. A lookup that finds a free
//! slot runs alone at once, so an idle server pays nothing for this.
//!
//! Consistency is unchanged: a batch's query starts after every member arrived, so each
//! sees every write acknowledged before its request was received.

use jiff::civil::Date;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Largest batch sent as one query; longer queues are split.
pub const MAX_BATCH: usize = 64;

/// What a lookup resolves to; errors are shared by every member of a failed batch.
pub type Outcome<E> = Result<Option<Date>, E>;

pub struct Coalescer<E: Clone> {
    state: Mutex<State<E>>,
    max_leaders: usize,
    /// Given to the other members of a batch whose leader panicked.
    abandoned: E,
}

struct State<E: Clone> {
    pending: Vec<Arc<Waiter<E>>>,
    leaders: usize,
}

struct Waiter<E: Clone> {
    username: Box<str>,
    slot: Mutex<Slot<E>>,
    wake: Condvar,
}

enum Slot<E: Clone> {
    Waiting,
    /// This waiter must run the batch (which includes itself) and pass leadership on.
    Lead(Vec<Arc<Waiter<E>>>),
    Done(Outcome<E>),
}

type Batch<E> = Vec<Arc<Waiter<E>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover rather than cascade if it did.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<E: Clone> Waiter<E> {
    fn finish(&self, outcome: Outcome<E>) {
        *lock(&self.slot) = Slot::Done(outcome);
        self.wake.notify_one();
    }
}

impl<E: Clone> Coalescer<E> {
    pub fn new(max_leaders: usize, abandoned: E) -> Self {
        Coalescer {
            state: Mutex::new(State {
                pending: Vec::new(),
                leaders: 0,
            }),
            max_leaders: max_leaders.max(1),
            abandoned,
        }
    }

    /// Looks `username` up through `run`, which receives a batch of one or more
    /// usernames and returns, for each in the same order, its date if it exists.
    pub fn lookup(
        &self,
        username: &str,
        run: impl Fn(&[&str]) -> Result<Vec<Option<Date>>, E>,
    ) -> Outcome<E> {
        let me = Arc::new(Waiter {
            username: username.into(),
            slot: Mutex::new(Slot::Waiting),
            wake: Condvar::new(),
        });
        let batch = {
            let mut state = lock(&self.state);
            if state.leaders < self.max_leaders {
                state.leaders += 1;
                vec![Arc::clone(&me)]
            } else {
                state.pending.push(Arc::clone(&me));
                drop(state);
                match Self::wait(&me) {
                    Ok(outcome) => return outcome,
                    Err(batch) => batch,
                }
            }
        };
        self.lead(&me, batch, run)
    }

    /// Blocks until this waiter's result is set (`Ok`) or it is asked to lead (`Err`).
    fn wait(me: &Waiter<E>) -> Result<Outcome<E>, Batch<E>> {
        let mut slot = lock(&me.slot);
        loop {
            match std::mem::replace(&mut *slot, Slot::Waiting) {
                Slot::Waiting => slot = me.wake.wait(slot).unwrap_or_else(|e| e.into_inner()),
                Slot::Lead(batch) => return Err(batch),
                Slot::Done(outcome) => return Ok(outcome),
            }
        }
    }

    /// Runs `batch` (which includes `me`), wakes the other members with their results,
    /// and passes leadership on. Returns `me`'s result.
    fn lead(
        &self,
        me: &Arc<Waiter<E>>,
        batch: Batch<E>,
        run: impl Fn(&[&str]) -> Result<Vec<Option<Date>>, E>,
    ) -> Outcome<E> {
        let mut guard = LeaderGuard {
            coalescer: self,
            batch,
            me: Arc::clone(me),
        };
        let names: Vec<&str> = guard.batch.iter().map(|w| &*w.username).collect();
        let results = run(&names);
        drop(names);
        let mut mine = None;
        for (i, waiter) in std::mem::take(&mut guard.batch).into_iter().enumerate() {
            let outcome = match &results {
                Ok(dates) => Ok(dates.get(i).copied().flatten()),
                Err(err) => Err(err.clone()),
            };
            if Arc::ptr_eq(&waiter, me) {
                mine = Some(outcome);
            } else {
                waiter.finish(outcome);
            }
        }
        drop(guard);
        mine.unwrap_or_else(|| Err(self.abandoned.clone()))
    }

    fn pass_leadership(&self) {
        let mut state = lock(&self.state);
        if state.pending.is_empty() {
            state.leaders -= 1;
            return;
        }
        let take = state.pending.len().min(MAX_BATCH);
        let next: Batch<E> = state.pending.drain(..take).collect();
        drop(state);
        let successor = Arc::clone(&next[0]);
        *lock(&successor.slot) = Slot::Lead(next);
        successor.wake.notify_one();
    }
}

/// Passes leadership on when a leader is done, and if it unwinds mid-batch, fails the
/// other members instead of leaving them waiting forever.
struct LeaderGuard<'a, E: Clone> {
    coalescer: &'a Coalescer<E>,
    batch: Batch<E>,
    me: Arc<Waiter<E>>,
}

impl<E: Clone> Drop for LeaderGuard<'_, E> {
    fn drop(&mut self) {
        for waiter in self.batch.drain(..) {
            if !Arc::ptr_eq(&waiter, &self.me) {
                waiter.finish(Err(self.coalescer.abandoned.clone()));
            }
        }
        self.coalescer.pass_leadership();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn date_for(name: &str) -> Option<Date> {
        (!name.starts_with('x')).then(|| Date::constant(2000, 1, name.len() as i8))
    }

    #[test]
    fn a_lone_lookup_runs_alone() {
        let c = Coalescer::<()>::new(2, ());
        let got = c.lookup("abc", |names| {
            assert_eq!(names, ["abc"]);
            Ok(names.iter().map(|n| date_for(n)).collect())
        });
        assert_eq!(got, Ok(Some(Date::constant(2000, 1, 3))));
        assert_eq!(
            c.lookup("xyz", |names| Ok(names
                .iter()
                .map(|n| date_for(n))
                .collect())),
            Ok(None)
        );
    }

    #[test]
    fn concurrent_lookups_beyond_the_leader_limit_are_batched_and_all_answered() {
        let c = Arc::new(Coalescer::<String>::new(1, "abandoned".into()));
        let queries = Arc::new(AtomicUsize::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (c, queries, largest) =
                    (Arc::clone(&c), Arc::clone(&queries), Arc::clone(&largest));
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let name = "a".repeat(1 + (i + j) % 20);
                        let got = c.lookup(&name, |names| {
                            queries.fetch_add(1, Ordering::Relaxed);
                            largest.fetch_max(names.len(), Ordering::Relaxed);
                            std::thread::sleep(Duration::from_micros(200));
                            Ok(names.iter().map(|n| date_for(n)).collect())
                        });
                        assert_eq!(got, Ok(date_for(&name)));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(
            queries.load(Ordering::Relaxed) < 16 * 50,
            "some lookups were batched"
        );
        assert!(largest.load(Ordering::Relaxed) > 1);
        assert!(largest.load(Ordering::Relaxed) <= MAX_BATCH);
    }

    #[test]
    fn a_failed_batch_fails_each_member_with_the_error() {
        let c = Arc::new(Coalescer::<String>::new(1, "abandoned".into()));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    c.lookup("abc", |_| {
                        std::thread::sleep(Duration::from_millis(2));
                        Err("database down".to_owned())
                    })
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), Err("database down".to_owned()));
        }
    }

    #[test]
    fn a_panicking_leader_fails_its_batch_instead_of_stranding_it() {
        let c = Arc::new(Coalescer::<String>::new(1, "abandoned".into()));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.lookup("abc", |names| {
                            std::thread::sleep(Duration::from_millis(5));
                            if i % 2 == 0 {
                                panic!("boom");
                            }
                            Ok(names.iter().map(|n| date_for(n)).collect())
                        })
                    }))
                })
            })
            .collect();
        for t in threads {
            // Every thread returns: a panic, an error, or an answer; none hangs.
            let _ = t.join().unwrap();
        }
        assert_eq!(
            c.lookup("ab", |n| Ok(n.iter().map(|n| date_for(n)).collect())),
            Ok(date_for("ab"))
        );
    }
}
