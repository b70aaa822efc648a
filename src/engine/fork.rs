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
//! The generation is bumped by a `pthread_atfork` child handler, installed
//! by the first call of [`generation`] (or [`install`]). A child made by a
//! raw `clone` system call, which runs no atfork handlers, is not seen:
//! such a child must not use the library (as with any library that keeps
//! threads or sockets).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;

static GENERATION: AtomicU64 = AtomicU64::new(0);
/// The pid `GENERATION` was last read in; 0 before the first call and
/// right after a fork, which sends the next call down the slow path.
static PID: AtomicU32 = AtomicU32::new(0);
static INSTALL: Once = Once::new();

extern "C" fn in_child() {
    // Async-signal-safe: atomics only.
    GENERATION.fetch_add(1, Ordering::SeqCst);
    PID.store(0, Ordering::SeqCst);
}

/// Installs the `pthread_atfork` handler; idempotent and cheap after the
/// first call.
pub fn install() {
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only touches atomics, which is
        // allowed in a child of a multi-threaded process.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
        if rc != 0 {
            log::warn!("pthread_atfork failed ({rc}); fork is detected by pid only");
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
            let code = if generation() == before + 1 && is_stale(before) { 0 } else { 1 };
            // SAFETY: _exit skips the test harness's atexit handlers.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
        assert_eq!(generation(), before);
        assert!(!is_stale(before));
    }
}
