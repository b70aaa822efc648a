//! Safe memory reclamation for the lock-free read paths: the store's tables
//! and entries, and the ffi handle tables.
//!
//! Readers `pin()` around a lookup; writers unlink an object (under their
//! lock) and `retire` it; it is freed once every thread that was pinned at
//! that moment has unpinned.
//!
//! Why seize and not crossbeam-epoch: crossbeam's pin tries to advance the
//! global epoch every 128 pins, reading the other threads' epochs and
//! writing the global one, so on a read-only workload pins alone stopped
//! scaling on two threads (1.0-1.1x in `cargo bench --bench engine --
//! probe`). seize (Hyaline) keeps readers to a store in their own slot
//! plus a light barrier; the heavy barrier (membarrier) is paid by the
//! retiring thread, once per batch. Pointers read under a pin must be loaded
//! with `SeqCst` (seize's `protect`); on x86 that is a plain load.

use once_cell::sync::Lazy;
use seize::{Collector, Guard, LocalGuard};

static COLLECTOR: Lazy<Collector> = Lazy::new(Collector::new);

/// Retired garbage at least this large is handed for reclamation at once
/// instead of waiting for a batch to fill: a thread that evicts one 10 MB
/// value and then goes idle must not keep it alive.
const FLUSH_BYTES: usize = 64 << 10;

/// The ordering for loads of pointers that readers dereference.
pub const LOAD: std::sync::atomic::Ordering = std::sync::atomic::Ordering::SeqCst;

/// Keeps what this thread reads alive until dropped. Nested pins are cheap.
pub struct Pin(#[allow(dead_code)] LocalGuard<'static>);

#[inline]
pub fn pin() -> Pin {
    Pin(COLLECTOR.enter())
}

/// Frees `ptr` with `free` once no thread pinned now can still read it.
/// `bytes` is roughly how much memory that releases.
///
/// # Safety
/// `ptr` must already be unreachable for threads that pin from now on, must
/// not be used by the caller afterwards, and `free(ptr)` must be valid once.
pub unsafe fn retire<T>(ptr: *mut T, free: unsafe fn(*mut T, &Collector), bytes: usize) {
    // SAFETY: forwarded from our caller's promise.
    unsafe { COLLECTOR.retire(ptr, free) };
    if bytes >= FLUSH_BYTES {
        COLLECTOR.enter().flush();
    }
}

/// A reclaimer for `Box`ed values.
///
/// # Safety
/// Only through `retire`, with a pointer from `Box::into_raw`, once.
pub unsafe fn free_box<T>(ptr: *mut T, _: &Collector) {
    // SAFETY: retire()'s caller promised ptr came from Box::into_raw.
    drop(unsafe { Box::from_raw(ptr) });
}

/// A reclaimer for one `Arc` reference given up with `Arc::into_raw`.
///
/// # Safety
/// Only through `retire`, with a pointer from `Arc::into_raw` that owns
/// one reference, once.
pub unsafe fn drop_arc<T>(ptr: *mut T, _: &Collector) {
    // SAFETY: retire()'s caller promised ptr came from Arc::into_raw and
    // owns one reference.
    drop(unsafe { std::sync::Arc::from_raw(ptr) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    static WATCHED: AtomicUsize = AtomicUsize::new(0);
    static WATCHED_FREED: AtomicBool = AtomicBool::new(false);

    /// # Safety
    /// As `free_box`.
    unsafe fn watch_free(ptr: *mut u64, c: &Collector) {
        if ptr as usize == WATCHED.load(Ordering::SeqCst) {
            WATCHED_FREED.store(true, Ordering::SeqCst);
        }
        // SAFETY: forwarded: ptr came from Box::into_raw, retired once.
        unsafe { free_box(ptr, c) };
    }

    #[test]
    fn a_pinned_reader_keeps_a_retired_object_alive_then_it_is_freed() {
        let p = Box::into_raw(Box::new(42u64));
        WATCHED.store(p as usize, Ordering::SeqCst);
        let (pinned_tx, pinned_rx) = std::sync::mpsc::channel();
        let (retired_tx, retired_rx) = std::sync::mpsc::channel::<()>();
        let reader = std::thread::spawn(move || {
            let pin = pin();
            pinned_tx.send(()).unwrap();
            retired_rx.recv().unwrap();
            // Retired (and flushed) while we are pinned: not freed yet.
            let freed_while_pinned = WATCHED_FREED.load(Ordering::SeqCst);
            drop(pin);
            freed_while_pinned
        });
        pinned_rx.recv().unwrap();
        // SAFETY: p is unreachable for anyone else; watch_free frees a Box.
        unsafe { retire(p, watch_free, FLUSH_BYTES) };
        retired_tx.send(()).unwrap();
        assert!(!reader.join().unwrap(), "freed while a reader was pinned");
        // Now nobody is pinned: more flushed garbage lets it go.
        for _ in 0..256 {
            if WATCHED_FREED.load(Ordering::SeqCst) {
                break;
            }
            // SAFETY: fresh boxes, never shared.
            unsafe { retire(Box::into_raw(Box::new(0u64)), watch_free, FLUSH_BYTES) };
        }
        assert!(
            WATCHED_FREED.load(Ordering::SeqCst),
            "never freed after the reader left"
        );
    }
}
