//! A group's statistics: [`Stats`], the snapshot callers see, and the
//! counters behind it, which cost nothing shared on the hit path.
//!
//! A single `AtomicU64` per counter would be written by every thread on
//! every hit, and its cache line would bounce between cores. Instead each
//! thread owns a stripe (a cache-line-padded row of counters) that only it
//! writes, with a plain load and store; readers sum the stripes. Stripe ids
//! come from a global free list and go back when the thread exits, so the
//! counts stay exact. Threads beyond `STRIPES` share one overflow stripe and
//! use atomic adds.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crossbeam_utils::CachePadded;

use super::store::StoreStats;

/// groupcache's Stats plus both caches' CacheStats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub gets: u64,
    pub cache_hits: u64,
    pub peer_loads: u64,
    pub peer_errors: u64,
    pub loads: u64,
    pub loads_deduped: u64,
    pub local_loads: u64,
    pub local_load_errs: u64,
    pub server_requests: u64,
    pub main_bytes: u64,
    pub main_items: u64,
    pub main_gets: u64,
    pub main_hits: u64,
    pub main_evictions: u64,
    pub hot_bytes: u64,
    pub hot_items: u64,
    pub hot_gets: u64,
    pub hot_hits: u64,
    pub hot_evictions: u64,
    /// Calls of the batch getter (`GroupOptions::batch_getter`).
    pub batch_loads: u64,
    /// Keys handed to the batch getter, over all its calls.
    pub batch_loaded_keys: u64,
    /// Batch fetches from owner peers: one per peer asked by a batch (its
    /// entry in a `PeerPicker::get_many_from` call).
    pub peer_batch_requests: u64,
    /// Batch gets that arrived from peers (`Group::get_many_for_peer`).
    pub server_batch_requests: u64,
    // Membership (filled by `Group::stats` from its pool; 0 without one).
    /// Distinct nodes in the pool's membership, this one included when
    /// listed.
    pub peers: u64,
    /// Times the pool's membership changed (`set_peers` with a different
    /// list, or a DNS round of `peers_from` that found one).
    pub membership_changes: u64,
}

impl Stats {
    /// The snapshot of a group's `counters` and its store's figures `s`.
    pub(crate) fn new(counters: &Counters, s: StoreStats) -> Stats {
        let c = |x| counters.get(x);
        let (gets, hits_main, hits_hot) = (c(Counter::Gets), c(Counter::HitsMain), c(Counter::HitsHot));
        let inner = c(Counter::InnerLookups);
        let (inner_main, inner_hot) = (c(Counter::InnerHitsMain), c(Counter::InnerHitsHot));
        // One table serves both caches; a lookup is counted as groupcache
        // counts it: main first, then hot when main missed.
        let lookups = gets + inner;
        let main_hits = hits_main + inner_main;
        Stats {
            gets,
            cache_hits: hits_main + hits_hot + inner_main + inner_hot,
            peer_loads: c(Counter::PeerLoads),
            peer_errors: c(Counter::PeerErrors),
            loads: c(Counter::Loads),
            loads_deduped: c(Counter::LoadsDeduped),
            local_loads: c(Counter::LocalLoads),
            local_load_errs: c(Counter::LocalLoadErrs),
            server_requests: c(Counter::ServerRequests),
            main_bytes: s.main_bytes,
            main_items: s.main_items,
            main_gets: lookups,
            main_hits,
            main_evictions: s.main_evictions,
            hot_bytes: s.hot_bytes,
            hot_items: s.hot_items,
            hot_gets: lookups - main_hits,
            hot_hits: hits_hot + inner_hot,
            hot_evictions: s.hot_evictions,
            batch_loads: c(Counter::BatchLoads),
            batch_loaded_keys: c(Counter::BatchLoadedKeys),
            peer_batch_requests: c(Counter::PeerBatchRequests),
            server_batch_requests: c(Counter::ServerBatchRequests),
            peers: 0,
            membership_changes: 0,
        }
    }
}

/// Stripes with an exclusive owner; one more is shared by the rest.
const STRIPES: usize = 32;

/// The counters of a group, by index into a stripe.
#[derive(Clone, Copy, Debug)]
#[repr(usize)]
pub enum Counter {
    Gets,
    HitsMain,
    HitsHot,
    /// Lookups made inside a load (the double-check), as groupcache counts
    /// them in the caches' gets and hits.
    InnerLookups,
    InnerHitsMain,
    InnerHitsHot,
    PeerLoads,
    PeerErrors,
    Loads,
    LoadsDeduped,
    LocalLoads,
    LocalLoadErrs,
    ServerRequests,
    BatchLoads,
    BatchLoadedKeys,
    PeerBatchRequests,
    ServerBatchRequests,
}

