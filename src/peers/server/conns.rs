//! The peer server's connections: how many may be open, which one to close
//! when a new one needs room, and the deadlines of a connection that is not
//! being served.
//!
//! Every accepted connection has a [`Slot`] in the [`ConnTable`], which
//! says what it is doing ([`Phase`]) and since when. Only a connection
//! whose request is being served (`Busy`: in the engine, or queued for a
//! worker) is safe from being closed; one that is waiting (for its first
//! request, between requests, or in the middle of sending a head or a body)
//! is what a stalled client looks like, and costs a socket and a small
//! buffer. So when the table is full, a new connection takes the place of
//! the one that has waited longest without completing a request; only when
//! every connection is busy is the newcomer refused. An attacker holding
//! stalled connections cannot keep a legitimate client out: each newcomer
//! pushes the oldest staller out.
//!
//! [`ConnIo`] enforces the deadlines on the socket itself: a connection
//! gets `header_timeout` from its accept (or from the first byte of a later
//! request) to send a whole head, and `idle_timeout` between requests.
//! Bodies have their own deadline where they are read (`body_timeout`).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

/// What a connection is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    /// Accepted, no byte of a request yet (`header_timeout` from the accept).
    Fresh = 0,
    /// Between requests (`idle_timeout` from the last answer).
    Idle = 1,
    /// Sending a request head (`header_timeout` from its first byte).
    Head = 2,
    /// Sending a request body (the body's own deadline applies).
    Body = 3,
    /// Being served: in the engine or waiting for a worker. Never evicted.
    Busy = 4,
    /// Chosen to be closed; its task is dropping it.
    Closing = 5,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Fresh,
            1 => Phase::Idle,
            2 => Phase::Head,
            3 => Phase::Body,
            4 => Phase::Busy,
            _ => Phase::Closing,
        }
    }

    fn evictable(self) -> bool {
        !matches!(self, Phase::Busy | Phase::Closing)
    }
}

/// The deadlines [`ConnIo`] enforces.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// One connection's entry in the table.
pub(crate) struct Slot {
    phase: AtomicU8,
    /// Start of the current deadline (ms since the table's epoch).
    phase_start: AtomicU64,
    /// When the connection was accepted or last completed a request (ms
    /// since the epoch): the eviction order, oldest first.
    waiting_since: AtomicU64,
    /// Bytes arrived while a request was being served: the start of the
    /// next one (pipelined), which gets the head deadline, not the idle one.
    ahead: AtomicBool,
    /// Wakes the connection's task to close it.
    close: Notify,
    index: usize,
}

impl Slot {
    fn new(index: usize, now: u64) -> Slot {
        Slot {
            phase: AtomicU8::new(Phase::Fresh as u8),
            phase_start: AtomicU64::new(now),
            waiting_since: AtomicU64::new(now),
            ahead: AtomicBool::new(false),
            close: Notify::new(),
            index,
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `to` (`Body` or `Busy`) unless the connection is being
    /// closed; false then.
    pub(crate) fn enter(&self, to: Phase) -> bool {
        self.phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                (Phase::from_u8(p) != Phase::Closing).then_some(to as u8)
            })
            .is_ok()
    }

    /// A request was answered at `now`: idle again, at the back of the
    /// eviction order.
    pub(crate) fn done(&self, now: u64) {
        self.waiting_since.store(now, Ordering::Relaxed);
        self.phase_start.store(now, Ordering::Relaxed);
        let next = if self.ahead.swap(false, Ordering::Relaxed) {
            Phase::Head
        } else {
            Phase::Idle
        };
        let _ = self.phase.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
            (Phase::from_u8(p) != Phase::Closing).then_some(next as u8)
        });
    }

    /// Bytes arrived: an idle connection starts a request head now; a fresh
    /// one keeps the deadline that started at its accept.
    fn on_bytes(&self, now: u64) {
        let to_head = |from: Phase| {
            self.phase
                .compare_exchange(from as u8, Phase::Head as u8, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        };
        match self.phase() {
            Phase::Idle if to_head(Phase::Idle) => self.phase_start.store(now, Ordering::Relaxed),
            Phase::Fresh => {
                to_head(Phase::Fresh);
            }
            Phase::Busy => self.ahead.store(true, Ordering::Relaxed),
            _ => {}
        }
    }

    /// Marks the connection for closing if it is not being served.
    fn try_close(&self) -> bool {
        let r = self.phase.fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
            Phase::from_u8(p).evictable().then_some(Phase::Closing as u8)
        });
        if r.is_ok() {
            self.close.notify_one();
        }
        r.is_ok()
    }

    /// Marks the connection for closing if no request of it has arrived
    /// whole (at shutdown: a request being sent or served may finish).
    pub(crate) fn close_if_idle(&self) -> bool {
        self.phase
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                matches!(Phase::from_u8(p), Phase::Fresh | Phase::Idle | Phase::Head)
                    .then_some(Phase::Closing as u8)
            })
            .is_ok()
    }

    /// Completes when the connection was chosen to be closed.
    pub(crate) async fn closed(&self) {
        self.close.notified().await
    }

    /// The current deadline (ms since the epoch), if one applies.
    fn deadline(&self, t: &Timeouts) -> Option<u64> {
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128 / 2) as u64;
        let start = self.phase_start.load(Ordering::Relaxed);
        match self.phase() {
            Phase::Fresh | Phase::Head => Some(start.saturating_add(ms(t.header))),
            Phase::Idle => Some(start.saturating_add(ms(t.idle))),
            Phase::Body | Phase::Busy => None,
            Phase::Closing => Some(0),
        }
    }
}

