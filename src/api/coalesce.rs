//! Coalescing of concurrent requests into one statement: GET lookups into one
//! `username = ANY($1)` query, PUTs into one multi-row upsert (one transaction, one WAL
//! flush for the whole batch).
//!
//! Under load, PostgreSQL's per-statement cost (a backend wake-up, executor start-up,
//! a round trip, and for a write its commit's WAL flush) dominates a single-row
//! statement. At most `max_leaders` batches run at once; a request that arrives while
//! all of them are busy waits in `pending`, and when a leader finishes it hands *all*
//! pending requests (up to [`MAX_BATCH`]) to one of them, which runs them as a single
//! statement and wakes the rest with their answers. A request that finds a free slot
//! runs alone at once, so an idle server pays nothing for this: the batching adapts to
//! the load, with no timer.
//!
//! The wait in `pending` is bounded by the caller's deadline: a request still queued at
//! its deadline leaves the queue unrun and gets `queue_timed_out`; once a batch has taken
//! it, it waits for that batch, whose statement has its own timeouts.
//!
//! Consistency is unchanged: a batch's statement starts after every member arrived, so
//! each lookup sees every write acknowledged before its request was received, and a
//! write is answered only once the statement that carries it has committed; a batch
//! that fails fails every member with the same error (nothing is acknowledged that was
//! not committed).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Largest batch sent as one statement; longer queues are split.
pub const MAX_BATCH: usize = 64;

/// Runs batches of `I` requests, answering each with an `O` or the batch's error `E`.
pub struct Coalescer<I, O: Clone, E: Clone> {
    state: Mutex<State<I, O, E>>,
    max_leaders: usize,
    /// Given to the other members of a batch whose leader panicked, and to a member the
    /// batch returned no answer for.
    abandoned: E,
    /// Given to a request still queued at its deadline (it never ran).
    queue_timed_out: E,
}

struct State<I, O: Clone, E: Clone> {
    pending: Vec<Arc<Waiter<I, O, E>>>,
    leaders: usize,
}

struct Waiter<I, O: Clone, E: Clone> {
    request: I,
    slot: Mutex<Slot<I, O, E>>,
    wake: Condvar,
}

enum Slot<I, O: Clone, E: Clone> {
    Waiting,
    /// This waiter must run the batch (which includes itself) and pass leadership on.
    Lead(Batch<I, O, E>),
    Done(Result<O, E>),
}

type Batch<I, O, E> = Vec<Arc<Waiter<I, O, E>>>;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; recover rather than cascade if it did.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<I, O: Clone, E: Clone> Waiter<I, O, E> {
    fn finish(&self, outcome: Result<O, E>) {
        *lock(&self.slot) = Slot::Done(outcome);
        self.wake.notify_one();
    }
}

impl<I, O: Clone, E: Clone> Coalescer<I, O, E> {
    pub fn new(max_leaders: usize, abandoned: E, queue_timed_out: E) -> Self {
        Coalescer {
            state: Mutex::new(State {
                pending: Vec::new(),
                leaders: 0,
            }),
            max_leaders: max_leaders.max(1),
            abandoned,
            queue_timed_out,
        }
    }

    /// Runs `request` through `run`, which receives a batch of one or more requests
    /// (in arrival order) and returns, for each in the same order, its answer. A request
    /// still queued at `deadline` is dropped from the queue unrun.
    pub fn submit(
        &self,
        request: I,
        deadline: Instant,
        run: impl Fn(&[&I]) -> Result<Vec<O>, E>,
    ) -> Result<O, E> {
        let me = Arc::new(Waiter {
            request,
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
                match self.wait(&me, deadline) {
                    Ok(outcome) => return outcome,
                    Err(batch) => batch,
                }
            }
        };
        self.lead(&me, batch, run)
    }

