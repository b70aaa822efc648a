//! `fork()`: which process generation this is.
//!
//! A child made by `fork()` has a copy of the parent's memory and only the
//! thread that forked. Everything that stood for another thread or for a
//! shared kernel object is a lie in the child: an in-flight load whose
//! leader does not exist there, a keep-alive connection whose socket the
//! parent (and its other children) still read from, a runtime whose worker
//! threads are gone. The library asks [`generation`] where such state
//! starts and treats state from an older generation as abandoned: it is
//! never waited on, never used, and never dropped in the child (dropping
//! could act on the shared kernel objects).
//!
//! Locks are the other half. A lock held by another thread at the moment of
//! the fork stays held forever in the child, whose next call through it
//! would hang. So every object with locks that a call may need registers
//! itself here ([`register`], trait [`ForkLocks`]), and a `pthread_atfork`
//! prepare handler takes all of their locks before the fork (waiting for
//! any thread inside one to leave it, so no structure is copied half
//! updated), and releases them in both processes after it. No lock of the
//! library is held while it calls out (getters, log callbacks,
//! allocators), so taking them cannot wait on the forking thread.
//!
//! The generation is bumped by a `pthread_atfork` child handler, installed
//! by the first call of [`generation`] (or [`install`]). A child made by a
//! raw `clone` system call, which runs no atfork handlers, is not seen:
//! such a child must not use the library (as with any library that keeps
//! threads or sockets).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once, Weak};

static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The pid `GENERATION` was last read in; 0 before the first call and
/// right after a fork, which sends the next call down the slow path.
static PID: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();

/// An object whose locks a forked child must find released.
pub trait ForkLocks: Send + Sync {
    /// Takes every lock of the object, in the order the code takes them
    /// (a lock taken while another is held comes after it), and hands each
    /// guard to `guards`. Runs on the thread that forks, before the fork;
    /// the guards are dropped (the locks released) in the parent and in
    /// the child after it.
    fn lock_for_fork(&self, guards: &mut Guards);

    /// Runs in the child only, after every lock was released: for what
    /// must happen before the child's own code runs (closing descriptors
    /// the parent keeps using).
    fn in_child(&self) {}
}

/// Anything, for type erasure of lock guards.
trait Erased {}
impl<T> Erased for T {}

/// Lock guards held across a fork.
///
/// Why guards and std's locks: std's futex-based `Mutex` and `RwLock`
/// release by clearing a word and waking (a no-op where the waiters were
/// threads of the parent), so dropping a guard in the child leaves the
/// lock free. Locks that hand ownership to a parked waiter on release
/// (parking_lot's fair unlocks) would hand it, in the child, to a thread
/// that does not exist.
#[derive(Default)]
pub struct Guards {
    list: Vec<Box<dyn Erased>>,
}

impl Guards {
    /// Keeps `guard` until after the fork.
    ///
    /// # Safety
    /// The lock `guard` borrows must outlive the fork handlers: it belongs
    /// to a registered object (held alive by the registry while the fork
    /// runs) or to a static.
    pub unsafe fn keep<'a, G: 'a>(&mut self, guard: G) {
        let b: Box<dyn Erased + 'a> = Box::new(guard);
        // SAFETY: only the lifetime bound changes (same fat-pointer
        // layout); the caller promises that what the guard borrows lives
        // until the guard is dropped by `release_all`.
        let b: Box<dyn Erased + 'static> = unsafe { std::mem::transmute(b) };
        self.list.push(b);
    }
}

struct Registry {
    /// Process-wide tables (never dropped).
    statics: Vec<&'static dyn ForkLocks>,
    objects: Vec<Weak<dyn ForkLocks>>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    statics: Vec::new(),
    objects: Vec::new(),
});

/// What the prepare handler took, on the forking thread, until the parent
/// or child handler releases it: the registry's own guard, the objects
/// (kept alive, so their guards stay valid), and the guards.
type Held = (MutexGuard<'static, Registry>, Vec<Arc<dyn ForkLocks>>, Guards);

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Adds `object` to what the fork handlers lock. Held weakly: a dropped
/// object is forgotten. Must not be called while holding a lock of a
/// registered object (the prepare handler holds the registry while it
/// takes those).
pub fn register(object: Weak<dyn ForkLocks>) {
    install();
    let mut r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    r.objects.retain(|w| w.strong_count() > 0);
    r.objects.push(object);
}

/// As [`register`], for an object that lives as long as the process.
pub fn register_static(object: &'static dyn ForkLocks) {
    install();
    REGISTRY
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .statics
        .push(object);
}

extern "C" fn prepare() {
    let r = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    let objects: Vec<Arc<dyn ForkLocks>> = r.objects.iter().filter_map(Weak::upgrade).collect();
    let mut guards = Guards::default();
    for o in &objects {
        o.lock_for_fork(&mut guards);
    }
    for o in &r.statics {
        o.lock_for_fork(&mut guards);
    }
    let _ = HELD.try_with(|h| *h.borrow_mut() = Some((r, objects, guards)));
}

/// Releases what `prepare` took: the guards in reverse order, then the
/// registry. In the child, runs the objects' `in_child` first.
fn release_all(child: bool) {
    let Ok(Some((registry, objects, mut guards))) = HELD.try_with(|h| h.borrow_mut().take()) else {
        return;
    };
    if child {
        for o in &objects {
            o.in_child();
        }
    }
    while let Some(g) = guards.list.pop() {
        drop(g);
    }
    drop(registry);
    drop(objects);
}

extern "C" fn in_parent() {
    release_all(false);
}

extern "C" fn in_child() {
    GENERATION.fetch_add(1, Ordering::SeqCst);
    PID.store(0, Ordering::SeqCst);
    // The child has one thread, and glibc runs these handlers after
    // re-initialising malloc, so releasing (and dropping) is allowed here.
    release_all(true);
}

/// Installs the `pthread_atfork` handlers; idempotent and cheap after the
/// first call.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registers handlers that run on the forking thread: they
        // take and release this library's own locks, see `prepare`.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}): a forked child may inherit held locks");
        }
    });
}

/// The current process generation: 0 in the process that loaded the
/// library, incremented in each child of a `fork()`. One atomic load on the
/// common path; the first call (and the first after a fork) installs the
/// handler and records the pid.
#[inline]
pub fn generation() -> u64 {
    if PID.load(Ordering::Acquire) != 0 {
        return GENERATION.load(Ordering::Acquire);
    }
    slow_generation()
}

#[cold]
fn slow_generation() -> u64 {
    install();
    PID.store(std::process::id(), Ordering::Release);
    GENERATION.load(Ordering::Acquire)
}

/// True when `gen` (a value [`generation`] returned earlier) belongs to an
/// ancestor of this process: state tagged with it is the parent's.
#[inline]
pub fn is_stale(gen: u64) -> bool {
    gen != generation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forked_child_sees_a_new_generation_the_parent_keeps_its_own() {
        let before = generation();
        // SAFETY: the child only reads atomics, calls getpid and _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = if generation() == before + 1 && is_stale(before) {
                0
            } else {
                1
            };
            // SAFETY: _exit skips the test harness's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status}"
        );
        assert_eq!(generation(), before);
        assert!(!is_stale(before));
    }
}
