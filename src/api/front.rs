//! The HTTP/1.1 front: accepting connections and serving requests on them, with every
//! resource bounded by configuration and never by what a client declares.
//!
//! One thread serves one connection at a time, from a pool that grows up to the
//! connection cap: it reads a head into a fixed buffer (total deadline, byte and field
//! caps), reads at most the body the route allows into a fixed buffer (total deadline),
//! calls the [`Handler`], writes the response, and only then reads the next request. So
//! requests on one connection take effect in the order they were sent, pipelined or
//! not, and a slow client holds only its own thread, never the threads serving others.
//!
//! The accept thread never blocks on a client: it admits a connection into a free slot
//! or, at the cap, first evicts the connection that has waited longest on its client
//! (an idle keep-alive one before one still sending its request), and refuses with a
//! canned 503 only when nothing can be evicted. It survives every `accept()` error.
//! A panic while serving costs that request a 500 (or the connection a close); the
//! thread goes back to the pool.

use crate::api::wire::{self, ChunkError, ChunkedDecoder, Framing, Head, HeadScan, Reply};
use crate::{Error, Result};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Every limit of the front. Defaults and how to tune them: docs/configuration.md.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connections open at once; at the cap the longest-waiting is evicted or the new
    /// one refused.
    pub max_connections: usize,
    /// Threads kept even when idle (more are started as connections need them).
    pub min_threads: usize,
    /// From a connection's accept, or a request's first byte, to the end of its head.
    pub head_timeout: Duration,
    /// From the end of the head to the end of the body.
    pub body_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub idle_timeout: Duration,
    /// Each write of a response.
    pub write_timeout: Duration,
    pub limits: wire::Limits,
    /// The largest body any route accepts: the body buffer's size.
    pub max_body: usize,
}

/// What the front asks of the application.
pub trait Handler: Send + Sync + 'static {
    /// The largest body `method target` accepts; a larger one is never read and the
    /// request is handled with [`Body::TooLarge`], then the connection closed.
    fn body_limit(&self, method: &str, target: &str) -> usize;
    /// Answers one request.
    fn handle(&self, request: &Request<'_>) -> Reply;
    /// The front answered a request itself (400, 408, 414, 417, 431, 500, 501, 505).
    fn refused(&self, status: u16);
}

/// One request, borrowed from the connection's buffers.
pub struct Request<'a> {
    buf: &'a [u8],
    head: &'a Head,
    headers: &'a [wire::HeaderSpan],
    pub body: Body<'a>,
}

pub enum Body<'a> {
    Complete(&'a [u8]),
    /// Declared or sent beyond the route's limit: not read.
    TooLarge,
}

impl Request<'_> {
    pub fn method(&self) -> &str {
        self.head.method.str(self.buf)
    }

    /// The request target as sent (origin-form: path and query).
    pub fn target(&self) -> &str {
        self.head.target.str(self.buf)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        wire::header(self.buf, self.headers, name)
    }
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub accepted: AtomicU64,
    /// Refused at the cap with a canned 503, or because no thread could be started.
    pub refused: AtomicU64,
    /// Closed by the front to make room (idle keep-alive first).
    pub evicted: AtomicU64,
    pub accept_errors: AtomicU64,
    pub panics: AtomicU64,
    /// Heads or bodies not received before their deadline.
    pub timeouts: AtomicU64,
    pub open: AtomicUsize,
    /// Connection threads alive now, and ever started: a pool that loses threads to
    /// panics would show as starts growing with the panics.
    pub threads: AtomicUsize,
    pub threads_started: AtomicU64,
}

