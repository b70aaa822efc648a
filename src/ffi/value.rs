//! `cache_value`: an immutable value handed to C, behind a handle.
//!
//! Values live in generation-checked handle tables like caches and pools,
//! so a stale or double-freed value handle is harmless: data() is NULL,
//! len() is 0, free() does nothing. The tables are sharded by thread, so
//! threads that get and free values do not share a lock; a value may still
//! be freed on any thread (its handle names its shard).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use once_cell::sync::Lazy;

use crate::engine::reclaim;

use super::boundary::guard;
use super::handles::HandleTable;

/// A value returned by cache_get or cache_lookup_value. Immutable; the
/// caller owns it until cache_value_free. It stays valid, and its bytes
/// unchanged, after the key is evicted, removed or set again and after the
/// cache is freed. A value found in the cache is the cache's own copy,
/// shared, not copied: holding it keeps that memory (the key and the
/// value) allocated, beyond the cache's max_bytes, until it is freed.
pub struct cache_value {
    _private: [u8; 0],
}

const SHARDS: usize = 16;
/// Where the shard number sits in a handle (the table's own index uses
/// the bits below, under 2^20).
const SHARD_SHIFT: u32 = 24;
const SHARD_MASK: usize = (SHARDS - 1) << SHARD_SHIFT;

/// The values behind handles. Freeing one may release its length in bytes
/// (what decides whether reclaim frees it now or in a batch), for a value
/// of its own and for one that shares the cache's copy alike: dropping the
/// last hold on an evicted or removed entry frees the entry, and a shared
/// value deferred into a batch would keep a large entry allocated until 32
/// more frees came along.
static VALUES: Lazy<[&'static HandleTable<Bytes>; SHARDS]> =
    Lazy::new(|| std::array::from_fn(|_| HandleTable::leaked()));
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn my_shard() -> usize {
    let s = SHARD.try_with(Cell::get).unwrap_or(0);
    if s != usize::MAX {
        return s;
    }
    let s = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
    let _ = SHARD.try_with(|c| c.set(s));
    s
}

fn split(v: *const cache_value) -> (usize, usize) {
    let h = v as usize;
    ((h & SHARD_MASK) >> SHARD_SHIFT, h & !SHARD_MASK)
}

/// A new handle for `bytes` (a copy of its own, or the cache's own copy
/// shared by a hit of `Group::get_cached_shared`), or None when this
/// thread's table is full (a million live values).
pub(crate) fn into_c(bytes: Bytes) -> Option<*mut cache_value> {
    let shard = my_shard();
    let h = VALUES[shard].insert(Arc::new(bytes))?;
    debug_assert_eq!(h & SHARD_MASK, 0);
    Some((h | shard << SHARD_SHIFT) as *mut cache_value)
}

/// Takes the value out of its handle (which is freed, as by
/// cache_value_free): its bytes, now the caller's; None for NULL or a
/// freed handle.
pub(crate) fn take(v: *mut cache_value) -> Option<Bytes> {
    // The table's reference retires (flushed like a free, see VALUES);
    // the caller's clone is the hold from now on.
    remove(v).map(|v| Bytes::clone(&v))
}

/// Removes a handle from its table: the table's reference, now retiring;
/// None for NULL or a freed handle. The bytes it releases decide whether
/// reclaim frees it at once (large) or in a batch.
fn remove(v: *const cache_value) -> Option<Arc<Bytes>> {
    let (shard, h) = split(v);
    let frees = VALUES[shard].get(h, &reclaim::pin()).map(|v| v.len())?;
    VALUES[shard].remove(h, frees)
}

/// The value's bytes: `cache_value_len(v)` of them, valid until
/// cache_value_free(v). NULL for NULL or a freed value. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_data(v: *const cache_value) -> *const u8 {
    guard(|| {
        let (shard, h) = split(v);
        let pin = reclaim::pin();
        // The bytes live as long as the handle does (until free), not just
        // the pin: the table holds a reference until then.
        VALUES[shard]
            .get(h, &pin)
            .map_or(std::ptr::null(), |v| v.as_ptr())
    })
}

/// The value's length in bytes; 0 for NULL or a freed value. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_len(v: *const cache_value) -> usize {
    guard(|| {
        let (shard, h) = split(v);
        let pin = reclaim::pin();
        VALUES[shard].get(h, &pin).map_or(0, |v| v.len())
    })
}

/// Frees a value returned by cache_get (on any thread). NULL, and a value
/// already freed, are no-ops. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_free(v: *mut cache_value) {
    guard(|| drop(remove(v)))
}
