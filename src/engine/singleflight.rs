//! Single-flight: concurrent loads of one key share one call
//! (groupcache's singleflight.Group), fixed where the original is weak:
//!
//! - A leader that panics still completes the call, so waiters get an error
//!   instead of hanging.
//! - A call can be *invalidated* (by a set or remove of its key): it is
//!   detached at once, so later callers start a fresh load rather than
//!   join one that may return the old value, and the leader learns it must
//!   not cache what it loaded.
//! - A wait that would close a cycle (a getter waiting, directly or through
//!   other threads' loads, on a call its own thread leads) fails instead of
//!   deadlocking.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::{self, ThreadId};

use once_cell::sync::Lazy;

use super::Error;

const SHARDS: usize = 16;

/// One in-flight call.
pub struct Call<T> {
    leader: ThreadId,
    result: Mutex<Option<Result<T, Error>>>,
    done: Condvar,
    invalidated: AtomicBool,
}

impl<T: Clone> Call<T> {
    /// Whether a set or remove of the key arrived while this call ran.
    pub fn invalidated(&self) -> bool {
        self.invalidated.load(Ordering::Acquire)
    }

    fn wait(&self) -> Result<T, Error> {
        let mut r = self.result.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(r) = r.as_ref() {
                return r.clone();
            }
            r = self.done.wait(r).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// What `Flight::join` made the caller.
pub enum Role<T> {
    /// Run the load, then `Flight::finish`.
    Leader(Arc<Call<T>>),
    /// Another thread's call completed with this.
    Waited(Result<T, Error>),
}

type Map<T> = HashMap<Box<[u8]>, Arc<Call<T>>>;

pub struct Flight<T> {
    shards: Box<[Mutex<Map<T>>]>,
}

/// Threads blocked in `Call::wait`, and the leader of the call each waits
/// for: the wait-for graph, consulted only on the (slow) wait path.
static WAITING: Lazy<Mutex<HashMap<ThreadId, ThreadId>>> = Lazy::new(Default::default);

impl<T: Clone> Default for Flight<T> {
    fn default() -> Self {
        Flight {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl<T: Clone> Flight<T> {
    fn shard(&self, hash: u64) -> std::sync::MutexGuard<'_, Map<T>> {
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
    pub fn join(&self, key: &[u8], hash: u64) -> Role<T> {
        let call = {
            let mut map = self.shard(hash);
            match map.get(key) {
                Some(c) => c.clone(),
                None => {
                    let c = Arc::new(Call {
                        leader: thread::current().id(),
                        result: Mutex::new(None),
                        done: Condvar::new(),
                        invalidated: AtomicBool::new(false),
                    });
                    map.insert(key.into(), c.clone());
                    return Role::Leader(c);
                }
            }
        };
        Role::Waited(Self::wait_for(&call))
    }

    fn wait_for(call: &Call<T>) -> Result<T, Error> {
        let me = thread::current().id();
        {
            let mut waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner());
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
        let r = call.wait();
        WAITING.lock().unwrap_or_else(|p| p.into_inner()).remove(&me);
        r
    }

    /// Completes a call led by this thread: `cache` runs first, under the
    /// key's lock and only if the call was not invalidated, so that a
    /// concurrent set or remove is ordered entirely before or after it.
    /// Then waiters wake with `result`.
    pub fn finish(
        &self,
        key: &[u8],
        hash: u64,
        call: &Arc<Call<T>>,
        result: Result<T, Error>,
        cache: impl FnOnce(&T),
    ) {
        {
            let mut map = self.shard(hash);
            if !call.invalidated() {
                if let Ok(v) = &result {
                    cache(v);
                }
                if map.get(key).is_some_and(|c| Arc::ptr_eq(c, call)) {
                    map.remove(key);
                }
            }
        }
        *call.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
        call.done.notify_all();
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
    use std::sync::Barrier;
    use std::time::Duration;

    fn run(f: &Flight<u32>, key: &[u8], load: impl FnOnce() -> Result<u32, Error>) -> Result<u32, Error> {
        match f.join(key, 7) {
            Role::Waited(r) => r,
            Role::Leader(call) => {
                let r = load();
                f.finish(key, 7, &call, r.clone(), |_| {});
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
                    Role::Leader(call) => {
                        barrier.wait();
                        let inner = match fl.join(second, h(second)) {
                            Role::Waited(r) => r,
                            Role::Leader(c) => {
                                fl.finish(second, h(second), &c, Ok(0), |_| {});
                                Ok(0)
                            }
                        };
                        fl.finish(first, h(first), &call, inner.clone(), |_| {});
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
        let Role::Leader(call) = f.join(b"k", 7) else {
            panic!()
        };
        f.invalidate(b"k", 7, || ());
        // A new caller does not join the stale call.
        assert!(matches!(f.join(b"k", 7), Role::Leader(_)));
        let mut cached = false;
        f.finish(b"k", 7, &call, Ok(1), |_| cached = true);
        assert!(!cached);
    }
}