/// Counts of what the table did, for logs and tests.
#[derive(Default, Debug)]
pub(crate) struct ConnCounts {
    pub accepted: AtomicU64,
    /// Waiting connections closed to make room for a new one.
    pub evicted: AtomicU64,
    /// New connections refused because every connection was busy.
    pub refused: AtomicU64,
}

struct Slots {
    list: Vec<Option<Arc<Slot>>>,
    free: Vec<usize>,
    live: usize,
}

/// The open connections and their limit.
pub(crate) struct ConnTable {
    max: usize,
    epoch: Instant,
    pub(crate) timeouts: Timeouts,
    slots: Mutex<Slots>,
    pub(crate) counts: ConnCounts,
}

/// Connections chosen for closing may still hold their descriptor for a
/// moment (their task has not run yet); past the limit plus this many, a
/// newcomer is refused rather than admitted.
const OVERSHOOT: usize = 64;

/// What [`ConnTable::admit`] decided.
pub(crate) enum Admit {
    /// Serve it; the guard gives the place back when dropped.
    Serve(ConnGuard),
    /// Every connection is busy: refuse it.
    Full,
    /// Too many connections chosen for closing have not closed yet: let
    /// their tasks run, then ask again.
    Crowded,
}

impl ConnTable {
    pub(crate) fn new(max: usize, timeouts: Timeouts) -> Arc<ConnTable> {
        Arc::new(ConnTable {
            max,
            epoch: Instant::now(),
            timeouts,
            slots: Mutex::new(Slots {
                list: Vec::new(),
                free: Vec::new(),
                live: 0,
            }),
            counts: ConnCounts::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Milliseconds since the table was made.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections open (including those being closed).
    pub(crate) fn live(&self) -> usize {
        self.lock().live
    }

    /// A place for a new connection: a free one, or that of the connection
    /// that has waited longest, which is closed.
    pub(crate) fn admit(self: &Arc<Self>) -> Admit {
        let now = self.now_ms();
        let mut s = self.lock();
        if s.live >= self.max + OVERSHOOT {
            return Admit::Crowded;
        }
        if s.live >= self.max && !self.evict_oldest(&s) {
            self.counts.refused.fetch_add(1, Ordering::Relaxed);
            return Admit::Full;
        }
        let index = s.free.pop().unwrap_or_else(|| {
            s.list.push(None);
            s.list.len() - 1
        });
        let slot = Arc::new(Slot::new(index, now));
        s.list[index] = Some(slot.clone());
        s.live += 1;
        self.counts.accepted.fetch_add(1, Ordering::Relaxed);
        Admit::Serve(ConnGuard {
            table: self.clone(),
            slot,
        })
    }

    /// Closes the connection that has waited longest, if any is waiting
    /// (to free a descriptor when accepting fails for want of one).
    pub(crate) fn evict_one(&self) -> bool {
        let s = self.lock();
        self.evict_oldest(&s)
    }

    fn evict_oldest(&self, s: &Slots) -> bool {
        // A linear scan, only when full: the request path then touches
        // nothing but its own slot.
        loop {
            let oldest = s
                .list
                .iter()
                .flatten()
                .filter(|c| c.phase().evictable())
                .min_by_key(|c| c.waiting_since.load(Ordering::Relaxed));
            let Some(victim) = oldest else { return false };
            // It may have become busy since it was looked at: then look again.
            if victim.try_close() {
                self.counts.evicted.fetch_add(1, Ordering::Relaxed);
                return true;
            }
        }
    }
}

/// A connection's place in the table, given back on drop.
pub(crate) struct ConnGuard {
    table: Arc<ConnTable>,
    slot: Arc<Slot>,
}

impl ConnGuard {
    pub(crate) fn slot(&self) -> &Arc<Slot> {
        &self.slot
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut s = self.table.lock();
        s.list[self.slot.index] = None;
        s.free.push(self.slot.index);
        s.live -= 1;
    }
}

/// A connection's socket, which fails a read or write that waits past the
/// connection's current deadline (hyper then drops the connection) and
/// tells the slot when a request starts arriving.
pub(crate) struct ConnIo {
    io: tokio::net::TcpStream,
    slot: Arc<Slot>,
    table: Arc<ConnTable>,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The deadline `timer` is set to (ms since the epoch).
    armed: u64,
}

impl ConnIo {
    pub(crate) fn new(io: tokio::net::TcpStream, guard: &ConnGuard) -> ConnIo {
        ConnIo {
            io,
            slot: guard.slot.clone(),
            table: guard.table.clone(),
            timer: None,
            armed: u64::MAX,
        }
    }

    /// The socket is not ready: fail if the deadline passed, else make sure
    /// a timer wakes this task by then.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some(deadline) = self.slot.deadline(&self.table.timeouts) else {
            return Poll::Pending;
        };
        loop {
            if self.table.now_ms() >= deadline {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client was too slow",
                )));
            }
            let at = tokio::time::Instant::from_std(self.table.epoch + Duration::from_millis(deadline));
            // Deadlines mostly move later (each answer restarts the idle
            // one): a timer already set earlier is kept, and when it fires
            // early the deadline is looked at again. Only an earlier
            // deadline resets it.
            match &mut self.timer {
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
                Some(t) if self.armed > deadline => t.as_mut().reset(at),
                Some(_) => {}
            }
            if self.armed > deadline {
                self.armed = deadline;
            }
            let timer = self.timer.as_mut().expect("set above");
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            // Fired: at the deadline (the loop fails), or at an older, earlier
            // one (re-armed for the current one).
            if self.table.now_ms() < deadline {
                timer.as_mut().reset(at);
                self.armed = deadline;
                if timer.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    }
}

