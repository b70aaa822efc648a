//! Single-flight: concurrent loads of one key share one call
//! (groupcache's singleflight.Group), fixed where the original is weak:
//!
//! - A call is completed on every exit path of its leader: the leader holds
//!   a [`Leader`] guard whose `Drop` completes the call with an error if the
//!   leader never got to [`Leader::finish`] (a panic in the getter, in the
//!   peer client, or while storing the value). Waiters get that error
//!   instead of hanging, and the key can be loaded again.
//! - A call can be *invalidated* (by a set or remove of its key): it is
//!   detached at once, so later callers start a fresh load rather than
//!   join one that may return the old value, and the leader learns it must
//!   not cache what it loaded.
//! - A flight may have a *load timeout*. A call older than that is
//!   abandoned: its waiters get `Error::Timeout`, it is detached and
//!   invalidated (so its result, should it ever come, is not cached over a
//!   newer value), and the next caller starts a fresh load. The leader's
//!   own thread runs the getter and cannot be interrupted: it waits for its
//!   getter and gets its result.
//! - A call made before a `fork()` (an older process generation, see
//!   `engine::fork`) is never waited on or joined in the child, where its
//!   leader thread does not exist: a caller replaces it and leads its own
//!   load.
//! - A wait that would close a cycle (a getter waiting, directly or through
//!   other threads' loads, on a call its own thread leads) fails instead of
//!   deadlocking.

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use super::fork;
use super::Error;

const SHARDS: usize = 16;

thread_local! {
    /// How long a wait on another thread's call may last before it returns
    /// `Error::InProgress` (the call goes on); `None`: as long as the call.
    static WAIT_SLICE: Cell<Option<Duration>> = const { Cell::new(None) };
}

/// Runs `f` with waits on other threads' calls cut into slices of `slice`:
/// a wait that outlasts it returns `Error::InProgress`, leaving the call
/// to go on, so that the caller can do something else (such as let a
/// Python signal handler run) and call again to keep waiting.
pub fn with_wait_slice<R>(slice: Duration, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Duration>);
    impl Drop for Restore {
        fn drop(&mut self) {
            WAIT_SLICE.with(|s| s.set(self.0));
        }
    }
    let _restore = Restore(WAIT_SLICE.with(|s| s.replace(Some(slice))));
    f()
}

/// The slice set by [`with_wait_slice`] on this thread, if any: for a
/// thread that does the caller's waiting in its place.
pub fn wait_slice() -> Option<Duration> {
    WAIT_SLICE.with(|s| s.get())
}

/// One in-flight call.
pub struct Call<T> {
    leader: ThreadId,
    /// The process generation the call was made in (`fork::generation`).
    generation: u64,
    /// When waiters give up on it and later callers replace it.
    deadline: Option<Instant>,
    result: Mutex<Option<Result<T, Error>>>,
    done: Condvar,
    /// Threads asleep on `done`; changed and read only with `result`
    /// locked, so the leader, which sets the result under that lock, sees
    /// every waiter that went to sleep before. Most calls have none, and
    /// `notify_all` is a system call even then (a batch finishes hundreds
    /// of calls).
    waiters: AtomicUsize,
    invalidated: AtomicBool,
}

impl<T: Clone> Call<T> {
    /// Whether a set or remove of the key arrived while this call ran, or
    /// the call was abandoned (timed out, or made before a fork).
    pub fn invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Acquire)
    }

    /// The result, once there is one; `None` when `deadline` passed first.
    fn wait(&self, deadline: Option<Instant>) -> Option<Result<T, Error>> {
        let mut r = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = r.as_ref() {
                return Some(r.clone());
            }
            let sleep_until = match deadline {
                None => None,
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return None;
                    }
                    Some(d - now)
                }
            };
            // With `result` locked (see `waiters`).
            self.waiters.fetch_add(1, Ordering::Relaxed);
            r = match sleep_until {
                None => self.done.wait(r).unwrap_or_else(|p| p.into_inner()),
                Some(t) => self.done.wait_timeout(r, t).unwrap_or_else(|p| p.into_inner()).0,
            };
            self.waiters.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn is_stuck(&self, now: impl FnOnce() -> Instant) -> bool {
        self.deadline.is_some_and(|d| now() >= d)
    }
}

