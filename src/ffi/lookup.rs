//! The hit paths for language bindings: local cache only, never a load,
//! never a block, the value handed straight to the binding's allocator
//! (`PyBytes_FromStringAndSize` for Python). Through ctypes each argument
//! costs ~25 ns and each call ~50 ns while the engine's hit costs ~25 ns,
//! so these trade generality for fewer arguments and fewer calls
//! (bench/python/bench.py measures them: rows "the lookup call ...";
//! results in BENCHMARKS.md, where `Cache.get_many` over
//! `cache_lookup_many_alloc` costs 119 ns a 16-byte hit against 284 ns for
//! one `Cache.get` a key).
//!
//! `cache_lookup` saves one argument (~20 ns from Python) with an allocator
//! set once per process. Not per cache: for a freed cache a per-cache
//! allocator is gone, and the call could only return NULL, which CPython
//! 3.11's ctypes turns into a crash for a `py_object` result (it drops a
//! reference it never got), so a `get` racing a `close` would take the
//! process down. A process-wide allocator, once set, is never unset.

use std::ffi::c_void;

use bytes::Bytes;

use crate::engine::reclaim;

use super::boundary::guard;
use super::cache::{cache, CACHES};
use super::status::*;
use super::value::{cache_value, into_c};

/// Allocates the caller's own object for a value, e.g. a Python `bytes`
/// (`PyBytes_FromStringAndSize` has this shape). Must not call back into
/// this library.
pub type cache_alloc_fn = Option<unsafe extern "C" fn(data: *const u8, len: isize) -> *mut c_void>;

/// Stores the caller's object for key number `index`, e.g. `PyList_SetItem`
/// of a Python list (it has this shape and takes over the reference `alloc`
/// returned). Returns 0 on success. Must not call back into this library.
pub type cache_store_fn =
    Option<unsafe extern "C" fn(ctx: *mut c_void, index: isize, object: *mut c_void) -> i32>;

/// One lookup in the local cache; `alloc`'s result for a hit or a miss.
#[inline]
fn lookup_one(
    c: *mut cache,
    key: &[u8],
    alloc: unsafe extern "C" fn(*const u8, isize) -> *mut c_void,
    pin: &reclaim::Pin,
) -> Option<*mut c_void> {
    let obj = CACHES.get(c as usize, pin)?;
    // SAFETY: the caller's allocator, with a valid value slice (at most
    // u32::MAX bytes, which fits isize on 64-bit targets).
    obj.group
        .get_cached_with(key, pin, |v| unsafe { alloc(v.as_ptr(), v.len() as isize) })
}

/// The value of `key` if this node's cache holds it, shared (not copied):
/// the hit path of cache_lookup_value and of the CPython views.
#[inline]
pub(super) fn lookup_shared(c: *mut cache, key: &[u8]) -> Option<Bytes> {
    let pin = reclaim::pin();
    CACHES
        .get(c as usize, &pin)
        .and_then(|obj| obj.group.get_cached_shared(key, &pin))
}

/// Borrows a key argument, or None for NULL with a non-zero length.
///
/// # Safety
/// As for `boundary::bytes`.
pub(super) unsafe fn key_arg<'a>(key: *const u8, key_len: usize) -> Option<&'a [u8]> {
    if key_len == 0 {
        return Some(&[]);
    }
    if key.is_null() || key_len > isize::MAX as usize {
        return None;
    }
    // SAFETY: the caller promises key_len readable bytes at key.
    Some(unsafe { std::slice::from_raw_parts(key, key_len) })
}

/// The hit path alone: looks `key` up in this node's cache only. Never
/// loads, never calls the getter or a peer, never blocks, and never sets
/// cache_last_error.
///
/// Calls `alloc` exactly once: `alloc(data, len)` with the value on a hit,
/// `alloc(NULL, 0)` on anything else (a miss, a freed cache, bad
/// arguments); returns what `alloc` returned. A miss may be reported for a
/// key being written at that instant: follow up with cache_get, which is
/// authoritative. Returns NULL if `alloc` is NULL.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `alloc` is NULL or a function as cache_alloc_fn describes.
#[no_mangle]
pub unsafe extern "C" fn cache_lookup_alloc(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    alloc: cache_alloc_fn,
) -> *mut c_void {
    guard(|| {
        let Some(alloc) = alloc else {
            return std::ptr::null_mut();
        };
        // SAFETY: the caller's promise on key.
        let hit = unsafe { key_arg(key, key_len) }.and_then(|k| lookup_one(c, k, alloc, &reclaim::pin()));
        // SAFETY: the caller's allocator, called as documented.
        hit.unwrap_or_else(|| unsafe { alloc(std::ptr::null(), 0) })
    })
}

