//! Handles: what C holds instead of pointers to caches and pools.
//!
//! A handle is `(generation << 32) | slot`, cast to an opaque pointer (so
//! pointers must be 64 bits: lib.rs refuses to build otherwise). It is
//! never dereferenced: a lookup checks that the slot still holds that
//! generation. So a freed or double-freed handle finds nothing (the caller
//! gets `CACHE_CLOSED`), even after its slot was reused by a newer object,
//! and a stray pointer cannot corrupt memory.
//!
//! Lookups take no lock and write nothing shared: the caller pins (see
//! `engine::reclaim`), reads the slot's generation, its pointer, and the
//! generation again. Removal bumps the generation, empties the slot and
//! retires the table's `Arc`, so a reader inside a call keeps a valid
//! object until it unpins. A call that may block upgrades to its own `Arc`
//! first (see [`HandleTable::get_arc`]), so a long load never holds
//! reclamation back.

use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use crate::engine::reclaim::{self, Pin, LOAD};

const SEGMENT: usize = 1024;
const SEGMENTS: usize = 1024;

struct Slot<T> {
    /// Odd while the slot holds an object.
    gen: AtomicU32,
    ptr: AtomicPtr<T>,
}

struct Free {
    slots: Vec<u32>,
    next: u32,
}

pub(crate) struct HandleTable<T> {
    segments: Box<[AtomicPtr<Slot<T>>]>,
    free: Mutex<Free>,
}

// SAFETY: the table hands out `&T` and `Arc<T>` across threads, which is
// sound when T itself is Send + Sync.
unsafe impl<T: Send + Sync> Send for HandleTable<T> {}
// SAFETY: as for Send.
unsafe impl<T: Send + Sync> Sync for HandleTable<T> {}

fn split(handle: usize) -> (usize, u32) {
    (handle & 0xffff_ffff, (handle as u64 >> 32) as u32)
}

impl<T: Send + Sync + 'static> HandleTable<T> {
    pub(crate) fn new() -> Self {
        HandleTable {
            segments: (0..SEGMENTS)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
            free: Mutex::new(Free {
                slots: Vec::new(),
                next: 0,
            }),
        }
    }

    /// A table for a process-wide static: never freed, and registered with
    /// the fork handlers so that a child never inherits its lock held.
    pub(crate) fn leaked() -> &'static Self {
        let t: &'static Self = Box::leak(Box::new(Self::new()));
        crate::engine::fork::register_static(t);
        t
    }

    fn slot(&self, index: usize) -> Option<&Slot<T>> {
        let seg = self.segments.get(index / SEGMENT)?.load(Ordering::Acquire);
        if seg.is_null() {
            return None;
        }
        // SAFETY: segments are allocated once, never freed while the table
        // lives, and hold SEGMENT slots.
        Some(unsafe { &*seg.add(index % SEGMENT) })
    }

    /// Stores `obj` and returns its handle (never 0), or None when the
    /// table is full (a million live objects).
    pub(crate) fn insert(&self, obj: Arc<T>) -> Option<usize> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let index = match free.slots.pop() {
            Some(i) => i as usize,
            None => {
                let i = free.next as usize;
                if i >= SEGMENT * SEGMENTS {
                    return None;
                }
                if i.is_multiple_of(SEGMENT) {
                    let seg: Box<[Slot<T>]> = (0..SEGMENT)
                        .map(|_| Slot {
                            gen: AtomicU32::new(0),
                            ptr: AtomicPtr::new(std::ptr::null_mut()),
                        })
                        .collect();
                    self.segments[i / SEGMENT].store(Box::into_raw(seg) as *mut Slot<T>, Ordering::Release);
                }
                free.next += 1;
                i
            }
        };
        let slot = self.slot(index).expect("segment allocated above");
        let gen = slot.gen.load(Ordering::Relaxed).wrapping_add(1);
        slot.ptr.store(Arc::into_raw(obj) as *mut T, Ordering::Release);
        slot.gen.store(gen, Ordering::Release);
        Some(((gen as u64) << 32 | index as u64) as usize)
    }

    /// The object behind `handle`, valid while `guard` is pinned.
    #[inline]
    pub(crate) fn get<'g>(&self, handle: usize, _pin: &'g Pin) -> Option<&'g T> {
        let (index, gen) = split(handle);
        if gen & 1 == 0 {
            return None;
        }
        let slot = self.slot(index)?;
        if slot.gen.load(LOAD) != gen {
            return None;
        }
        let p = slot.ptr.load(LOAD);
        if p.is_null() || slot.gen.load(LOAD) != gen {
            return None;
        }
        // SAFETY: the slot held this generation before and after we read
        // p, so p is this handle's object; removal drops it only through
        // the epoch, which `_guard` pins.
        Some(unsafe { &*p })
    }

    /// A strong reference, for calls that may block.
    pub(crate) fn get_arc(&self, handle: usize, pin: &Pin) -> Option<Arc<T>> {
        let obj: *const T = self.get(handle, pin)?;
        // SAFETY: obj came from Arc::into_raw and the table's reference is
        // alive while we are pinned, so the count is at least one.
        unsafe {
            Arc::increment_strong_count(obj);
            Some(Arc::from_raw(obj))
        }
    }

    /// Takes the object out; later lookups of `handle` find nothing. The
    /// table's reference is dropped once no pinned reader can use it.
    ///
    /// `flush_bytes`: roughly what the object holds; large ones are handed
    /// for reclamation at once (see `reclaim::retire`).
    pub(crate) fn remove(&self, handle: usize, flush_bytes: usize) -> Option<Arc<T>> {
        let (index, gen) = split(handle);
        if gen & 1 == 0 {
            return None;
        }
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        let slot = self.slot(index)?;
        if slot.gen.load(Ordering::Relaxed) != gen {
            return None;
        }
        slot.gen.store(gen.wrapping_add(1), Ordering::Release);
        let p = slot.ptr.swap(std::ptr::null_mut(), Ordering::AcqRel);
        // A slot whose generation would wrap is retired, so that an old
        // handle can never match a new object.
        if gen.wrapping_add(2) > gen {
            free.slots.push(index as u32);
        }
        drop(free);
        // SAFETY: p came from Arc::into_raw in insert and the table's
        // reference is still alive: take one more for the caller.
        let out = unsafe {
            Arc::increment_strong_count(p);
            Arc::from_raw(p)
        };
        // SAFETY: the slot no longer refers to p; readers pinned now may
        // still hold &T through the table's reference, which reclaim drops
        // after they unpin.
        unsafe { reclaim::retire(p, reclaim::drop_arc::<T>, flush_bytes) };
        Some(out)
    }
}