/// Why a new leader's call took the place of another one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replaced {
    /// The previous call ran past the load timeout.
    Stuck,
    /// The previous call was made before a `fork()`: its leader is not in
    /// this process.
    Forked,
}

/// What `Flight::begin` made the caller: the leader of a new call, or a
/// follower of one already running, who waits for it when it chooses.
pub enum Begun<'a, T: Clone> {
    /// Run the load, then `Leader::finish`.
    Leader(Leader<'a, T>),
    /// Another thread leads the call: `Follower::wait` for its result.
    Follower(Follower<'a, T>),
}

/// A caller's place in another thread's call, taken without waiting yet:
/// a batch first leads (and finishes) the keys it can, then waits for the
/// rest, so it never holds a call of its own while it waits on another.
pub struct Follower<'a, T: Clone> {
    flight: &'a Flight<T>,
    key: &'a [u8],
    hash: u64,
    call: Arc<Call<T>>,
}

impl<T: Clone> Follower<'_, T> {
    /// Waits for the call's result, as `Flight::join`'s waiters do (the load
    /// timeout, the wait slice and the cycle check apply).
    pub fn wait(self) -> Result<T, Error> {
        self.flight.wait_for(self.key, self.hash, &self.call)
    }
}

/// What `Flight::join` made the caller.
pub enum Role<'a, T: Clone> {
    /// Run the load, then `Leader::finish`.
    Leader(Leader<'a, T>),
    /// Another thread's call completed with this (or timed out).
    Waited(Result<T, Error>),
}

/// The leader's hold on its call. `finish` completes it; dropping it
/// without (a panic on the way, an early return) completes it with an
/// error, so no waiter is left hanging and the key can be loaded again.
pub struct Leader<'a, T: Clone> {
    flight: &'a Flight<T>,
    key: &'a [u8],
    hash: u64,
    call: Arc<Call<T>>,
    replaced: Option<Replaced>,
    settled: bool,
}

impl<T: Clone> Leader<'_, T> {
    /// Whether the call was invalidated or abandoned meanwhile: what it
    /// loads will not be cached.
    pub fn invalidated(&self) -> bool {
        self.call.invalidated()
    }

    /// Whether this call replaced a stuck or pre-fork one.
    pub fn replaced(&self) -> Option<Replaced> {
        self.replaced
    }

    /// Completes the call: `cache` runs first, under the key's lock and
    /// only if the call was not invalidated or abandoned, so that a
    /// concurrent set or remove is ordered entirely before or after it.
    /// Then waiters wake with `result`. If `cache` panics, the guard's
    /// `Drop` still wakes them (with an error).
    pub fn finish(mut self, result: Result<T, Error>, cache: impl FnOnce(&T)) {
        self.settle(result, cache);
    }

    fn settle(&mut self, result: Result<T, Error>, cache: impl FnOnce(&T)) {
        {
            let mut map = self.flight.shard(self.hash);
            // Detached first: should `cache` panic, no entry stays behind.
            if map.get(self.key).is_some_and(|c| Arc::ptr_eq(c, &self.call)) {
                map.remove(self.key);
            }
            if !self.call.invalidated() {
                if let Ok(v) = &result {
                    cache(v);
                }
            }
        }
        let sleepers = {
            let mut r = self.call.result.lock().unwrap_or_else(|p| p.into_inner());
            *r = Some(result);
            self.call.waiters.load(Ordering::Relaxed)
        };
        if sleepers > 0 {
            self.call.done.notify_all();
        }
        self.settled = true;
    }
}