impl AsyncRead for ConnIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let now = self.table.now_ms();
                    self.slot.on_bytes(now);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }
}

impl AsyncWrite for ConnIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.pending(cx),
            r => r,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The default connection limit: half the soft RLIMIT_NOFILE, so that the
/// rest of the process (its files, its own calls to peers, the host
/// application) keeps at least as many descriptors as the server may take;
/// at least 16, at most 16,384 (each connection costs some memory too).
pub(crate) fn auto_max_connections() -> usize {
    max_connections_for(fd_soft_limit())
}

pub(crate) fn max_connections_for(soft_limit: Option<u64>) -> usize {
    match soft_limit {
        Some(n) => (n / 2).clamp(16, 16_384) as usize,
        None => 16_384,
    }
}

/// The soft RLIMIT_NOFILE; `None` when unlimited or unknown.
fn fd_soft_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we pass, which is valid.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
    // rlim_t is u64 on Linux, not everywhere.
    #[allow(clippy::unnecessary_cast)]
    let soft = r.rlim_cur as u64;
    (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(soft)
}

/// Lets a repeated message through at most once per interval, counting
/// those held back: a node under attack logs a line per interval, never a
/// line per attempt.
pub(crate) struct Throttle {
    interval_ms: u64,
    /// When the last message went out (ms since `epoch`), `u64::MAX`: never.
    last: AtomicU64,
    held: AtomicU64,
    epoch: Instant,
}