impl<T: Send + Sync> crate::engine::fork::ForkLocks for HandleTable<T> {
    fn lock_for_fork(&self, guards: &mut crate::engine::fork::Guards) {
        // SAFETY: registered tables are leaked statics (`leaked`).
        unsafe { guards.keep(self.free.lock().unwrap_or_else(|p| p.into_inner())) };
    }
}

impl<T> Drop for HandleTable<T> {
    fn drop(&mut self) {
        for seg in self.segments.iter() {
            let seg = seg.load(Ordering::Acquire);
            if seg.is_null() {
                continue;
            }
            // SAFETY: allocated in insert() as a Box<[Slot<T>]> of SEGMENT
            // slots; `&mut self` means no reader is left.
            let seg = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(seg, SEGMENT)) };
            for slot in seg.iter() {
                let p = slot.ptr.load(Ordering::Relaxed);
                if !p.is_null() {
                    // SAFETY: a live slot owns one Arc reference.
                    drop(unsafe { Arc::from_raw(p) });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::reclaim as epoch;

    #[test]
    fn stale_handles_never_match_new_objects() {
        let t = HandleTable::<u32>::new();
        let g = epoch::pin();
        let h1 = t.insert(Arc::new(1)).unwrap();
        assert_eq!(t.get(h1, &g), Some(&1));
        assert!(t.remove(h1, 0).is_some());
        assert!(t.remove(h1, 0).is_none(), "double free is a no-op");
        let h2 = t.insert(Arc::new(2)).unwrap();
        assert_ne!(h1, h2, "the slot is reused under a new generation");
        assert_eq!(t.get(h1, &g), None);
        assert_eq!(t.get(h2, &g), Some(&2));
        assert_eq!(t.get(0, &g), None);
        assert_eq!(t.get(usize::MAX, &g), None);
        assert_eq!(t.get(0xdead_beef, &g), None);
    }

    #[test]
    fn an_object_outlives_its_removal_while_a_reader_holds_it() {
        let t = HandleTable::<String>::new();
        let h = t.insert(Arc::new("alive".to_string())).unwrap();
        let reader = epoch::pin();
        let s = t.get(h, &reader).unwrap();
        let arc = t.get_arc(h, &reader).unwrap();
        drop(t.remove(h, 0));
        assert_eq!(s, "alive");
        drop(reader);
        assert_eq!(*arc, "alive");
    }
}
