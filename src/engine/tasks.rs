//! Scoped helper threads for the work of one batch (a `get_many`): loads
//! and peer fetches at once, on threads that end before the call returns
//! (so a `fork()` never finds them). A thread that cannot be started
//! leaves its work to the others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{Scope, ScopedJoinHandle};

/// Stack of the threads a batch starts (getters, possibly Python loaders,
/// and peer getters run on them): as much as a default pthread on Linux.
const THREAD_STACK: usize = 8 << 20;

fn helper<'scope, T: Send + 'scope>(
    s: &'scope Scope<'scope, '_>,
    f: impl FnOnce() -> T + Send + 'scope,
) -> std::io::Result<ScopedJoinHandle<'scope, T>> {
    std::thread::Builder::new()
        .name("groupcache-batch".into())
        .stack_size(THREAD_STACK)
        .spawn_scoped(s, f)
}

/// Runs `f(0)`..`f(n - 1)`, at most `par` at once: on the caller's thread
/// and up to `par - 1` scoped helpers (none for a single task), which take
/// the next task as they finish one. Result `i` is `f(i)`. A thread that
/// cannot be started leaves its share to the others.
pub(crate) fn run_tasks<T: Send>(n: usize, par: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    if n <= 1 || par <= 1 {
        return (0..n).map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                return done;
            }
            done.push((i, f(i)));
        }
    };
    let mut all: Vec<(usize, T)> = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for _ in 1..par.min(n) {
            match helper(s, work) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    log::warn!("cannot start a thread for a batch ({e}): fewer parts run at once");
                    break;
                }
            }
        }
        let mut all = work();
        for h in handles {
            match h.join() {
                Ok(done) => all.extend(done),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    all.sort_unstable_by_key(|(i, _)| *i);
    all.into_iter().map(|(_, r)| r).collect()
}

/// `(a(), b())`, `a` on a helper thread while the caller runs `b`; if the
/// thread cannot be started, `a` then `b` on the caller's thread.
pub(crate) fn beside<A: Send, B>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B) -> (A, B) {
    // The helper takes `a` from here; a thread that did not start leaves it.
    let slot = std::sync::Mutex::new(Some(a));
    let take = || slot.lock().unwrap_or_else(|e| e.into_inner()).take();
    std::thread::scope(|s| match helper(s, || take().map(|a| a())) {
        Ok(h) => {
            let b = b();
            let a = h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (a.expect("the helper ran a"), b)
        }
        Err(e) => {
            log::warn!("cannot start a thread for a batch ({e}): doing its two parts one after the other");
            let a = take().expect("a did not run")();
            (a, b())
        }
    })
}