/// Where cache_lookup_value puts a value's bytes: `len` bytes at `data`,
/// what cache_value_data and cache_value_len return for it, valid until
/// that value is freed.
#[repr(C)]
pub struct cache_value_view {
    pub data: *const u8,
    pub len: usize,
}

/// The hit path without a copy: looks `key` up in this node's cache only,
/// like cache_lookup_alloc (never loads, never calls the getter or a peer,
/// never blocks, never sets cache_last_error), and on a hit returns a new
/// value the caller owns (free it with cache_value_free, on any thread)
/// that shares the cache's own copy of the bytes: no copy, whatever the
/// size. The value stays valid and unchanged after the key is evicted,
/// removed or set again, and after the cache is freed (see cache_value).
/// If `out` is not NULL it also receives the value's data and length, to
/// save a binding two calls.
///
/// Returns NULL, leaving `*out` untouched, on a miss (which may be a key
/// being written at that instant: follow up with cache_get, which is
/// authoritative), a freed cache, a key over 8 KiB, NULL `c`, or when
/// this thread already holds a million values.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_lookup_value(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    out: *mut cache_value_view,
) -> *mut cache_value {
    guard(|| {
        // SAFETY: the caller's promise on key.
        let Some(key) = (unsafe { key_arg(key, key_len) }) else {
            return std::ptr::null_mut();
        };
        let Some(bytes) = lookup_shared(c, key) else {
            return std::ptr::null_mut();
        };
        let view = cache_value_view {
            data: bytes.as_ptr(),
            len: bytes.len(),
        };
        let Some(v) = into_c(bytes) else {
            return std::ptr::null_mut();
        };
        if !out.is_null() {
            // SAFETY: out is non-NULL and writable (the caller's promise).
            unsafe { *out = view };
        }
        v
    })
}

/// The process-wide allocator of cache_lookup, or 0 before it is set.
static DEFAULT_ALLOC: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets the process-wide allocator cache_lookup uses. It can be set once
/// and never unset; setting the same one again is CACHE_OK, a different
/// one CACHE_ALREADY_EXISTS (two bindings in one process: the second uses
/// cache_lookup_alloc). NULL is CACHE_INVALID_ARGUMENT. Never blocks.
#[no_mangle]
pub extern "C" fn cache_set_default_alloc(alloc: cache_alloc_fn) -> cache_status {
    use std::sync::atomic::Ordering;
    guard(|| {
        let Some(f) = alloc else {
            return fail(CACHE_INVALID_ARGUMENT, "`alloc` is NULL");
        };
        match DEFAULT_ALLOC.compare_exchange(0, f as usize, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => CACHE_OK,
            Err(cur) if cur == f as usize => CACHE_OK,
            Err(_) => fail(
                CACHE_ALREADY_EXISTS,
                "another default allocator is set in this process",
            ),
        }
    })
}