    /// Blocks until this waiter's result is set (`Ok`) or it is asked to lead (`Err`);
    /// past `deadline`, a waiter no batch has taken yet leaves the queue with
    /// `queue_timed_out`.
    fn wait(
        &self,
        me: &Arc<Waiter<I, O, E>>,
        deadline: Instant,
    ) -> Result<Result<O, E>, Batch<I, O, E>> {
        let mut queued = true;
        let mut slot = lock(&me.slot);
        loop {
            match std::mem::replace(&mut *slot, Slot::Waiting) {
                Slot::Lead(batch) => return Err(batch),
                Slot::Done(outcome) => return Ok(outcome),
                Slot::Waiting => {}
            }
            let now = Instant::now();
            if !queued || now < deadline {
                slot = if queued {
                    me.wake
                        .wait_timeout(slot, deadline - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                } else {
                    me.wake.wait(slot).unwrap_or_else(|e| e.into_inner())
                };
                continue;
            }
            // Past the deadline. The queue's lock is never taken under a slot's (a
            // leader drains the queue, then hands out the batch): let go, then look.
            drop(slot);
            let mut state = lock(&self.state);
            if let Some(at) = state.pending.iter().position(|w| Arc::ptr_eq(w, me)) {
                state.pending.remove(at);
                return Ok(Err(self.queue_timed_out.clone()));
            }
            drop(state);
            // A batch took it meanwhile: its answer (or leadership) is on the way.
            queued = false;
            slot = lock(&me.slot);
        }
    }

    /// Runs `batch` (which includes `me`), wakes the other members with their results,
    /// and passes leadership on. Returns `me`'s result.
    fn lead(
        &self,
        me: &Arc<Waiter<I, O, E>>,
        batch: Batch<I, O, E>,
        run: impl Fn(&[&I]) -> Result<Vec<O>, E>,
    ) -> Result<O, E> {
        let mut guard = LeaderGuard {
            coalescer: self,
            batch,
            me: Arc::clone(me),
        };
        let requests: Vec<&I> = guard.batch.iter().map(|w| &w.request).collect();
        let results = run(&requests);
        drop(requests);
        let mut mine = None;
        for (i, waiter) in std::mem::take(&mut guard.batch).into_iter().enumerate() {
            let outcome = match &results {
                Ok(answers) => answers
                    .get(i)
                    .cloned()
                    .ok_or_else(|| self.abandoned.clone()),
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
        let next: Batch<I, O, E> = state.pending.drain(..take).collect();
        drop(state);
        let successor = Arc::clone(&next[0]);
        *lock(&successor.slot) = Slot::Lead(next);
        successor.wake.notify_one();
    }
}

/// Passes leadership on when a leader is done, and if it unwinds mid-batch, fails the
/// other members instead of leaving them waiting forever.
struct LeaderGuard<'a, I, O: Clone, E: Clone> {
    coalescer: &'a Coalescer<I, O, E>,
    batch: Batch<I, O, E>,
    me: Arc<Waiter<I, O, E>>,
}

impl<I, O: Clone, E: Clone> Drop for LeaderGuard<'_, I, O, E> {
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
    use jiff::civil::Date;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A queue deadline no test reaches.
    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn date_for(name: &str) -> Option<Date> {
        (!name.starts_with('x')).then(|| Date::constant(2000, 1, name.len() as i8))
    }

    #[test]
    fn a_lone_lookup_runs_alone() {
        let c = Coalescer::<&str, Option<Date>, ()>::new(2, (), ());
        let got = c.submit("abc", far(), |names| {
            assert_eq!(names, [&"abc"]);
            Ok(names.iter().map(|n| date_for(n)).collect())
        });
        assert_eq!(got, Ok(Some(Date::constant(2000, 1, 3))));
        assert_eq!(
            c.submit("xyz", far(), |names| Ok(names
                .iter()
                .map(|n| date_for(n))
                .collect())),
            Ok(None)
        );
    }

    #[test]
    fn concurrent_lookups_beyond_the_leader_limit_are_batched_and_all_answered() {
        let c = Arc::new(Coalescer::<String, Option<Date>, String>::new(
            1,
            "abandoned".into(),
            "queued too long".into(),
        ));
        let queries = Arc::new(AtomicUsize::new(0));
        let largest = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let (c, queries, largest) =
                    (Arc::clone(&c), Arc::clone(&queries), Arc::clone(&largest));
                std::thread::spawn(move || {
                    for j in 0..50 {
                        let name = "a".repeat(1 + (i + j) % 20);
                        let got = c.submit(name.clone(), far(), |names| {
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
        let c = Arc::new(Coalescer::<String, Option<Date>, String>::new(
            1,
            "abandoned".into(),
            "queued too long".into(),
        ));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    c.submit("abc".to_owned(), far(), |_| {
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
        let c = Arc::new(Coalescer::<String, Option<Date>, String>::new(
            1,
            "abandoned".into(),
            "queued too long".into(),
        ));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        c.submit("abc".to_owned(), far(), |names| {
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
            c.submit("ab".to_owned(), far(), |n| Ok(n
                .iter()
                .map(|n| date_for(n))
                .collect())),
            Ok(date_for("ab"))
        );
    }

    #[test]
    fn a_request_queued_past_its_deadline_leaves_unrun_and_a_taken_one_waits_for_its_batch() {
        let c = Arc::new(Coalescer::<String, Option<Date>, String>::new(
            1,
            "abandoned".into(),
            "queued too long".into(),
        ));
        let ran = Arc::new(Mutex::new(Vec::<String>::new()));
        let run = |ran: Arc<Mutex<Vec<String>>>, hold: Duration| {
            move |names: &[&String]| {
                ran.lock()
                    .unwrap()
                    .extend(names.iter().map(|n| (*n).clone()));
                std::thread::sleep(hold);
                Ok(names.iter().map(|n| date_for(n)).collect())
            }
        };
        // The only leader slot is busy for 300 ms.
        let leader = {
            let (c, ran) = (Arc::clone(&c), Arc::clone(&ran));
            std::thread::spawn(move || {
                c.submit(
                    "lead".to_owned(),
                    far(),
                    run(ran, Duration::from_millis(300)),
                )
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        let started = Instant::now();
        let late = c.submit(
            "late".to_owned(),
            Instant::now() + Duration::from_millis(50),
            run(Arc::clone(&ran), Duration::ZERO),
        );
        assert_eq!(late, Err("queued too long".to_owned()));
        assert!(
            started.elapsed() < Duration::from_millis(250),
            "it left at its deadline"
        );
        // Queued with "second" behind the first batch; both run as one batch (led by
        // "second", 500 ms) that ends past its deadline: once taken, it is answered.
        let second = {
            let (c, ran) = (Arc::clone(&c), Arc::clone(&ran));
            std::thread::spawn(move || {
                c.submit(
                    "second".to_owned(),
                    far(),
                    run(ran, Duration::from_millis(500)),
                )
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let taken = c.submit(
            "taken".to_owned(),
            Instant::now() + Duration::from_millis(400),
            run(Arc::clone(&ran), Duration::from_millis(300)),
        );
        assert_eq!(taken, Ok(date_for("taken")));
        assert_eq!(leader.join().unwrap(), Ok(date_for("lead")));
        assert_eq!(second.join().unwrap(), Ok(date_for("second")));
        let ran = ran.lock().unwrap();
        assert!(
            !ran.iter().any(|n| n == "late"),
            "a request that left the queue never ran: {ran:?}"
        );
    }
}