const COUNTERS: usize = Counter::ServerBatchRequests as usize + 1;

type Stripe = CachePadded<[AtomicU64; COUNTERS]>;

pub struct Counters {
    stripes: Box<[Stripe]>,
}

static FREE_IDS: Mutex<Vec<usize>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<usize> = Mutex::new(0);

/// The stripe allocator's locks, for the fork handlers (see
/// `super::fork`): registered once, by the first `Counters::default`.
struct StripeLocks;

impl super::fork::ForkLocks for StripeLocks {
    fn lock_for_fork(&self, guards: &mut super::fork::Guards) {
        // SAFETY: statics.
        unsafe {
            guards.keep(FREE_IDS.lock().unwrap_or_else(|p| p.into_inner()));
            guards.keep(NEXT_ID.lock().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

static REGISTER: std::sync::Once = std::sync::Once::new();

/// Returns a thread's stripe to the free list when the thread exits.
struct StripeOwner(usize);

fn acquire() -> usize {
    if let Some(id) = FREE_IDS.lock().unwrap_or_else(|p| p.into_inner()).pop() {
        return id;
    }
    let mut next = NEXT_ID.lock().unwrap_or_else(|p| p.into_inner());
    if *next < STRIPES {
        *next += 1;
        *next - 1
    } else {
        STRIPES
    }
}

impl Drop for StripeOwner {
    fn drop(&mut self) {
        // Counts made later in this thread's teardown go to the shared
        // stripe, atomically: the id may already belong to another thread.
        let _ = STRIPE.try_with(|s| s.set(STRIPES));
        if self.0 < STRIPES {
            FREE_IDS.lock().unwrap_or_else(|p| p.into_inner()).push(self.0);
        }
    }
}

thread_local! {
    /// This thread's stripe; usize::MAX until first use. Const-initialised
    /// and without a destructor, so reading it is one TLS load.
    static STRIPE: Cell<usize> = const { Cell::new(usize::MAX) };
    static OWNER: Cell<Option<StripeOwner>> = const { Cell::new(None) };
}

#[inline]
fn stripe_id() -> usize {
    let id = STRIPE.with(Cell::get);
    if id != usize::MAX {
        return id;
    }
    first_use()
}

#[cold]
fn first_use() -> usize {
    let id = acquire();
    STRIPE.with(|s| s.set(id));
    // If the thread is already being torn down, the owner cannot be
    // registered: give the stripe back at once and use the shared one.
    if OWNER.try_with(|o| o.set(Some(StripeOwner(id)))).is_err() {
        drop(StripeOwner(id));
        return STRIPES;
    }
    id
}

impl Default for Counters {
    fn default() -> Self {
        REGISTER.call_once(|| super::fork::register_static(&StripeLocks));
        Counters {
            stripes: (0..=STRIPES)
                .map(|_| CachePadded::new(Default::default()))
                .collect(),
        }
    }
}

impl Counters {
    #[inline]
    pub fn add(&self, c: Counter, n: u64) {
        let id = stripe_id();
        let cell = &self.stripes[id][c as usize];
        if id < STRIPES {
            // Only this thread writes this stripe (see the module comment).
            cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            cell.fetch_add(n, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn inc(&self, c: Counter) {
        self.add(c, 1)
    }

    /// Two increments for the price of one stripe lookup (a hit counts a
    /// get and a hit).
    #[inline]
    pub fn inc2(&self, a: Counter, b: Counter) {
        let id = stripe_id();
        let stripe = &self.stripes[id];
        for c in [a, b] {
            let cell = &stripe[c as usize];
            if id < STRIPES {
                cell.store(cell.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
            } else {
                cell.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exact_across_many_threads_including_overflow() {
        let c = Arc::new(Counters::default());
        // More threads alive at once than there are stripes, so some share
        // the overflow stripe.
        let barrier = Arc::new(std::sync::Barrier::new(STRIPES + 8));
        let handles: Vec<_> = (0..STRIPES + 8)
            .map(|_| {
                let c = c.clone();
                let b = barrier.clone();
                std::thread::spawn(move || {
                    b.wait();
                    for _ in 0..10_000 {
                        c.inc(Counter::Gets);
                    }
                    c.add(Counter::Loads, 3);
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.get(Counter::Gets), (STRIPES as u64 + 8) * 10_000);
        assert_eq!(c.get(Counter::Loads), (STRIPES as u64 + 8) * 3);
        // Stripes were handed back and are reused without losing counts.
        std::thread::spawn({
            let c = c.clone();
            move || c.inc(Counter::Gets)
        })
        .join()
        .unwrap();
        assert_eq!(c.get(Counter::Gets), (STRIPES as u64 + 8) * 10_000 + 1);
    }
}