impl Throttle {
    pub(crate) fn new(interval: Duration) -> Throttle {
        Throttle {
            interval_ms: interval.as_millis() as u64,
            last: AtomicU64::new(u64::MAX),
            held: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// `Some(n)`: log now, and say that this happened `n` times (this one
    /// included) since the last message. `None`: stay quiet.
    pub(crate) fn hit(&self) -> Option<u64> {
        self.held.fetch_add(1, Ordering::Relaxed);
        let now = self.epoch.elapsed().as_millis() as u64;
        let last = self.last.load(Ordering::Relaxed);
        if last != u64::MAX && now < last.saturating_add(self.interval_ms) {
            return None;
        }
        if self
            .last
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return None;
        }
        Some(self.held.swap(0, Ordering::Relaxed).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> Arc<ConnTable> {
        ConnTable::new(
            max,
            Timeouts {
                header: Duration::from_secs(10),
                idle: Duration::from_secs(120),
            },
        )
    }

    fn serve(t: &Arc<ConnTable>) -> ConnGuard {
        match t.admit() {
            Admit::Serve(g) => g,
            _ => panic!("refused"),
        }
    }

    #[test]
    fn full_table_evicts_the_longest_waiting_connection() {
        let t = table(3);
        let a = serve(&t);
        std::thread::sleep(Duration::from_millis(3));
        let b = serve(&t);
        std::thread::sleep(Duration::from_millis(3));
        let c = serve(&t);
        // a is busy, so b (next oldest) goes; c stays.
        assert!(a.slot().enter(Phase::Busy));
        let d = serve(&t);
        assert_eq!(b.slot().phase(), Phase::Closing);
        assert_eq!(a.slot().phase(), Phase::Busy);
        assert_eq!(c.slot().phase(), Phase::Fresh);
        assert_eq!(t.counts.evicted.load(Ordering::Relaxed), 1);
        // A closing connection cannot become busy.
        assert!(!b.slot().enter(Phase::Busy));
        drop(b);
        assert_eq!(t.live(), 3);
        // Answering moves a connection to the back of the order: c answered
        // a request after d arrived, so d is now the longest waiting.
        std::thread::sleep(Duration::from_millis(3));
        c.slot().done(t.now_ms());
        let e = serve(&t);
        assert_eq!(d.slot().phase(), Phase::Closing);
        assert_eq!(c.slot().phase(), Phase::Idle);
        drop(d);
        // Everyone busy: the newcomer is refused.
        assert!(c.slot().enter(Phase::Busy));
        assert!(e.slot().enter(Phase::Busy));
        assert!(matches!(t.admit(), Admit::Full));
        assert_eq!(t.counts.refused.load(Ordering::Relaxed), 1);
        assert_eq!(t.live(), 3);
        // A stalled body is waiting, not busy.
        assert!(e.slot().enter(Phase::Body));
        let _f = serve(&t);
        assert_eq!(e.slot().phase(), Phase::Closing);
    }

    #[test]
    fn evict_one_frees_a_waiting_connection_only() {
        let t = table(8);
        let a = serve(&t);
        assert!(a.slot().enter(Phase::Busy));
        assert!(!t.evict_one());
        let b = serve(&t);
        assert!(t.evict_one());
        assert_eq!(b.slot().phase(), Phase::Closing);
        assert!(!t.evict_one());
    }

    #[test]
    fn deadlines_follow_the_phase() {
        let t = table(1);
        let g = serve(&t);
        let s = g.slot();
        let at = s.phase_start.load(Ordering::Relaxed);
        assert_eq!(s.deadline(&t.timeouts), Some(at + 10_000));
        // The first bytes of the first request keep the accept's deadline.
        s.on_bytes(at + 5);
        assert_eq!(s.phase(), Phase::Head);
        assert_eq!(s.deadline(&t.timeouts), Some(at + 10_000));
        assert!(s.enter(Phase::Busy));
        assert_eq!(s.deadline(&t.timeouts), None);
        s.done(at + 100);
        assert_eq!(s.deadline(&t.timeouts), Some(at + 100 + 120_000));
        // A later request's head gets its own header deadline.
        s.on_bytes(at + 200);
        assert_eq!(s.deadline(&t.timeouts), Some(at + 200 + 10_000));
        assert!(s.enter(Phase::Body));
        assert_eq!(s.deadline(&t.timeouts), None);
        // Bytes of a next request that arrive while one is served start
        // its head deadline when the answer goes out.
        assert!(s.enter(Phase::Busy));
        s.on_bytes(at + 300);
        s.done(at + 400);
        assert_eq!(s.phase(), Phase::Head);
        assert_eq!(s.deadline(&t.timeouts), Some(at + 400 + 10_000));
        assert!(s.enter(Phase::Busy));
        s.done(at + 500);
        assert_eq!(s.phase(), Phase::Idle);
    }

    #[test]
    fn connection_limit_follows_the_fd_limit() {
        assert_eq!(max_connections_for(Some(1024)), 512);
        assert_eq!(max_connections_for(Some(20)), 16);
        assert_eq!(max_connections_for(Some(1 << 20)), 16_384);
        assert_eq!(max_connections_for(None), 16_384);
        assert!(auto_max_connections() >= 16);
    }

    #[test]
    fn throttle_lets_one_message_through_per_interval() {
        let th = Throttle::new(Duration::from_millis(200));
        assert_eq!(th.hit(), Some(1));
        for _ in 0..100 {
            assert_eq!(th.hit(), None);
        }
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(th.hit(), Some(101));
    }
}
