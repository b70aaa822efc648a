//! Misses run on the runtime thread that read the request, when that is
//! safe and cheaper than a worker.
//!
//! Handing a call to a worker and its answer back costs two thread
//! wake-ups, more than a fast getter takes (a few µs to compute a value,
//! tens for a Python callback): the peer fetch rate fell by ~40% when every
//! miss took a worker. So a group whose loads have been fast ([`Speed`]: an
//! average under [`FAST`] over at least [`MIN_SAMPLES`], none over [`SLOW`]
//! in the last [`COOLDOWN`]) has its misses run inline, one at a time per
//! pool (its runtime has two workers or more; with one, never), so the
//! other runtime workers keep serving.
//!
//! A call may still turn slow (a lock, a stalled database, a GIL held by
//! another thread). A tokio worker that blocks would then stall the whole
//! runtime, not only itself: the worker that wakes from the I/O driver with
//! one task does not wake another to take the driver over. So while an
//! inline call runs, a watchdog thread (`gcwatch-<port>`, started at the
//! first inline call, asleep whenever none ran for [`WATCH_LINGER`]) looks
//! every [`WATCH_PERIOD`]; a call older than that gets a no-op task spawned
//! from outside the runtime, which wakes a parked worker, which then drives
//! the I/O. The slow call also sends its group back to the workers for
//! [`COOLDOWN`].
//!
//! A getter running inline that calls a peer through the pool's client
//! must not wait with the runtime's core in hand: the client sees
//! [`inline_call_running`] and waits in `block_in_place`.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use once_cell::sync::Lazy;

use super::workers::Failed;

/// A group whose calls average less than this may run them inline.
pub(crate) const FAST: Duration = Duration::from_micros(200);
/// A call that takes longer than this sends its group to the workers...
pub(crate) const SLOW: Duration = Duration::from_millis(10);
/// ...for this long.
pub(crate) const COOLDOWN: Duration = Duration::from_secs(5);
/// Calls measured before a group may run inline.
pub(crate) const MIN_SAMPLES: u64 = 8;
/// How often the watchdog looks while inline calls happen, and how old a
/// call must be for it to wake another runtime worker.
pub(crate) const WATCH_PERIOD: Duration = Duration::from_millis(1);
/// The watchdog sleeps after this long without an inline call.
pub(crate) const WATCH_LINGER: Duration = Duration::from_millis(20);

static EPOCH: Lazy<Instant> = Lazy::new(Instant::now);

/// µs since EPOCH, at least 1 (0 means "none" below).
fn now_us() -> u64 {
    EPOCH.elapsed().as_micros() as u64 + 1
}

/// How long one group's calls take, to decide where the next runs.
#[derive(Default, Debug)]
pub(crate) struct Speed {
    /// Moving average, 1/8 weight per call (µs).
    avg_us: AtomicU64,
    samples: AtomicU64,
    /// No inline calls before this (µs since EPOCH).
    slow_until: AtomicU64,
}

impl Speed {
    fn fast(&self) -> bool {
        self.samples.load(Ordering::Relaxed) >= MIN_SAMPLES
            && self.avg_us.load(Ordering::Relaxed) < FAST.as_micros() as u64
            && now_us() >= self.slow_until.load(Ordering::Relaxed)
    }