impl<T: Clone> Drop for Leader<'_, T> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let why = if thread::panicking() {
            "the thread loading this key panicked (an internal error or a bug in a getter; see the log)"
        } else {
            "the load of this key ended without a result"
        };
        self.settle(Err(Error::LoaderFailed(why.into())), |_| {});
    }
}

type Map<T> = HashMap<Box<[u8]>, Arc<Call<T>>>;

pub struct Flight<T> {
    shards: Box<[Mutex<Map<T>>]>,
    /// How long a call may run before it is abandoned; `None`: forever.
    timeout: Option<Duration>,
    /// Names the flight in log messages, e.g. `cache "users"`.
    context: String,
}

/// The wait-for graph: threads blocked in a wait, and the leader of the
/// call each waits for; consulted only on the (slow) wait path.
///
/// One graph per process generation: in a child made by `fork()`, the
/// parent's edges name threads that do not exist there, and its lock may
/// have been held by one of them at the fork. The child starts a fresh
/// graph and leaves the parent's alone (leaked, never dropped).
struct WaitGraph {
    generation: u64,
    edges: Mutex<HashMap<ThreadId, ThreadId>>,
}

static WAITING: AtomicPtr<WaitGraph> = AtomicPtr::new(std::ptr::null_mut());

fn wait_graph() -> &'static WaitGraph {
    let generation = fork::generation();
    loop {
        let p = WAITING.load(Ordering::Acquire);
        // SAFETY: WAITING only ever holds NULL or a pointer from
        // Box::into_raw below, and no graph is ever freed once published.
        if let Some(g) = unsafe { p.as_ref() } {
            if g.generation == generation {
                return g;
            }
        }
        let fresh = Box::into_raw(Box::new(WaitGraph {
            generation,
            edges: Mutex::default(),
        }));
        match WAITING.compare_exchange(p, fresh, Ordering::AcqRel, Ordering::Acquire) {
            // SAFETY: published, so never freed: valid for 'static. The
            // previous graph (another generation's) is leaked on purpose.
            Ok(_) => return unsafe { &*fresh },
            // SAFETY: `fresh` was never published; we still own it.
            Err(_) => drop(unsafe { Box::from_raw(fresh) }),
        }
    }
}

/// Removes a waiter's edge on every exit path.
struct Edge {
    graph: &'static WaitGraph,
    me: ThreadId,
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.graph
            .edges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.me);
    }
}

impl<T: Clone> Default for Flight<T> {
    fn default() -> Self {
        Flight::new("a flight".into(), None)
    }
}