/// Sent without reading anything to a connection that cannot be served.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Retry-After: 1\r\nContent-Length: 62\r\nConnection: close\r\n\r\n\
{\"error\":\"server busy: too many connections; retry shortly\"}\n";

/// How long the accept thread sleeps in `poll` before rechecking whether to stop.
const ACCEPT_POLL_MS: i32 = 100;
/// At the cap, how long the accept thread waits for an evicted connection's slot.
const SLOT_WAIT: Duration = Duration::from_millis(100);
/// A pool thread beyond `min_threads` exits after this long without a connection.
const THREAD_IDLE: Duration = Duration::from_secs(10);
/// Connection threads run handlers (PostgreSQL client, JSON); this is ample for them
/// and keeps a thousand threads' reserved address space modest.
const THREAD_STACK: usize = 512 * 1024;
/// Before closing a connection that may have sent more than was read, the front stops
/// writing and discards input for at most this long and this much, so the client reads
/// the response instead of a reset.
const LINGER_TIME: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 64 * 1024;
/// Room for chunk framing after a head, beyond the body itself.
const CHUNK_SLACK: usize = 512;

const FREE: u8 = 0;
/// Receiving a request (head or body): evictable at the cap.
const READING: u8 = 1;
/// Kept alive between requests: evicted first.
const IDLE: u8 = 2;
/// Handling a request or writing its response: never evicted.
const BUSY_STATE: u8 = 3;
const EVICTED: u8 = 4;

struct Slot {
    state: AtomicU8,
    /// Milliseconds since the front started, when `state` was entered.
    since_ms: AtomicU64,
    /// The connection's fd while it is open. Evicting shuts it down under this lock,
    /// and a connection is closed only after taking it out under the same lock, so an
    /// eviction can never reach a reused fd.
    fd: Mutex<Option<RawFd>>,
}

struct Job {
    stream: TcpStream,
    slot: usize,
    accepted: Instant,
}

#[derive(Default)]
struct PoolState {
    jobs: VecDeque<Job>,
    idle: usize,
    threads: usize,
    shutdown: bool,
}

struct Shared<H> {
    handler: H,
    config: Config,
    listener: TcpListener,
    slots: Box<[Slot]>,
    free: Mutex<Vec<usize>>,
    slot_freed: Condvar,
    pool: Mutex<PoolState>,
    job_ready: Condvar,
    stop_accepting: AtomicBool,
    stopping: AtomicBool,
    stats: Arc<Stats>,
    started: Instant,
}

/// A running front. Dropping it does not stop it: call [`Front::stop_accepting`] then
/// [`Front::finish`].
pub struct Front<H: Handler> {
    shared: Arc<Shared<H>>,
    accept_thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing holding these locks can leave their data inconsistent.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl<H: Handler> Front<H> {
    /// Starts accepting on `listener` (already bound and listening).
    pub fn start(
        listener: TcpListener,
        config: Config,
        handler: H,
        stats: Arc<Stats>,
    ) -> Result<Self> {
        listener
            .set_nonblocking(true)
            .map_err(|e| Error::io("configuring the listening socket", e))?;
        let slots = (0..config.max_connections)
            .map(|_| Slot {
                state: AtomicU8::new(FREE),
                since_ms: AtomicU64::new(0),
                fd: Mutex::new(None),
            })
            .collect();
        let shared = Arc::new(Shared {
            free: Mutex::new((0..config.max_connections).rev().collect()),
            handler,
            config,
            listener,
            slots,
            slot_freed: Condvar::new(),
            pool: Mutex::new(PoolState::default()),
            job_ready: Condvar::new(),
            stop_accepting: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stats,
            started: Instant::now(),
        });
        for _ in 0..shared.config.min_threads {
            lock(&shared.pool).threads += 1;
            spawn_pool_thread(&shared).map_err(|e| Error::io("starting a connection thread", e))?;
        }
        let accept_shared = Arc::clone(&shared);
        let accept_thread = thread::Builder::new()
            .name("accept".into())
            .spawn(move || accept_loop(&accept_shared))
            .map_err(|e| Error::io("starting the accept thread", e))?;
        Ok(Front {
            shared,
            accept_thread: Mutex::new(Some(accept_thread)),
        })
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Stops accepting and waits for the accept thread. The listening socket stays
    /// open: under socket activation its backlog belongs to the next process.
    pub fn stop_accepting(&self) {
        self.shared.stop_accepting.store(true, Ordering::Relaxed);
        if let Some(thread) = lock(&self.accept_thread).take() {
            let _ = thread.join();
        }
    }

    /// Closes kept-alive connections, lets requests being received for up to `grace`
    /// and requests being handled for up to `busy_grace` finish, then stops the pool.
    pub fn finish(&self, grace: Duration, busy_grace: Duration) {
        let shared = &self.shared;
        shared.stopping.store(true, Ordering::Relaxed);
        evict_all(shared, &[IDLE]);
        wait_until_closed(shared, grace);
        evict_all(shared, &[IDLE, READING]);
        wait_until_closed(shared, busy_grace);
        let open = shared.stats.open.load(Ordering::Relaxed);
        if open > 0 {
            log::warn!("{open} connections still open at shutdown");
        }
        lock(&shared.pool).shutdown = true;
        shared.job_ready.notify_all();
    }
}

fn wait_until_closed<H>(shared: &Shared<H>, within: Duration) {
    let deadline = Instant::now() + within;
    let mut free = lock(&shared.free);
    while free.len() < shared.slots.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        free = shared
            .slot_freed
            .wait_timeout(free, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn now_ms<H>(shared: &Shared<H>) -> u64 {
    u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------
// Accepting

fn accept_loop<H: Handler>(shared: &Arc<Shared<H>>) {
    let fd = shared.listener.as_raw_fd();
    // Failures come in bursts (out of descriptors until connections close): one line
    // when a burst starts, one when it ends.
    let mut burst: Option<(Instant, u64)> = None;
    let mut backoff = Duration::from_millis(5);
    let mut reserve = open_reserve_fd();
    while !shared.stop_accepting.load(Ordering::Relaxed) {
        let mut poll = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the listening socket this front owns.
        if unsafe { libc::poll(&mut poll, 1, ACCEPT_POLL_MS) } <= 0 {
            continue;
        }
        match shared.listener.accept() {
            Ok((stream, _peer)) => {
                if let Some((since, failures)) = burst.take() {
                    log::warn!(
                        "accepting connections again after {failures} failed accept() calls over {:?}",
                        since.elapsed()
                    );
                }
                backoff = Duration::from_millis(5);
                shared.stats.accepted.fetch_add(1, Ordering::Relaxed);
                admit(shared, stream);
            }
            Err(err) => {
                let errno = err.raw_os_error().unwrap_or(0);
                match errno {
                    libc::EAGAIN | libc::EINTR => continue,
                    // The connection died before it was accepted: that one is lost,
                    // the listener is fine.
                    libc::ECONNABORTED
                    | libc::EPROTO
                    | libc::EPERM
                    | libc::ENETDOWN
                    | libc::ENOPROTOOPT
                    | libc::EHOSTDOWN
                    | libc::ENONET
                    | libc::EHOSTUNREACH
                    | libc::EOPNOTSUPP
                    | libc::ENETUNREACH => {
                        shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    _ => {}
                }
                shared.stats.accept_errors.fetch_add(1, Ordering::Relaxed);
                match &mut burst {
                    Some((_, failures)) => *failures += 1,
                    None => {
                        log::error!(
                            "accept() failed: {err}; still listening, backing off (further failures in this burst are counted, not logged)"
                        );
                        burst = Some((Instant::now(), 1));
                    }
                }
                if errno == libc::EMFILE || errno == libc::ENFILE {
                    // Spend the spare descriptor to answer one waiting client with a
                    // 503 instead of leaving the whole queue hanging.
                    if let Some(spare) = reserve.take() {
                        // SAFETY: closing the descriptor this loop opened and owns.
                        unsafe { libc::close(spare) };
                        if let Ok((stream, _)) = shared.listener.accept() {
                            refuse(shared, &stream);
                        }
                        reserve = open_reserve_fd();
                    }
                }
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(200));
            }
        }
    }
    if let Some(spare) = reserve {
        // SAFETY: closing the descriptor this loop opened and owns.
        unsafe { libc::close(spare) };
    }
}

fn open_reserve_fd() -> Option<RawFd> {
    // SAFETY: a plain open of a constant path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    (fd >= 0).then_some(fd)
}

fn admit<H: Handler>(shared: &Arc<Shared<H>>, stream: TcpStream) {
    let cap = shared.config.max_connections;
    let open = shared.stats.open.load(Ordering::Relaxed);
    // Near the cap, kept-alive connections make room before anyone is refused.
    let headroom = (cap / 16).max(1);
    if open + headroom >= cap {
        let evicted = evict_one(shared, open >= cap);
        if !evicted && open >= cap {
            refuse(shared, &stream);
            return;
        }
    }
    let Some(slot) = take_slot(
        shared,
        if open >= cap {
            SLOT_WAIT
        } else {
            Duration::ZERO
        },
    ) else {
        refuse(shared, &stream);
        return;
    };
    let entry = &shared.slots[slot];
    entry.since_ms.store(now_ms(shared), Ordering::Relaxed);
    entry.state.store(READING, Ordering::Release);
    *lock(&entry.fd) = Some(stream.as_raw_fd());
    submit(
        shared,
        Job {
            stream,
            slot,
            accepted: Instant::now(),
        },
    );
}

fn take_slot<H>(shared: &Shared<H>, wait: Duration) -> Option<usize> {
    let deadline = Instant::now() + wait;
    let mut free = lock(&shared.free);
    loop {
        if let Some(slot) = free.pop() {
            shared.stats.open.fetch_add(1, Ordering::Relaxed);
            return Some(slot);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        free = shared
            .slot_freed
            .wait_timeout(free, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// A canned 503, sent without waiting, then the connection is closed.
fn refuse<H>(shared: &Shared<H>, stream: &TcpStream) {
    shared.stats.refused.fetch_add(1, Ordering::Relaxed);
    // SAFETY: a non-blocking send of a constant buffer on a socket we own.
    unsafe {
        libc::send(
            stream.as_raw_fd(),
            BUSY.as_ptr().cast(),
            BUSY.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// Evicts the connection that has waited longest on its client: an idle kept-alive one
/// first, else (when `readers_too`) one still sending its request.
fn evict_one<H>(shared: &Shared<H>, readers_too: bool) -> bool {
    for wanted in [IDLE, READING] {
        if wanted == READING && !readers_too {
            break;
        }
        loop {
            let oldest = shared
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| slot.state.load(Ordering::Acquire) == wanted)
                .min_by_key(|(_, slot)| slot.since_ms.load(Ordering::Relaxed));
            let Some((index, _)) = oldest else { break };
            if evict(shared, index, wanted) {
                return true;
            }
            // It changed state under us; look again.
        }
    }
    false
}

fn evict_all<H>(shared: &Shared<H>, states: &[u8]) {
    for (index, slot) in shared.slots.iter().enumerate() {
        let state = slot.state.load(Ordering::Acquire);
        if states.contains(&state) {
            evict(shared, index, state);
        }
    }
}

fn evict<H>(shared: &Shared<H>, index: usize, from: u8) -> bool {
    let slot = &shared.slots[index];
    if slot
        .state
        .compare_exchange(from, EVICTED, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    if let Some(fd) = *lock(&slot.fd) {
        // SAFETY: the fd is open: it is only closed after being taken out of this
        // mutex, which we hold. Shutdown wakes the thread blocked reading it.
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
    }
    shared.stats.evicted.fetch_add(1, Ordering::Relaxed);
    true
}

// ---------------------------------------------------------------------------------
// The thread pool

fn submit<H: Handler>(shared: &Arc<Shared<H>>, job: Job) {
    let mut pool = lock(&shared.pool);
    pool.jobs.push_back(job);
    if pool.idle >= pool.jobs.len() {
        drop(pool);
        shared.job_ready.notify_one();
        return;
    }
    pool.threads += 1;
    drop(pool);
    if let Err(err) = spawn_pool_thread(shared) {
        log::error!("starting a connection thread failed: {err}");
        let mut pool = lock(&shared.pool);
        pool.threads -= 1;
        if pool.jobs.len() > pool.idle {
            if let Some(job) = pool.jobs.pop_back() {
                drop(pool);
                refuse(shared, &job.stream);
                close_slot(shared, job.slot, job.stream);
            }
        }
    }
}

fn spawn_pool_thread<H: Handler>(shared: &Arc<Shared<H>>) -> io::Result<()> {
    let shared = Arc::clone(shared);
    thread::Builder::new()
        .name("http".into())
        .stack_size(THREAD_STACK)
        .spawn(move || pool_thread(&shared))
        .map(|_| ())
}

fn pool_thread<H: Handler>(shared: &Shared<H>) {
    shared.stats.threads.fetch_add(1, Ordering::Relaxed);
    shared.stats.threads_started.fetch_add(1, Ordering::Relaxed);
    // Counted down however the thread ends.
    struct Alive<'a>(&'a AtomicUsize);
    impl Drop for Alive<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Relaxed);
        }
    }
    let _alive = Alive(&shared.stats.threads);
    let mut buffers = Buffers::new(&shared.config);
    while let Some(job) = next_job(shared) {
        let slot = job.slot;
        let guard = ConnGuard {
            shared,
            slot,
            stream: Some(job.stream),
        };
        let served = catch_unwind(AssertUnwindSafe(|| {
            serve_connection(shared, &guard, job.accepted, &mut buffers)
        }));
        if served.is_err() {
            // The panic message went to stderr through the default hook.
            shared.stats.panics.fetch_add(1, Ordering::Relaxed);
            buffers = Buffers::new(&shared.config);
        }
        drop(guard);
    }
}

fn next_job<H>(shared: &Shared<H>) -> Option<Job> {
    let mut pool = lock(&shared.pool);
    loop {
        if let Some(job) = pool.jobs.pop_front() {
            return Some(job);
        }
        if pool.shutdown {
            pool.threads -= 1;
            return None;
        }
        pool.idle += 1;
        let (guard, wait) = shared
            .job_ready
            .wait_timeout(pool, THREAD_IDLE)
            .unwrap_or_else(|e| e.into_inner());
        pool = guard;
        pool.idle -= 1;
        if wait.timed_out() && pool.jobs.is_empty() && pool.threads > shared.config.min_threads {
            pool.threads -= 1;
            return None;
        }
    }
}

/// Owns the connection; on drop (also when unwinding) frees its slot.
struct ConnGuard<'a, H> {
    shared: &'a Shared<H>,
    slot: usize,
    stream: Option<TcpStream>,
}

impl<H> ConnGuard<'_, H> {
    fn stream(&self) -> &TcpStream {
        self.stream.as_ref().expect("open until dropped")
    }
}

impl<H> Drop for ConnGuard<'_, H> {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            close_slot(self.shared, self.slot, stream);
        }
    }
}

fn close_slot<H>(shared: &Shared<H>, index: usize, stream: TcpStream) {
    let slot = &shared.slots[index];
    {
        let mut fd = lock(&slot.fd);
        *fd = None;
        slot.state.store(FREE, Ordering::Release);
        drop(stream);
    }
    lock(&shared.free).push(index);
    shared.stats.open.fetch_sub(1, Ordering::Relaxed);
    shared.slot_freed.notify_all();
}

// ---------------------------------------------------------------------------------
// Serving one connection

/// A connection thread's buffers, allocated once per thread at sizes from [`Config`].
struct Buffers {
    input: Vec<u8>,
    headers: Vec<wire::HeaderSpan>,
    body: Vec<u8>,
    output: Vec<u8>,
}

impl Buffers {
    fn new(config: &Config) -> Buffers {
        Buffers {
            input: vec![0; config.limits.max_head_bytes + config.max_body + CHUNK_SLACK],
            headers: vec![wire::HeaderSpan::default(); config.limits.max_headers],
            body: vec![0; config.max_body],
            output: Vec::with_capacity(1024),
        }
    }
}

/// Where the connection's unprocessed input is, and the receive timeout set on it.
struct Input {
    /// Unprocessed bytes are `input[pos..filled]`.
    pos: usize,
    filled: usize,
    /// The `SO_RCVTIMEO` currently set on the socket.
    armed: Duration,
}

/// How waiting for client bytes ended, when it did not deliver any.
enum Wait {
    Closed,
    TimedOut,
}

impl Input {
    /// Compacts, then reads once, waiting until `deadline` at the latest. Returns the
    /// bytes read.
    fn read_more(
        &mut self,
        stream: &TcpStream,
        buf: &mut [u8],
        deadline: Instant,
    ) -> std::result::Result<usize, Wait> {
        if self.pos > 0 {
            buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        if self.filled == buf.len() {
            // Cannot happen: the caller refuses heads that fill the buffer first.
            return Err(Wait::Closed);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Wait::TimedOut);
            }
            // Re-arm only when the armed timeout would overshoot the deadline noticeably,
            // or is far shorter than what is left: the common paths set it once per
            // connection, not once per read.
            if self.armed > left + Duration::from_millis(50) || self.armed < left / 2 {
                if stream.set_read_timeout(Some(left)).is_err() {
                    return Err(Wait::Closed);
                }
                self.armed = left;
            }
            match (&*stream).read(&mut buf[self.filled..]) {
                Ok(0) => return Err(Wait::Closed),
                Ok(n) => {
                    self.filled += n;
                    return Ok(n);
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                // SO_RCVTIMEO expiring (Linux reports EAGAIN); loop to check the deadline.
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return Err(Wait::Closed),
            }
        }
    }
}

/// How the connection ends after a response.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ending {
    KeepAlive,
    /// The client asked for it, or the server is stopping.
    Close,
    /// The body was not read: the client may still be sending it.
    Linger,
}

fn serve_connection<H: Handler>(
    shared: &Shared<H>,
    conn: &ConnGuard<'_, H>,
    accepted: Instant,
    buffers: &mut Buffers,
) {
    let config = &shared.config;
    let stream = conn.stream();
    let slot = &shared.slots[conn.slot];
    let _ = stream.set_nodelay(true);
    if stream.set_read_timeout(Some(config.head_timeout)).is_err()
        || stream
            .set_write_timeout(Some(config.write_timeout))
            .is_err()
    {
        return;
    }
    let mut input = Input {
        pos: 0,
        filled: 0,
        armed: config.head_timeout,
    };
    let mut first = true;
    loop {
        // --- the head
        let mut scan = HeadScan::default();
        let mut head_deadline = first.then(|| accepted + config.head_timeout);
        let idle_deadline = Instant::now() + config.idle_timeout;
        if !first {
            slot.since_ms.store(now_ms(shared), Ordering::Relaxed);
            if slot
                .state
                .compare_exchange(BUSY_STATE, IDLE, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                return;
            }
        }
        let head_len = loop {
            let buf = &buffers.input[input.pos..input.filled];
            // Blank lines before a request line are allowed (RFC 9112 2.2); dropping
            // them keeps them from counting against the head's size.
            let blank = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            input.pos += blank;
            if input.pos < input.filled {
                if head_deadline.is_none() {
                    if shared.stopping.load(Ordering::Relaxed) {
                        return;
                    }
                    slot.since_ms.store(now_ms(shared), Ordering::Relaxed);
                    if slot
                        .state
                        .compare_exchange(IDLE, READING, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                    {
                        return; // evicted as the request arrived: as if closed just before
                    }
                    head_deadline = Some(Instant::now() + config.head_timeout);
                }
                match scan.advance(&buffers.input[input.pos..input.filled], &config.limits) {
                    Ok(Some(len)) => break len,
                    Ok(None) => {}
                    Err(err) => {
                        return refuse_request(
                            shared,
                            stream,
                            &mut buffers.output,
                            err.status(),
                            err.message(),
                        )
                    }
                }
            } else if shared.stopping.load(Ordering::Relaxed) && head_deadline.is_none() {
                return;
            }
            let deadline = head_deadline.unwrap_or(idle_deadline);
            match input.read_more(stream, &mut buffers.input, deadline) {
                Ok(_) => {}
                Err(Wait::Closed) => return,
                Err(Wait::TimedOut) => {
                    if input.filled > input.pos {
                        shared.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                        return refuse_request(
                            shared,
                            stream,
                            &mut buffers.output,
                            408,
                            "request head not received in time",
                        );
                    }
                    return;
                }
            }
        };
        first = false;
        let head = match wire::parse_head(
            &buffers.input[input.pos..input.pos + head_len],
            &mut buffers.headers,
        ) {
            Ok(head) => head,
            Err(err) => {
                return refuse_request(
                    shared,
                    stream,
                    &mut buffers.output,
                    err.status(),
                    err.message(),
                )
            }
        };

        // --- the body, never more than the route allows
        let method = head.method.str(&buffers.input[input.pos..]);
        let limit = shared
            .handler
            .body_limit(method, head.target.str(&buffers.input[input.pos..]))
            .min(config.max_body);
        let mut body = BodyRead::Empty;
        match head.framing {
            Framing::None => {}
            Framing::Length(declared) if declared > limit as u64 => body = BodyRead::TooLarge,
            Framing::Length(declared) => {
                let length = declared as usize; // <= limit, which is a usize
                let mut wait = BodyWait::new(config.body_timeout, head.expect_continue);
                while input.filled - input.pos < head_len + length {
                    if !wait.read_more(shared, stream, &mut input, buffers) {
                        return;
                    }
                }
                body = BodyRead::InInput(length);
            }
            Framing::Chunked => {
                let mut wait = BodyWait::new(config.body_timeout, head.expect_continue);
                let mut decoder = ChunkedDecoder::default();
                let mut written = 0;
                // Chunk framing is consumed as it is decoded: the input after the head
                // only ever holds what the decoder has not seen yet.
                loop {
                    let start = input.pos + head_len;
                    let fed = decoder.feed(
                        &buffers.input[start..input.filled],
                        &mut buffers.body[..limit],
                        &mut written,
                    );
                    let done = match fed {
                        Ok((used, done)) => {
                            buffers.input.copy_within(start + used..input.filled, start);
                            input.filled -= used;
                            done
                        }
                        Err(ChunkError::TooLarge) => {
                            body = BodyRead::TooLarge;
                            break;
                        }
                        Err(ChunkError::Bad(why)) => {
                            return refuse_request(shared, stream, &mut buffers.output, 400, why)
                        }
                    };
                    if done {
                        body = BodyRead::InBody(written);
                        break;
                    }
                    // read_more compacts to the start of the buffer; the head stays intact
                    // because it is all before `start`.
                    if !wait.read_more(shared, stream, &mut input, buffers) {
                        return;
                    }
                }
            }
        }

        // --- handle and answer
        if slot
            .state
            .compare_exchange(READING, BUSY_STATE, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let request_buf = &buffers.input[input.pos..];
        let request = Request {
            buf: request_buf,
            head: &head,
            headers: &buffers.headers[..head.headers],
            body: match body {
                BodyRead::Empty => Body::Complete(&[]),
                BodyRead::InInput(length) => {
                    Body::Complete(&request_buf[head_len..head_len + length])
                }
                BodyRead::InBody(length) => Body::Complete(&buffers.body[..length]),
                BodyRead::TooLarge => Body::TooLarge,
            },
        };
        let (reply, panicked) =
            match catch_unwind(AssertUnwindSafe(|| shared.handler.handle(&request))) {
                Ok(reply) => (reply, false),
                Err(_) => {
                    shared.stats.panics.fetch_add(1, Ordering::Relaxed);
                    shared.handler.refused(500);
                    (
                        Reply::error(500, "internal error; it has been logged"),
                        true,
                    )
                }
            };
        let ending = if matches!(body, BodyRead::TooLarge) {
            Ending::Linger
        } else if panicked
            || !head.keep_alive
            || shared.stopping.load(Ordering::Relaxed)
            // Unavailable here: let the client's retry reach another host behind the
            // load balancer, which pins a connection to one host.
            || reply.status == 503
        {
            Ending::Close
        } else {
            Ending::KeepAlive
        };
        let head_only = request.method() == "HEAD";
        buffers.output.clear();
        with_date(|date| {
            wire::write_response(
                &mut buffers.output,
                &reply,
                date,
                ending != Ending::KeepAlive,
                head_only,
            )
        });
        if write_all(stream, &buffers.output).is_err() {
            return;
        }
        if ending != Ending::KeepAlive {
            // Still being read from, but nothing is handled any more: evictable.
            slot.state.store(READING, Ordering::Release);
            // A client may have pipelined more after a `Connection: close` request too.
            return linger(stream);
        }
        input.pos += head_len
            + if let BodyRead::InInput(length) = body {
                length
            } else {
                0
            };
        if input.pos == input.filled {
            input.pos = 0;
            input.filled = 0;
        }
    }
}

/// Waiting for more of a body: one deadline for the whole body, and `100 Continue` sent
/// once, before the first wait, when the client asked for it.
struct BodyWait {
    deadline: Instant,
    send_continue: bool,
}

impl BodyWait {
    fn new(timeout: Duration, expect_continue: bool) -> BodyWait {
        BodyWait {
            deadline: Instant::now() + timeout,
            send_continue: expect_continue,
        }
    }

    /// Reads more input. `false`: the connection is over (closed by the client, or
    /// answered 408 because the body did not arrive in time).
    fn read_more<H: Handler>(
        &mut self,
        shared: &Shared<H>,
        stream: &TcpStream,
        input: &mut Input,
        buffers: &mut Buffers,
    ) -> bool {
        if std::mem::take(&mut self.send_continue)
            && write_all(stream, b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
        {
            return false;
        }
        match input.read_more(stream, &mut buffers.input, self.deadline) {
            Ok(_) => true,
            Err(Wait::Closed) => false,
            Err(Wait::TimedOut) => {
                shared.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                refuse_request(
                    shared,
                    stream,
                    &mut buffers.output,
                    408,
                    "request body not received in time",
                );
                false
            }
        }
    }
}

#[derive(Clone, Copy)]
enum BodyRead {
    Empty,
    /// In the input buffer right after the head.
    InInput(usize),
    /// Decoded from chunks into the body buffer.
    InBody(usize),
    TooLarge,
}

/// Answers a request the front refuses itself, then closes.
fn refuse_request<H: Handler>(
    shared: &Shared<H>,
    stream: &TcpStream,
    output: &mut Vec<u8>,
    status: u16,
    message: &str,
) {
    shared.handler.refused(status);
    output.clear();
    with_date(|date| {
        wire::write_response(output, &Reply::error(status, message), date, true, false)
    });
    if write_all(stream, output).is_ok() {
        linger(stream);
    }
}

fn write_all(mut stream: &TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes)
}

/// Closes after a response to a client that may still be sending: stop writing, read and
/// discard within a small time and byte budget, so the kernel does not answer the
/// unread bytes with a reset that would destroy the response before it is read.
fn linger(stream: &TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = [0u8; 4096];
    let mut discarded = 0;
    while discarded < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match (&*stream).read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => discarded += n,
        }
    }
}

/// Calls `f` with the `Date` header's value, formatted once a second per thread.
fn with_date<R>(f: impl FnOnce(&str) -> R) -> R {
    thread_local! {
        static CACHE: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((i64::MIN, String::new())) };
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != now {
            *cache = (now, wire::http_date(now));
        }
        f(&cache.1)
    })
}
