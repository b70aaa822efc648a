//! A budget for the request bodies the server holds at once (PUTs being
//! received, decoded and stored), on top of the per-body limit: without
//! it, N clients announcing the largest body each make the node hold N of
//! them.
//!
//! A body with a Content-Length reserves all of it before its first byte
//! is read; a chunked body is charged as it grows. A reservation that does
//! not fit is refused (the server answers 503), except that a body larger
//! than the whole budget (up to `max_body_bytes`) is admitted when nothing
//! else is in flight, so a budget below the largest value still lets such
//! a value through, alone. So the bytes held are at most
//! max(budget, max_body_bytes).
//!
//! glibc keeps freed memory in its arenas: after bodies summing to
//! [`TRIM_AFTER`] or more have come and gone, the budget asks it to give
//! free memory back (`malloc_trim(0)`) once nothing is in flight.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Bytes of bodies passed through since the last trim that make the next
/// drain trim.
pub(crate) const TRIM_AFTER: usize = 16 << 20;

pub(crate) struct BodyBudget {
    limit: usize,
    used: AtomicUsize,
    /// Bytes reserved since the last trim.
    since_trim: AtomicUsize,
}

/// Bytes held for one body; given back on drop.
pub(crate) struct Reservation {
    budget: Arc<BodyBudget>,
    bytes: usize,
}

impl BodyBudget {
    pub(crate) fn new(limit: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            limit,
            used: AtomicUsize::new(0),
            since_trim: AtomicUsize::new(0),
        })
    }

    /// Bytes reserved now.
    #[cfg(test)]
    pub(crate) fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// Reserves `n` bytes for a new body; `None` when they do not fit.
    pub(crate) fn reserve(self: &Arc<Self>, n: usize) -> Option<Reservation> {
        let mut r = Reservation {
            budget: self.clone(),
            bytes: 0,
        };
        r.grow(n).then_some(r)
    }

    fn add(&self, held: usize, n: usize) -> bool {
        let ok = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                let after = used.checked_add(n)?;
                // Within the budget, or alone (what is in use is ours).
                (after <= self.limit || used == held).then_some(after)
            })
            .is_ok();
        if ok {
            self.since_trim.fetch_add(n, Ordering::Relaxed);
        }
        ok
    }

    fn release(&self, n: usize) {
        if n == 0 {
            return;
        }
        let before = self.used.fetch_sub(n, Ordering::AcqRel);
        if before == n && self.since_trim.load(Ordering::Relaxed) >= TRIM_AFTER {
            self.since_trim.store(0, Ordering::Relaxed);
            trim();
        }
    }
}

impl Reservation {
    /// Adds `n` bytes (a chunk of a chunked body); false when they do not fit.
    pub(crate) fn grow(&mut self, n: usize) -> bool {
        let ok = self.budget.add(self.bytes, n);
        if ok {
            self.bytes += n;
        }
        ok
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.release(self.bytes);
    }
}

/// Gives glibc's free memory back to the system, off the caller's thread
/// when inside a runtime (a trim walks every arena).
fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        fn run() {
            // SAFETY: malloc_trim only releases free memory; it is safe to
            // call from any thread at any time.
            unsafe {
                libc::malloc_trim(0);
            }
        }
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(run)),
            Err(_) => run(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_budget_or_are_refused() {
        let b = BodyBudget::new(100);
        let r1 = b.reserve(60).unwrap();
        assert!(b.reserve(50).is_none());
        let mut r2 = b.reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(!r2.grow(1));
        drop(r1);
        assert!(r2.grow(60));
        assert_eq!(b.used(), 100);
        drop(r2);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_body_larger_than_the_budget_goes_alone() {
        let b = BodyBudget::new(100);
        let mut big = b.reserve(150).unwrap();
        assert!(big.grow(50), "still alone");
        assert!(b.reserve(1).is_none());
        drop(big);
        let small = b.reserve(10).unwrap();
        assert!(b.reserve(150).is_none(), "not alone");
        let mut chunked = b.reserve(0).unwrap();
        assert!(chunked.grow(90));
        assert!(!chunked.grow(1));
        drop(small);
        assert!(chunked.grow(500), "alone now");
        drop(chunked);
        assert_eq!(b.used(), 0);
    }
}