impl<T: Clone> Flight<T> {
    /// A flight whose calls are abandoned after `timeout` (`None`: never).
    /// `context` names it in log messages.
    pub fn new(context: String, timeout: Option<Duration>) -> Self {
        Flight {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            timeout,
            context,
        }
    }

    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Map<T>> {
        self.shards[(hash as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every shard's lock (no code path holds two at once), for
    /// `fork::ForkLocks`.
    ///
    /// # Safety
    /// As [`super::fork::Guards::keep`]: `self` outlives the guards.
    pub(crate) unsafe fn lock_for_fork(&self, guards: &mut super::fork::Guards) {
        for s in self.shards.iter() {
            // SAFETY: the caller's promise.
            unsafe { guards.keep(s.lock().unwrap_or_else(|p| p.into_inner())) };
        }
    }

    /// Joins the call for `key`, or starts one. `hash` is any hash of key.
    /// A call made before a fork, or past the load timeout, is never
    /// joined: it is abandoned and this caller leads a new one.
    pub fn join<'a>(&'a self, key: &'a [u8], hash: u64) -> Role<'a, T> {
        match self.begin(key, hash) {
            Begun::Leader(leader) => Role::Leader(leader),
            Begun::Follower(f) => Role::Waited(f.wait()),
        }
    }

    /// As `join`, but a caller that finds a live call does not wait for it
    /// yet: it gets a `Follower` to wait with later.
    pub fn begin<'a>(&'a self, key: &'a [u8], hash: u64) -> Begun<'a, T> {
        let generation = fork::generation();
        let (call, replaced) = {
            let mut map = self.shard(hash);
            let mut replaced = None;
            if let Some(c) = map.get(key) {
                if c.generation != generation {
                    replaced = Some(Replaced::Forked);
                } else if c.is_stuck(Instant::now) {
                    replaced = Some(Replaced::Stuck);
                } else {
                    return Begun::Follower(Follower {
                        flight: self,
                        key,
                        hash,
                        call: c.clone(),
                    });
                }
                // Abandoned: its result, if it ever comes, is not cached
                // (the new call's is newer).
                c.invalidated.store(true, Ordering::Release);
            }
            let c = Arc::new(Call {
                leader: thread::current().id(),
                generation,
                deadline: self.timeout.and_then(|t| Instant::now().checked_add(t)),
                result: Mutex::new(None),
                done: Condvar::new(),
                waiters: AtomicUsize::new(0),
                invalidated: AtomicBool::new(false),
            });
            map.insert(key.into(), c.clone());
            (c, replaced)
        };
        if replaced == Some(Replaced::Stuck) {
            self.log_abandoned(key);
        }
        Begun::Leader(Leader {
            flight: self,
            key,
            hash,
            call,
            replaced,
            settled: false,
        })
    }

    fn wait_for(&self, key: &[u8], hash: u64, call: &Arc<Call<T>>) -> Result<T, Error> {
        let me = thread::current().id();
        let graph = wait_graph();
        {
            let mut waiting = graph.edges.lock().unwrap_or_else(|p| p.into_inner());
            let mut t = call.leader;
            // Bounded by the number of waiting threads: each has one edge.
            for _ in 0..=waiting.len() {
                if t == me {
                    return Err(Error::InvalidArgument(
                        "recursive load: the getter waited for a load that its own thread \
                         is running (directly or through other keys' loads)"
                            .into(),
                    ));
                }
                match waiting.get(&t) {
                    Some(&next) => t = next,
                    None => break,
                }
            }
            waiting.insert(me, call.leader);
        }
        let _edge = Edge { graph, me };
        let slice_end = WAIT_SLICE
            .with(|s| s.get())
            .and_then(|s| Instant::now().checked_add(s))
            .filter(|&end| call.deadline.is_none_or(|d| end < d));
        if let Some(r) = call.wait(slice_end.or(call.deadline)) {
            return r;
        }
        if slice_end.is_some() {
            // The caller's slice ended, not the load: it goes on.
            return Err(Error::InProgress);
        }
        // Past the deadline: abandon the call, unless its leader finished
        // in the meantime (then its result is as good as any).
        let detached = {
            let mut map = self.shard(hash);
            let mine = map.get(key).is_some_and(|c| Arc::ptr_eq(c, call));
            if mine {
                map.remove(key);
            }
            call.invalidated.store(true, Ordering::Release);
            mine
        };
        if let Some(r) = call.result.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            return r;
        }
        if detached {
            self.log_abandoned(key);
        }
        Err(Error::Timeout(format!(
            "the load of this key took longer than the load timeout ({} ms); it was abandoned \
             and the next get loads the key again",
            self.timeout.map_or(0, |t| t.as_millis())
        )))
    }

    fn log_abandoned(&self, key: &[u8]) {
        log::warn!(
            "{}: a load of key {:?} ran past the load timeout ({} ms): abandoned; its getter \
             keeps running on its thread, and its result will not be cached",
            self.context,
            String::from_utf8_lossy(key),
            self.timeout.map_or(0, |t| t.as_millis())
        );
    }

    /// Detaches the call for `key`, if any, and marks it so its result is
    /// not cached. `then` runs under the same lock, so no leader can cache
    /// between the two.
    pub fn invalidate<R>(&self, key: &[u8], hash: u64, then: impl FnOnce() -> R) -> R {
        let mut map = self.shard(hash);
        if let Some(c) = map.remove(key) {
            c.invalidated.store(true, Ordering::Release);
        }
        then()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{mpsc, Barrier};

    fn run(f: &Flight<u32>, key: &[u8], load: impl FnOnce() -> Result<u32, Error>) -> Result<u32, Error> {
        match f.join(key, 7) {
            Role::Waited(r) => r,
            Role::Leader(leader) => {
                let r = load();
                leader.finish(r.clone(), |_| {});
                r
            }
        }
    }

    #[test]
    fn many_threads_one_call_same_result() {
        for outcome in [Ok(42), Err(Error::LoaderFailed("db down".into()))] {
            let f = Arc::new(Flight::<u32>::default());
            let calls = Arc::new(AtomicUsize::new(0));
            let barrier = Arc::new(Barrier::new(16));
            let hs: Vec<_> = (0..16)
                .map(|_| {
                    let (f, calls, barrier, outcome) =
                        (f.clone(), calls.clone(), barrier.clone(), outcome.clone());
                    thread::spawn(move || {
                        barrier.wait();
                        run(&f, b"k", || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(100));
                            outcome
                        })
                    })
                })
                .collect();
            for h in hs {
                assert_eq!(h.join().unwrap(), outcome);
            }
            assert_eq!(calls.load(Ordering::SeqCst), 1);
        }
    }

    #[test]
    fn begin_follows_a_live_call_without_waiting_until_asked() {
        let f = Arc::new(Flight::<u32>::default());
        let Begun::Leader(leader) = f.begin(b"k", 7) else {
            panic!("no call yet: must lead")
        };
        let f2 = f.clone();
        // Another thread follows at once (begin does not block), then waits.
        let (followed_tx, followed) = mpsc::channel();
        let waiter = thread::spawn(move || {
            let Begun::Follower(fo) = f2.begin(b"k", 7) else {
                panic!("a live call must be followed")
            };
            followed_tx.send(()).unwrap();
            fo.wait()
        });
        followed.recv().unwrap();
        leader.finish(Ok(9), |_| {});
        assert_eq!(waiter.join().unwrap(), Ok(9));
        assert!(
            matches!(f.begin(b"k", 7), Begun::Leader(_)),
            "finished: a new call"
        );
    }

    #[test]
    fn errors_are_not_kept_a_later_call_loads_again() {
        let f = Flight::<u32>::default();
        assert!(run(&f, b"k", || Err(Error::LoaderFailed("x".into()))).is_err());
        assert_eq!(run(&f, b"k", || Ok(1)), Ok(1));
    }

    #[test]
    fn waiting_on_ones_own_call_is_an_error_not_a_deadlock() {
        let f = Flight::<u32>::default();
        let inner = run(&f, b"k", || run(&f, b"k", || Ok(1)));
        assert!(matches!(inner, Err(Error::InvalidArgument(m)) if m.contains("recursive")));
    }

    #[test]
    fn a_cycle_through_another_thread_is_an_error_not_a_deadlock() {
        // Thread 1 loads A and, inside, waits for B; thread 2 loads B and,
        // inside, waits for A. One of the two waits must fail.
        let f = Arc::new(Flight::<u32>::default());
        let barrier = Arc::new(Barrier::new(2));
        let spawn = |first: &'static [u8], second: &'static [u8]| {
            let (f, barrier) = (f.clone(), barrier.clone());
            thread::spawn(move || {
                let fl = &f;
                let h = |k: &[u8]| k[0] as u64;
                match fl.join(first, h(first)) {
                    Role::Leader(leader) => {
                        barrier.wait();
                        let inner = match fl.join(second, h(second)) {
                            Role::Waited(r) => r,
                            Role::Leader(l) => {
                                l.finish(Ok(0), |_| {});
                                Ok(0)
                            }
                        };
                        leader.finish(inner.clone(), |_| {});
                        inner
                    }
                    Role::Waited(r) => r,
                }
            })
        };
        let t1 = spawn(b"A", b"B");
        let t2 = spawn(b"B", b"A");
        let (r1, r2) = (t1.join().unwrap(), t2.join().unwrap());
        assert!(r1.is_err() || r2.is_err(), "{r1:?} {r2:?}");
    }

    #[test]
    fn invalidated_call_is_detached_and_not_cached() {
        let f = Arc::new(Flight::<u32>::default());
        let Role::Leader(leader) = f.join(b"k", 7) else {
            panic!()
        };
        f.invalidate(b"k", 7, || ());
        assert!(leader.invalidated());
        // A new caller does not join the stale call.
        let Role::Leader(second) = f.join(b"k", 7) else {
            panic!("joined an invalidated call")
        };
        let mut cached = false;
        leader.finish(Ok(1), |_| cached = true);
        assert!(!cached);
        // The old leader's finish left the new call in place.
        let mut cached = false;
        second.finish(Ok(2), |_| cached = true);
        assert!(cached);
    }

    /// What a leader's caller got, and whether it cached it.
    type Outcome = (Result<u32, Error>, bool);

    /// Starts a call of `key` on another thread whose load blocks until the
    /// returned sender sends (or is dropped); returns once it leads.
    fn stuck_leader(
        f: &Arc<Flight<u32>>,
        key: &'static [u8],
        value: u32,
    ) -> (mpsc::Sender<()>, thread::JoinHandle<Outcome>) {
        let (release, wait) = mpsc::channel::<()>();
        let (led, leading) = mpsc::channel::<()>();
        let f = f.clone();
        let h = thread::spawn(move || match f.join(key, 7) {
            Role::Leader(leader) => {
                led.send(()).unwrap();
                let _ = wait.recv();
                let mut cached = false;
                leader.finish(Ok(value), |_| cached = true);
                (Ok(value), cached)
            }
            Role::Waited(r) => {
                led.send(()).unwrap();
                (r, false)
            }
        });
        leading.recv().unwrap();
        (release, h)
    }

    #[test]
    fn waiters_time_out_and_the_next_caller_loads_again() {
        // Long enough for the waiter to join before the deadline on a loaded
        // machine (a later one rightly leads a load of its own).
        let f = Arc::new(Flight::<u32>::new(
            "test".into(),
            Some(Duration::from_millis(1000)),
        ));
        let (release, stuck) = stuck_leader(&f, b"k", 1);
        let t0 = Instant::now();
        let waited = run(&f, b"k", || panic!("a waiter must not load"));
        let took = t0.elapsed();
        assert!(
            matches!(&waited, Err(Error::Timeout(m)) if m.contains("1000 ms")),
            "{waited:?}"
        );
        assert!(took >= Duration::from_millis(500), "waited only {took:?}");
        // The stuck call is detached: the next caller leads its own load.
        assert_eq!(run(&f, b"k", || Ok(2)), Ok(2));
        // The stuck leader finishes late: it gets its own value, and does
        // not cache it.
        release.send(()).unwrap();
        assert_eq!(stuck.join().unwrap(), (Ok(1), false));
    }

    #[test]
    fn a_caller_after_the_deadline_replaces_the_stuck_call_without_waiting() {
        let f = Arc::new(Flight::<u32>::new(
            "test".into(),
            Some(Duration::from_millis(1000)),
        ));
        let (release, stuck) = stuck_leader(&f, b"k", 1);
        thread::sleep(Duration::from_millis(1100));
        let Role::Leader(fresh) = f.join(b"k", 7) else {
            panic!("joined a call past its deadline")
        };
        assert_eq!(fresh.replaced(), Some(Replaced::Stuck));
        // A waiter of the fresh call gets the fresh call's value.
        let f2 = f.clone();
        let waiter = thread::spawn(move || run(&f2, b"k", || panic!("must wait")));
        thread::sleep(Duration::from_millis(20));
        // The late leader finishes meanwhile: not cached, and it leaves the
        // fresh call in place.
        release.send(()).unwrap();
        assert_eq!(stuck.join().unwrap(), (Ok(1), false));
        let mut cached = false;
        fresh.finish(Ok(2), |_| cached = true);
        assert!(cached);
        assert_eq!(waiter.join().unwrap(), Ok(2));
    }

    #[test]
    fn a_leader_that_finishes_just_in_time_is_not_abandoned() {
        let f = Arc::new(Flight::<u32>::new("test".into(), Some(Duration::from_secs(10))));
        let (release, stuck) = stuck_leader(&f, b"k", 5);
        let f2 = f.clone();
        let waiter = thread::spawn(move || run(&f2, b"k", || panic!("must wait")));
        thread::sleep(Duration::from_millis(30));
        release.send(()).unwrap();
        assert_eq!(waiter.join().unwrap(), Ok(5));
        assert_eq!(stuck.join().unwrap(), (Ok(5), true));
    }

    #[test]
    fn a_leader_dropped_by_a_panic_wakes_its_waiters_with_an_error() {
        let f = Arc::new(Flight::<u32>::default());
        let (go, started) = mpsc::channel::<()>();
        let (release, wait) = mpsc::channel::<()>();
        let f1 = f.clone();
        let leader = thread::spawn(move || {
            let Role::Leader(_leader) = f1.join(b"k", 7) else {
                panic!("not the leader")
            };
            go.send(()).unwrap();
            wait.recv().unwrap();
            panic!("the peer client blew up");
        });
        started.recv().unwrap();
        let f2 = f.clone();
        let waiter = thread::spawn(move || run(&f2, b"k", || panic!("must wait")));
        thread::sleep(Duration::from_millis(30));
        release.send(()).unwrap();
        assert!(leader.join().is_err());
        let r = waiter.join().unwrap();
        assert!(
            matches!(&r, Err(Error::LoaderFailed(m)) if m.contains("panicked")),
            "{r:?}"
        );
        assert_eq!(run(&f, b"k", || Ok(3)), Ok(3), "the key loads again");
    }

    #[test]
    fn a_panic_while_caching_still_completes_the_call() {
        let f = Arc::new(Flight::<u32>::default());
        let Role::Leader(leader) = f.join(b"k", 7) else {
            panic!()
        };
        let f2 = f.clone();
        let waiter = thread::spawn(move || run(&f2, b"k", || panic!("must wait")));
        thread::sleep(Duration::from_millis(30));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            leader.finish(Ok(1), |_| panic!("the store blew up"))
        }));
        assert!(r.is_err());
        assert!(matches!(waiter.join().unwrap(), Err(Error::LoaderFailed(_))));
        assert_eq!(run(&f, b"k", || Ok(2)), Ok(2), "the key loads again");
    }

    #[test]
    fn the_wait_graph_is_per_process_generation() {
        let g = wait_graph();
        assert_eq!(g.generation, fork::generation());
        assert!(std::ptr::eq(g, wait_graph()));
    }

    #[test]
    fn a_wait_slice_returns_in_progress_and_the_call_goes_on() {
        let f = Arc::new(Flight::<u32>::default());
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let calls = Arc::new(AtomicUsize::new(0));
        let leader = {
            let (f, calls) = (f.clone(), calls.clone());
            thread::spawn(move || {
                run(&f, b"k", || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    started_tx.send(()).unwrap();
                    release_rx.recv().unwrap();
                    Ok(7)
                })
            })
        };
        started_rx.recv().unwrap();
        let sliced = |f: &Flight<u32>| with_wait_slice(Duration::from_millis(20), || run(f, b"k", || Ok(0)));
        // Twice: each slice ends with the call still running, not abandoned.
        assert_eq!(sliced(&f), Err(Error::InProgress));
        assert_eq!(sliced(&f), Err(Error::InProgress));
        release_tx.send(()).unwrap();
        assert_eq!(leader.join().unwrap(), Ok(7));
        // Outside with_wait_slice, waits are whole again.
        assert!(WAIT_SLICE.with(|s| s.get()).is_none());
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the slices never started a load");
    }
}
