//! Client-side deadlines for statements, commits included. PostgreSQL's own
//! `statement_timeout` stops at the statement: it is disarmed before the commit, so a
//! commit waiting for a synchronous standby that no longer answers waits until Patroni
//! or `wal_sender_timeout` releases it, holding a request thread and a connection, and
//! a 204 sent then could come after the region's write lease ended.
//!
//! One watcher thread per [`Deadlines`] sleeps until the earliest armed deadline and
//! sends PostgreSQL a cancel request for each statement past it. A cancelled commit
//! wait returns with only a warning (the transaction committed locally and may not be
//! replicated), so the caller treats whatever a cancelled statement returns as outcome
//! unknown and discards the connection. The thread ends once the [`Deadlines`] is
//! dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

/// What the watcher does to a statement past its deadline: send the cancel request.
pub trait Cancel: Send + 'static {
    fn cancel(&self) -> Result<(), String>;
}

impl<T> Cancel for (postgres::CancelToken, T)
where
    T: postgres::tls::MakeTlsConnect<postgres::Socket> + Clone + Send + 'static,
    T::Stream: Sync + Send,
    T::TlsConnect: Sync + Send,
    <T::TlsConnect as postgres::tls::TlsConnect<postgres::Socket>>::Future: Send,
{
    fn cancel(&self) -> Result<(), String> {
        self.0
            .cancel_query(self.1.clone())
            .map_err(|e| crate::error::chain(&e))
    }
}

struct Armed {
    id: u64,
    deadline: Instant,
    cancel: Box<dyn Cancel>,
    fired: Arc<AtomicBool>,
}

struct State {
    armed: Vec<Armed>,
    next_id: u64,
    /// When the watcher wakes next by itself: a deadline before it needs a nudge, a
    /// later one (the usual case: every write's deadline is now + the same span) none,
    /// so arming costs no wakeup.
    next_wake: Instant,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The statements in flight and their deadlines.
pub struct Deadlines {
    shared: Arc<Shared>,
}

/// One armed deadline; disarmed when dropped.
pub struct Guard<'a> {
    deadlines: &'a Deadlines,
    id: u64,
    fired: Arc<AtomicBool>,
}

impl Guard<'_> {
    /// Disarms the deadline once the statement has returned, and says whether it was
    /// cancelled for it: then, whatever it returned, its outcome is unknown and its
    /// connection must be discarded. Decided under the watcher's lock, so a deadline
    /// disarmed in time is never cancelled later, when the connection may already run
    /// someone else's statement.
    pub fn finish(self) -> bool {
        let fired = Arc::clone(&self.fired);
        // Dropping disarms, under the lock (the watcher sets `fired` only under it), and
        // takes it once: this is on every write's path.
        drop(self);
        fired.load(Ordering::Acquire)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut state = self.deadlines.lock();
        state.armed.retain(|a| a.id != self.id);
    }
}

/// How often an idle watcher checks whether its [`Deadlines`] still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

impl Deadlines {
    /// Starts the watcher thread.
    pub fn start() -> std::io::Result<Deadlines> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                armed: Vec::new(),
                next_id: 0,
                next_wake: Instant::now(),
            }),
            wake: Condvar::new(),
        });
        let weak = Arc::downgrade(&shared);
        std::thread::Builder::new()
            .name("dob-deadlines".into())
            .spawn(move || watch(&weak))?;
        Ok(Deadlines { shared })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Arms `deadline` for the statement `cancel` would stop.
    pub fn arm(&self, deadline: Instant, cancel: impl Cancel) -> Guard<'_> {
        let fired = Arc::new(AtomicBool::new(false));
        let (id, nudge) = {
            let mut state = self.lock();
            state.next_id += 1;
            let id = state.next_id;
            state.armed.push(Armed {
                id,
                deadline,
                cancel: Box::new(cancel),
                fired: Arc::clone(&fired),
            });
            (id, deadline < state.next_wake)
        };
        if nudge {
            self.shared.wake.notify_one();
        }
        Guard {
            deadlines: self,
            id,
            fired,
        }
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        self.shared.wake.notify_one();
    }
}

fn watch(shared: &Weak<Shared>) {
    loop {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let due: Vec<Armed> = {
            let mut state = shared
                .state
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let next = state.armed.iter().map(|a| a.deadline).min();
            let wait = next.map_or(IDLE_CHECK, |d| {
                d.saturating_duration_since(now).min(IDLE_CHECK)
            });
            state.next_wake = now + wait;
            let (mut state, _) = shared
                .wake
                .wait_timeout(state, wait)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let (due, pending): (Vec<Armed>, Vec<Armed>) = std::mem::take(&mut state.armed)
                .into_iter()
                .partition(|a| a.deadline <= now);
            state.armed = pending;
            // Under the lock: a statement that finishes now learns it was cancelled.
            for armed in &due {
                armed.fired.store(true, Ordering::Release);
            }
            due
        };
        // Outside the lock: a cancel request opens a connection of its own (bounded by
        // the connect timeout), and a request must be able to disarm meanwhile.
        for armed in due {
            if let Err(why) = armed.cancel.cancel() {
                log::warn!("a statement past its deadline could not be cancelled: {why}");
            }
        }
        drop(shared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Count(Arc<AtomicUsize>);
    impl Cancel for Count {
        fn cancel(&self) -> Result<(), String> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn only_statements_past_their_deadline_are_cancelled() {
        let deadlines = Deadlines::start().unwrap();
        let cancels = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let slow = deadlines.arm(
            started + Duration::from_millis(100),
            Count(Arc::clone(&cancels)),
        );
        let quick = deadlines.arm(
            started + Duration::from_millis(150),
            Count(Arc::clone(&cancels)),
        );
        // Disarmed before its deadline: never cancelled.
        assert!(!quick.finish());
        while cancels.load(Ordering::SeqCst) == 0 {
            assert!(started.elapsed() < Duration::from_secs(5), "never fired");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(slow.finish());
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(cancels.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_watcher_ends_with_its_deadlines() {
        let deadlines = Deadlines::start().unwrap();
        let weak = Arc::downgrade(&deadlines.shared);
        drop(deadlines);
        let started = Instant::now();
        // The thread held a strong reference only while awake; it lets go within its
        // idle check.
        while weak.upgrade().is_some() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