    fn record(&self, took: Duration) {
        let us = took.as_micros().min(u64::MAX as u128 / 2) as u64;
        let old = self.avg_us.load(Ordering::Relaxed);
        let avg = if self.samples.fetch_add(1, Ordering::Relaxed) == 0 {
            us
        } else {
            old - old / 8 + us / 8
        };
        self.avg_us.store(avg, Ordering::Relaxed);
        if took > SLOW {
            self.slow_until
                .store(now_us() + COOLDOWN.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// Runs `f`, recording how long it took.
    pub(crate) fn time<T>(&self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.record(t.elapsed());
        r
    }
}

thread_local! {
    /// Set while this (runtime) thread runs a call inline.
    static INLINE: Cell<bool> = const { Cell::new(false) };
}

/// True while the current thread is a runtime worker running a getter
/// inline: whatever it waits for must not need this thread's runtime core.
pub(crate) fn inline_call_running() -> bool {
    INLINE.try_with(Cell::get).unwrap_or(false)
}

/// The inline slot of one server, and its watchdog.
pub(crate) struct Inline {
    enabled: bool,
    busy: AtomicBool,
    watchdog: Option<Arc<Watchdog>>,
}

impl Inline {
    /// `handle`: the runtime the server runs on, with more than one worker;
    /// `None`: never inline.
    pub(crate) fn new(handle: Option<tokio::runtime::Handle>, watchdog_name: String) -> Inline {
        Inline {
            enabled: handle.is_some(),
            busy: AtomicBool::new(false),
            watchdog: handle.map(|h| Watchdog::new(h, watchdog_name)),
        }
    }

    /// Runs `f` here if `speed` says its group is fast and the slot is
    /// free, recording its time; otherwise gives `f` back.
    pub(crate) fn try_run<T, F: FnOnce() -> T>(&self, speed: &Speed, f: F) -> Result<Result<T, Failed>, F> {
        if !self.enabled || !speed.fast() || self.busy.swap(true, Ordering::Acquire) {
            return Err(f);
        }
        struct Turn<'a>(&'a Inline);
        impl Drop for Turn<'_> {
            fn drop(&mut self) {
                let _ = INLINE.try_with(|c| c.set(false));
                if let Some(w) = &self.0.watchdog {
                    w.end();
                }
                self.0.busy.store(false, Ordering::Release);
            }
        }
        let _turn = Turn(self);
        let _ = INLINE.try_with(|c| c.set(true));
        if let Some(w) = &self.watchdog {
            w.begin();
        }
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| speed.time(f)));
        Ok(r.map_err(|_| Failed))
    }

    /// Stops the watchdog thread, if it runs.
    pub(crate) fn close(&self) {
        if let Some(w) = &self.watchdog {
            w.close();
        }
    }

    #[cfg(test)]
    pub(crate) fn watchdog_nudges(&self) -> u64 {
        self.watchdog
            .as_ref()
            .map_or(0, |w| w.nudges.load(Ordering::Relaxed))
    }
}