/// cache_lookup_alloc with the allocator given to cache_set_default_alloc:
/// one argument less on a binding's hottest call. Returns NULL only while
/// no default allocator is set; otherwise exactly as cache_lookup_alloc
/// (a freed cache or bad arguments are `alloc(NULL, 0)`). Never blocks.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0).
#[no_mangle]
pub unsafe extern "C" fn cache_lookup(c: *mut cache, key: *const u8, key_len: usize) -> *mut c_void {
    let a = DEFAULT_ALLOC.load(std::sync::atomic::Ordering::Acquire);
    if a == 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: a non-zero value was stored from a cache_alloc_fn (which is
    // never NULL there) and is never changed afterwards.
    let alloc: unsafe extern "C" fn(*const u8, isize) -> *mut c_void = unsafe { std::mem::transmute(a) };
    // SAFETY: forwarded with the caller's promises.
    unsafe { cache_lookup_alloc(c, key, key_len, Some(alloc)) }
}

/// Keys looked up per pin in a batch: a batch of a million keys must not
/// hold reclamation back for its whole duration.
const KEYS_PER_PIN: usize = 256;

/// The hit path for many keys at once: looks the keys up in this node's
/// cache only, like cache_lookup_alloc. Never loads, never calls the getter
/// or a peer, never blocks, never sets cache_last_error.
///
/// `keys` holds `n` keys back to back, separated by the byte `sep`
/// (`keys_len` bytes in all, no separator after the last key), so a key
/// cannot contain `sep`; n == 1 with keys_len == 0 is the empty key.
///
/// For each key i, in order: obj = alloc(value, len) on a hit,
/// alloc(NULL, 0) on anything else (a miss, a freed cache, a key over the
/// limit); then store(ctx, i, obj). A miss may be reported for a key being
/// written at that instant (follow up with cache_get).
///
/// Returns the number of keys that were not hits (0..n). Returns -1, and
/// stops, if `keys` does not split into exactly n keys (nothing was
/// stored then); if alloc returned NULL or store returned non-zero (keys
/// before that one were stored; that one's object was not, and it is the
/// caller's to release if alloc made it: store is only called with a
/// non-NULL object); or if c, alloc or store is NULL, or keys is NULL with
/// keys_len > 0.
///
/// # Safety
/// `keys` points to `keys_len` readable bytes (or is NULL with
/// `keys_len` 0); `alloc` and `store` are NULL or functions as
/// cache_alloc_fn and cache_store_fn describe; `ctx` is what `store` expects.
#[no_mangle]
pub unsafe extern "C" fn cache_lookup_many_alloc(
    c: *mut cache,
    keys: *const u8,
    keys_len: usize,
    n: usize,
    sep: u8,
    alloc: cache_alloc_fn,
    store: cache_store_fn,
    ctx: *mut c_void,
) -> isize {
    guard(|| {
        let (Some(alloc), Some(store)) = (alloc, store) else {
            return -1;
        };
        if c.is_null() || n > isize::MAX as usize {
            return -1;
        }
        // SAFETY: the caller promises keys_len readable bytes at keys.
        let Some(all) = (unsafe { key_arg(keys, keys_len) }) else {
            return -1;
        };
        if n == 0 {
            return if all.is_empty() { 0 } else { -1 };
        }
        if all.iter().filter(|&&b| b == sep).count() != n - 1 {
            return -1;
        }
        let mut misses = 0isize;
        let mut pin = reclaim::pin();
        for (i, key) in all.split(|&b| b == sep).enumerate() {
            if i > 0 && i % KEYS_PER_PIN == 0 {
                drop(pin);
                pin = reclaim::pin();
            }
            let obj = match lookup_one(c, key, alloc, &pin) {
                Some(o) => o,
                None => {
                    misses += 1;
                    // SAFETY: the caller's allocator, called as documented.
                    unsafe { alloc(std::ptr::null(), 0) }
                }
            };
            if obj.is_null() {
                return -1;
            }
            // SAFETY: the caller's store function, called as documented.
            if unsafe { store(ctx, i as isize, obj) } != 0 {
                return -1;
            }
        }
        misses
    })
}

impl super::boundary::Fallback for isize {
    fn on_panic() -> Self {
        -1
    }
}

/// Turns `n` values into the caller's objects and frees them all: for each
/// i, in order, obj = alloc(data, len) of `values[i]` (alloc(NULL, 0) for a
/// NULL or freed value), store(ctx, i, obj), then cache_value_free and
/// `values[i] = NULL`. For a binding that got many values from
/// cache_get_many without its runtime's lock (Python's GIL) and builds its
/// objects afterwards, with the lock, in one call. Never blocks, never
/// sets cache_last_error; alloc and store must not call back into this
/// library.
///
/// Returns 0, or -1 if alloc or store is NULL, values is NULL with
/// n > 0, alloc returned NULL or store returned non-zero (then it stops
/// storing: that object is the caller's to release, and later indexes get
/// no object). Every value is freed, and every entry set to NULL, in every
/// case but a NULL `values`.
///
/// # Safety
/// `values` points to `n` writable entries, each NULL or a cache_value
/// the caller owns (which this call frees); `alloc` and `store` are NULL
/// or functions as cache_alloc_fn and cache_store_fn describe; `ctx` is
/// what `store` expects.
#[no_mangle]
pub unsafe extern "C" fn cache_values_alloc(
    values: *mut *mut super::value::cache_value,
    n: usize,
    alloc: cache_alloc_fn,
    store: cache_store_fn,
    ctx: *mut c_void,
) -> isize {
    guard(|| {
        if n == 0 {
            return 0;
        }
        if values.is_null() || n > isize::MAX as usize / std::mem::size_of::<usize>() {
            return -1;
        }
        // SAFETY: the caller promises n writable entries at values.
        let vs = unsafe { std::slice::from_raw_parts_mut(values, n) };
        let mut ok = alloc.is_some() && store.is_some();
        for (i, v) in vs.iter_mut().enumerate() {
            let h = std::mem::replace(v, std::ptr::null_mut());
            if let (true, Some(alloc), Some(store)) = (ok, alloc, store) {
                let data = super::value::cache_value_data(h);
                let len = super::value::cache_value_len(h);
                // SAFETY: the caller's allocator, with the value's bytes
                // (valid until the free below; at most 4 GiB, within isize),
                // or NULL and 0.
                let obj = unsafe { alloc(data, if data.is_null() { 0 } else { len as isize }) };
                // SAFETY: the caller's store function, as documented.
                if obj.is_null() || unsafe { store(ctx, i as isize, obj) } != 0 {
                    ok = false;
                }
            }
            super::value::cache_value_free(h);
        }
        if ok {
            0
        } else {
            -1
        }
    })
}