#[derive(Default)]
struct WatchState {
    closed: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// See the module docs.
struct Watchdog {
    handle: tokio::runtime::Handle,
    name: String,
    /// Start of the inline call running (µs since EPOCH), 0: none.
    running_since: AtomicU64,
    /// The watchdog waits on `wake` (set before it looks at
    /// `running_since`, so `begin` either sees it or is seen).
    asleep: AtomicBool,
    started: AtomicBool,
    state: Mutex<WatchState>,
    wake: Condvar,
    nudges: AtomicU64,
}

impl Watchdog {
    fn new(handle: tokio::runtime::Handle, name: String) -> Arc<Watchdog> {
        Arc::new(Watchdog {
            handle,
            name,
            running_since: AtomicU64::new(0),
            asleep: AtomicBool::new(false),
            started: AtomicBool::new(false),
            state: Mutex::default(),
            wake: Condvar::new(),
            nudges: AtomicU64::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, WatchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(self: &Arc<Self>) {
        self.running_since.store(now_us(), Ordering::SeqCst);
        if self.asleep.load(Ordering::SeqCst) {
            // Under the lock, so the wake-up cannot fall between the
            // watchdog's last look and its wait.
            let _st = self.lock();
            self.asleep.store(false, Ordering::SeqCst);
            self.wake.notify_one();
        } else if !self.started.load(Ordering::Acquire) {
            let mut st = self.lock();
            if !self.started.load(Ordering::Acquire) && !st.closed {
                self.started.store(true, Ordering::Release);
                let me = self.clone();
                st.thread = std::thread::Builder::new()
                    .name(self.name.clone())
                    .spawn(move || me.watch())
                    .ok();
            }
        }
    }

    fn end(&self) {
        self.running_since.store(0, Ordering::SeqCst);
    }

    fn watch(self: Arc<Self>) {
        let mut last_seen = Instant::now();
        let mut nudged = 0;
        loop {
            {
                let mut st = self.lock();
                if st.closed {
                    return;
                }
                if last_seen.elapsed() >= WATCH_LINGER {
                    self.asleep.store(true, Ordering::SeqCst);
                    while self.asleep.load(Ordering::SeqCst)
                        && self.running_since.load(Ordering::SeqCst) == 0
                        && !st.closed
                    {
                        st = self.wake.wait(st).unwrap_or_else(|e| e.into_inner());
                    }
                    self.asleep.store(false, Ordering::SeqCst);
                    if st.closed {
                        return;
                    }
                    last_seen = Instant::now();
                }
            }
            std::thread::sleep(WATCH_PERIOD);
            let since = self.running_since.load(Ordering::SeqCst);
            if since == 0 {
                continue;
            }
            last_seen = Instant::now();
            if since != nudged && now_us().saturating_sub(since) >= WATCH_PERIOD.as_micros() as u64 {
                // From outside the runtime a spawn wakes a parked worker.
                drop(self.handle.spawn(async {}));
                self.nudges.fetch_add(1, Ordering::Relaxed);
                nudged = since;
            }
        }
    }

    fn close(&self) {
        let thread = {
            let mut st = self.lock();
            st.closed = true;
            st.thread.take()
        };
        self.wake.notify_all();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast_speed() -> Speed {
        let s = Speed::default();
        for _ in 0..MIN_SAMPLES {
            s.record(Duration::ZERO);
        }
        s
    }

    #[test]
    fn only_fast_groups_run_inline_and_one_at_a_time() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let inline = Inline::new(Some(rt.handle().clone()), "gcwatch-test".into());
        let speed = Speed::default();
        // Unmeasured: not inline.
        assert!(inline.try_run(&speed, || 1).is_err());
        for _ in 0..MIN_SAMPLES {
            speed.record(Duration::from_micros(10));
        }
        assert_eq!(inline.try_run(&speed, || 2).ok().unwrap().unwrap(), 2);
        // One at a time: a nested attempt finds the slot taken.
        let nested = inline.try_run(&speed, || {
            assert!(inline_call_running());
            inline.try_run(&speed, || 3).is_err()
        });
        assert!(nested.ok().unwrap().unwrap());
        assert!(!inline_call_running());
        // A slow call runs (it was fast before) and sends the group away.
        let r = inline.try_run(&speed, || std::thread::sleep(SLOW + Duration::from_millis(1)));
        assert!(r.is_ok());
        assert!(inline.try_run(&speed, || 4).is_err());
        // A panic is a failure, and frees the slot.
        let s2 = fast_speed();
        assert!(inline.try_run(&s2, || panic!("boom")).ok().unwrap().is_err());
        assert!(!inline_call_running());
        assert_eq!(inline.try_run(&s2, || 5).ok().unwrap().unwrap(), 5);
        // Never without a runtime.
        let off = Inline::new(None, String::new());
        assert!(off.try_run(&s2, || 6).is_err());
        inline.close();
    }

    #[test]
    fn the_watchdog_nudges_once_per_long_call_and_sleeps_when_idle() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let inline = Inline::new(Some(rt.handle().clone()), "gcwatch-test".into());
        let speed = fast_speed();
        let _ = inline.try_run(&speed, || ()); // starts the watchdog
        let s2 = fast_speed();
        let _ = inline.try_run(&s2, || std::thread::sleep(Duration::from_millis(30)));
        assert_eq!(inline.watchdog_nudges(), 1);
        std::thread::sleep(WATCH_LINGER * 3);
        let w = inline.watchdog.as_ref().unwrap();
        assert!(w.asleep.load(Ordering::SeqCst), "asleep when idle");
        let s3 = fast_speed();
        let _ = inline.try_run(&s3, || std::thread::sleep(Duration::from_millis(30)));
        assert_eq!(inline.watchdog_nudges(), 2, "woken by the next call");
        inline.close();
        assert!(w.lock().thread.is_none());
    }
}
