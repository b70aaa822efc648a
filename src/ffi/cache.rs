//! `cache`: one groupcache Group, behind a handle.

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use crate::engine::reclaim;
use bytes::Bytes;
use once_cell::sync::Lazy;

use crate::engine::Group;

use super::options::{self, cache_options};

use super::boundary::{bytes, guard, require, str_arg};
use super::handles::HandleTable;
use super::pool::{self, cache_pool, Membership};
use super::sink::{cache_getter_fn, CGetter};
use super::status::*;
use super::value::{cache_value, into_c};

/// A cache: one groupcache group. Opaque; get one from cache_new, give it
/// back with cache_free.
pub struct cache {
    _private: [u8; 0],
}

/// groupcache's Stats and CacheStats, as counters since cache_new (bytes
/// and items are current sizes).
///
/// New counters are only ever added at the end. Read them with
/// cache_stats_get_sized, passing sizeof(struct cache_stats): the library
/// fills the counters both sides know, so programs and libraries of
/// different versions never write past each other's struct.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct cache_stats {
    /// Every get, including hits.
    pub gets: u64,
    /// Gets answered from the main or hot cache.
    pub cache_hits: u64,
    /// Values (or "not found") fetched from the owner peer.
    pub peer_loads: u64,
    /// Peer calls that failed (then loaded locally, for gets).
    pub peer_errors: u64,
    /// Gets that missed the cache (gets - cache_hits, roughly).
    pub loads: u64,
    /// Loads left after single-flight: the real work.
    pub loads_deduped: u64,
    /// Successful getter calls on this node.
    pub local_loads: u64,
    /// Failed (or "not found") getter calls on this node.
    pub local_load_errs: u64,
    /// Gets that arrived from peers.
    pub server_requests: u64,
    /// Key + value bytes in the main cache (keys this node owns).
    pub main_bytes: u64,
    /// Entries in the main cache.
    pub main_items: u64,
    /// Lookups in the main cache (each get looks there first).
    pub main_gets: u64,
    /// Lookups the main cache answered.
    pub main_hits: u64,
    /// Entries the main cache dropped to stay within max_bytes.
    pub main_evictions: u64,
    /// Key + value bytes in the hot cache (copies of peers' keys).
    pub hot_bytes: u64,
    /// Entries in the hot cache.
    pub hot_items: u64,
    /// Lookups in the hot cache (after the main cache missed).
    pub hot_gets: u64,
    /// Lookups the hot cache answered.
    pub hot_hits: u64,
    /// Entries the hot cache dropped (first, while hot > main / 8).
    pub hot_evictions: u64,
    /// Batch getter calls on this node (new since 0.1).
    pub batch_loads: u64,
    /// Keys handed to the batch getter, over all its calls (new since 0.1).
    pub batch_loaded_keys: u64,
    /// Batch fetches from owner peers: one per peer per cache_get_many
    /// (new since 0.1).
    pub peer_batch_requests: u64,
    /// Batch gets that arrived from peers (new since 0.1); their keys count
    /// in server_requests too.
    pub server_batch_requests: u64,
    // Added after 0.1 (membership), read with cache_stats_get_sized:
    /// Distinct nodes in the membership of the cache's pool, this one
    /// included when listed (0 without a pool).
    pub peers: u64,
    /// Times the pool's membership changed: cache_pool_set_peers with a
    /// different list, or a DNS lookup of peers_from that found one.
    pub membership_changes: u64,
}

/// What a `cache` handle refers to.
pub(crate) struct CacheObj {
    pub(crate) group: Arc<Group>,
    membership: Option<Membership>,
}

pub(crate) static CACHES: Lazy<&'static HandleTable<CacheObj>> = Lazy::new(HandleTable::leaked);

/// Longest key accepted, in bytes.
pub const CACHE_MAX_KEY_LEN: usize = 8192;
/// Longest cache name accepted, in bytes.
pub const CACHE_MAX_NAME_LEN: usize = 255;
const _: () = assert!(CACHE_MAX_KEY_LEN == crate::engine::MAX_KEY_LEN);
const MAX_NAME_LEN: usize = CACHE_MAX_NAME_LEN;

fn check_name(name: &str) -> Result<(), cache_status> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(fail(
            CACHE_INVALID_ARGUMENT,
            format!("a cache name is 1 to {MAX_NAME_LEN} bytes, not {}", name.len()),
        ));
    }
    if name.contains('/') || name.chars().any(char::is_control) {
        return Err(fail(
            CACHE_INVALID_ARGUMENT,
            format!("cache name {name:?} contains '/' or a control character"),
        ));
    }
    Ok(())
}

macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(status) => return status,
        }
    };
}

/// Runs `f` on the cache behind `c` within one epoch pin: for calls that
/// never block.
fn with_cache<R>(c: *const cache, f: impl FnOnce(&CacheObj) -> R) -> Result<R, cache_status> {
    let pin = reclaim::pin();
    match CACHES.get(c as usize, &pin) {
        Some(obj) => Ok(f(obj)),
        None => Err(fail(
            CACHE_CLOSED,
            "the cache was freed (or this is not a cache handle)",
        )),
    }
}

/// A strong reference to the cache behind `c`: for calls that may block.
fn cache_arc(c: *const cache) -> Result<Arc<CacheObj>, cache_status> {
    let pin = reclaim::pin();
    CACHES.get_arc(c as usize, &pin).ok_or_else(|| {
        fail(
            CACHE_CLOSED,
            "the cache was freed (or this is not a cache handle)",
        )
    })
}

/// Creates a cache (one groupcache group) named `name`.
///
/// - `max_bytes` bounds the main and hot caches together, counting key +
///   value bytes; 0 keeps nothing (every get loads, still de-duplicated).
///   Each insert evicts right after it adds, so while several threads
///   insert at once the total can exceed the bound by about one entry per
///   inserting thread; at rest it is within it.
/// - `getter` is called on misses, with `user_data`, from any thread; NULL
///   makes a set-only cache whose misses are CACHE_NOT_FOUND. `user_data`
///   must stay valid until cache_free and any call in progress return.
///   The getter must return (see cache_getter_fn).
/// - `pool` NULL: a process-local cache. Otherwise the cache joins that
///   node's cluster; names are unique within a pool.
/// - On CACHE_OK, `*out` receives the handle; otherwise it is untouched.
/// - fork(): a cache keeps working in a child, with a copy of its contents;
///   loads the parent had in flight are not waited on (the child loads
///   those keys itself). See cache_pool_new for pools.
///
/// Options (a load timeout) come from the environment (see
/// cache_options_new); use cache_new_with_options to set them in code.
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL name or out, a name that
/// is empty, longer than 255 bytes, not UTF-8, or has '/' or a control
/// character, a malformed GROUPCACHE_* variable), CACHE_ALREADY_EXISTS
/// (the pool has a cache of that name), CACHE_CLOSED (the pool was freed).
/// Never blocks.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string; `out` is NULL or writable;
/// `user_data` stays valid as said above and `getter` is NULL or a
/// function as cache_getter_fn describes. `pool` is any value (handles
/// are checked).
#[no_mangle]
pub unsafe extern "C" fn cache_new(
    name: *const c_char,
    max_bytes: u64,
    getter: cache_getter_fn,
    user_data: *mut c_void,
    pool: *mut cache_pool,
    out: *mut *mut cache,
) -> cache_status {
    // SAFETY: forwarded with the caller's promises.
    unsafe { cache_new_with_options(name, max_bytes, getter, user_data, pool, std::ptr::null(), out) }
}

/// cache_new with explicit options (from cache_options_new; NULL means the
/// defaults and the environment). The options are copied: free them
/// whenever. Same statuses as cache_new, plus CACHE_INVALID_ARGUMENT for
/// options that were freed. Never blocks.
///
/// # Safety
/// As cache_new; `options` is any value (handles are checked).
#[no_mangle]
pub unsafe extern "C" fn cache_new_with_options(
    name: *const c_char,
    max_bytes: u64,
    getter: cache_getter_fn,
    user_data: *mut c_void,
    pool: *mut cache_pool,
    options: *const cache_options,
    out: *mut *mut cache,
) -> cache_status {
    guard(|| {
        require!(out);
        // SAFETY: the caller promises a NUL-terminated string.
        let name = tri!(unsafe { str_arg(name, "name") });
        tri!(check_name(name));
        let options = tri!(options::resolve(options));
        let getter = CGetter::new(getter, user_data).map(|g| Arc::new(g) as _);
        let group = Group::with_options(name, max_bytes, getter, options);
        let membership = if pool.is_null() {
            None
        } else {
            Some(tri!(pool::join(pool, &group)))
        };
        let obj = Arc::new(CacheObj { group, membership });
        match CACHES.insert(obj) {
            Some(h) => {
                // SAFETY: out is non-NULL (checked) and writable (promise).
                unsafe { *out = h as *mut cache };
                CACHE_OK
            }
            None => fail(CACHE_INVALID_ARGUMENT, "too many live caches (over a million)"),
        }
    })
}

/// Frees a cache. Safe while other threads are inside calls on it: they
/// finish or get CACHE_CLOSED, and memory goes when the last one leaves.
/// Its name becomes free in its pool at once. A freed or double-freed
/// handle never corrupts memory: later calls with it get CACHE_CLOSED,
/// even after new caches were created (handles are never reused). NULL is
/// a no-op. Values obtained from the cache stay valid. Never blocks on loads.
#[no_mangle]
pub extern "C" fn cache_free(c: *mut cache) {
    guard(|| {
        if c.is_null() {
            return;
        }
        if let Some(obj) = CACHES.remove(c as usize, usize::MAX /* may hold gigabytes: free at once */) {
            obj.group.close();
            if let Some(m) = &obj.membership {
                m.leave();
            }
        }
    })
}

/// Gets the value of `key` (binary-safe, `key_len` bytes, at most 8 KiB):
/// from this node's cache, else from the key's owner, else from the getter.
/// On CACHE_OK `*out` receives a value the caller owns (free it with
/// cache_value_free); otherwise `*out` is untouched.
///
/// Returns CACHE_OK, CACHE_NOT_FOUND, CACHE_LOADER_FAILED,
/// CACHE_INVALID_ARGUMENT (NULL c or out, NULL key with a non-zero length,
/// a key over 8 KiB, a getter waiting on its own load), CACHE_CLOSED,
/// CACHE_TIMEOUT (this call waited on a load by another thread that ran
/// past the cache's load timeout, see cache_options_set_load_timeout_ms;
/// the load was abandoned and the next get loads the key again),
/// CACHE_PANIC. May block: on a miss it waits for the load (and may call
/// the getter on this thread, or fetch from a peer), at most the load
/// timeout when it waits on another thread's load; a call that runs the
/// getter itself waits for it whatever the timeout. A hit never blocks.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_get(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    out: *mut *mut cache_value,
) -> cache_status {
    guard(|| {
        require!(c, out);
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = tri!(unsafe { bytes(key, key_len, "key") });
        let hit = {
            let pin = reclaim::pin();
            match CACHES.get(c as usize, &pin) {
                // The cache's own copy, shared, not copied (see cache_value).
                Some(obj) => obj.group.get_cached_shared(key, &pin),
                None => {
                    return fail(
                        CACHE_CLOSED,
                        "the cache was freed (or this is not a cache handle)",
                    )
                }
            }
        };
        let bytes = match hit {
            Some(v) => v,
            None => {
                let obj = tri!(cache_arc(c));
                tri!(obj.group.get(key).map_err(from_error))
            }
        };
        let Some(v) = into_c(bytes) else {
            return fail(
                CACHE_INVALID_ARGUMENT,
                "too many live values on this thread (a million): free some",
            );
        };
        // SAFETY: out is non-NULL (checked) and writable (promise).
        unsafe { *out = v };
        CACHE_OK
    })
}

/// Like cache_get, but a wait on another thread's load of `key` lasts at
/// most `slice_ms` milliseconds (at least 1): then it returns
/// CACHE_IN_PROGRESS and the load goes on; call again to keep waiting (the
/// call joins the same load). For a thread that must stay responsive while
/// it waits, e.g. the one that handles signals (Python's main thread uses
/// it so that Ctrl-C is not held up by a slow load). Each call counts as a
/// get in the stats. A fetch this call makes from a peer, or a getter it
/// runs itself, is not sliced.
///
/// Returns what cache_get returns, plus CACHE_IN_PROGRESS (`*out` is then
/// untouched).
///
/// # Safety
/// As cache_get.
#[no_mangle]
pub unsafe extern "C" fn cache_get_slice(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    slice_ms: u32,
    out: *mut *mut cache_value,
) -> cache_status {
    let slice = std::time::Duration::from_millis(u64::from(slice_ms.max(1)));
    // SAFETY: the same arguments, passed on with the caller's promises.
    crate::engine::singleflight::with_wait_slice(slice, || unsafe { cache_get(c, key, key_len, out) })
}

/// Gets `n` keys at once, loading the misses: key `i` is `keys[i]`,
/// `key_lens[i]` bytes (binary-safe). Hits are answered first; the misses
/// are grouped by owner and each owner peer is asked once for its keys, all
/// peers at once and meanwhile this node loads its own: through the batch
/// getter in chunks (cache_options_set_batch_getter), else through the
/// getter, several keys at once (cache_options_set_miss_concurrency).
/// Single-flight holds per key, shared with every other get of it; a
/// duplicate key is loaded once.
///
/// Per key: `statuses[i]` receives what cache_get would return for it
/// (CACHE_OK, CACHE_NOT_FOUND, CACHE_LOADER_FAILED, CACHE_TIMEOUT,
/// CACHE_INVALID_ARGUMENT for a key over 8 KiB, ...). `values[i]` receives
/// the value on CACHE_OK (owned by the caller: cache_value_free), NULL
/// otherwise. `messages`, if not NULL, receives for each failed key other
/// than CACHE_NOT_FOUND a cache_value holding the failure's message
/// (UTF-8 text, not NUL-terminated; cache_value_free it), NULL for the
/// others. cache_values_alloc turns either array into a binding's objects.
///
/// Returns CACHE_OK once every key has its result (even if some failed),
/// or, writing nothing, CACHE_INVALID_ARGUMENT (NULL c; NULL keys,
/// key_lens, statuses or values with n > 0; a NULL key with a non-zero
/// length; more than a million results to hand out on this thread),
/// CACHE_CLOSED (a freed cache). n == 0 is CACHE_OK. May block: until every
/// miss is loaded, as cache_get (waits on other threads' loads last at most
/// the load timeout). cache_last_error is not set for per-key failures.
///
/// # Safety
/// `keys` and `key_lens` point to `n` readable entries, `keys[i]` to
/// `key_lens[i]` readable bytes (or is NULL with a length of 0);
/// `statuses`, `values` and `messages` (if not NULL) to `n` writable
/// entries.
#[no_mangle]
pub unsafe extern "C" fn cache_get_many(
    c: *mut cache,
    keys: *const *const u8,
    key_lens: *const usize,
    n: usize,
    statuses: *mut i32,
    values: *mut *mut cache_value,
    messages: *mut *mut cache_value,
) -> cache_status {
    guard(|| {
        require!(c);
        if n == 0 {
            return tri!(with_cache(c, |_| CACHE_OK));
        }
        require!(keys, key_lens, statuses, values);
        if n > isize::MAX as usize / std::mem::size_of::<usize>() {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("n = {n} is larger than any array can be"),
            );
        }
        // SAFETY: the caller promises n readable entries in each array.
        let (ptrs, lens) = unsafe {
            (
                std::slice::from_raw_parts(keys, n),
                std::slice::from_raw_parts(key_lens, n),
            )
        };
        let mut ks: Vec<&[u8]> = Vec::with_capacity(n);
        for (i, (&p, &len)) in ptrs.iter().zip(lens).enumerate() {
            // SAFETY: the caller promises len readable bytes at p.
            match unsafe { bytes(p, len, "key") } {
                Ok(k) => ks.push(k),
                Err(_) => {
                    return fail(
                        CACHE_INVALID_ARGUMENT,
                        format!("key {i} is NULL but its length is {len}"),
                    )
                }
            }
        }
        let obj = tri!(cache_arc(c));
        let results = obj.group.get_many(&ks);
        drop(obj);
        // Handles first, so that on failure nothing was handed out.
        let mut made: Vec<(i32, *mut cache_value, *mut cache_value)> = Vec::with_capacity(n);
        let undo = |made: &mut Vec<(i32, *mut cache_value, *mut cache_value)>| {
            for (_, v, m) in made.drain(..) {
                super::value::cache_value_free(v);
                super::value::cache_value_free(m);
            }
            fail(
                CACHE_INVALID_ARGUMENT,
                "too many live values on this thread (a million): free some",
            )
        };
        for r in results {
            let entry = match r {
                Ok(v) => match into_c(v) {
                    Some(h) => (CACHE_OK as i32, h, std::ptr::null_mut()),
                    None => return undo(&mut made),
                },
                Err(crate::engine::Error::NotFound) => {
                    (CACHE_NOT_FOUND as i32, std::ptr::null_mut(), std::ptr::null_mut())
                }
                Err(e) => {
                    let text = e.to_string();
                    let status = status_of(&e) as i32;
                    let m = if messages.is_null() {
                        std::ptr::null_mut()
                    } else {
                        match into_c(Bytes::from(text)) {
                            Some(h) => h,
                            None => return undo(&mut made),
                        }
                    };
                    (status, std::ptr::null_mut(), m)
                }
            };
            made.push(entry);
        }
        for (i, (st, v, m)) in made.into_iter().enumerate() {
            // SAFETY: the caller promises n writable entries in statuses,
            // values, and messages when it is not NULL; i < n.
            unsafe {
                *statuses.add(i) = st;
                *values.add(i) = v;
                if !messages.is_null() {
                    *messages.add(i) = m;
                }
            }
        }
        CACHE_OK
    })
}

/// Like cache_get_many, but a wait on another thread's load, made on the
/// calling thread, lasts at most `slice_ms` milliseconds (at least 1):
/// that key's status is then CACHE_IN_PROGRESS (the load goes on) and the
/// call returns once the others are answered; call again with those keys
/// to keep waiting. For a thread that must stay responsive, as
/// cache_get_slice. Loads the call runs itself, and waits on threads it
/// starts, are not sliced.
///
/// # Safety
/// As cache_get_many.
#[no_mangle]
pub unsafe extern "C" fn cache_get_many_slice(
    c: *mut cache,
    keys: *const *const u8,
    key_lens: *const usize,
    n: usize,
    slice_ms: u32,
    statuses: *mut i32,
    values: *mut *mut cache_value,
    messages: *mut *mut cache_value,
) -> cache_status {
    let slice = std::time::Duration::from_millis(u64::from(slice_ms.max(1)));
    // SAFETY: the same arguments, passed on with the caller's promises.
    crate::engine::singleflight::with_wait_slice(slice, || unsafe {
        cache_get_many(c, keys, key_lens, n, statuses, values, messages)
    })
}

/// Whether this node's cache holds `key` (binary-safe, `key_len` bytes)
/// now: CACHE_OK if it does, CACHE_NOT_FOUND if not. Never loads, never
/// asks a peer (a key another node owns counts only if this node keeps a
/// hot copy), and counts no get. An expired value is not held.
///
/// Returns CACHE_OK, CACHE_NOT_FOUND, CACHE_INVALID_ARGUMENT (NULL c, NULL
/// key with a non-zero length, a key over 8 KiB), CACHE_CLOSED. Never
/// blocks beyond a concurrent insert of the same key.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0).
#[no_mangle]
pub unsafe extern "C" fn cache_contains(c: *const cache, key: *const u8, key_len: usize) -> cache_status {
    guard(|| {
        require!(c);
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = tri!(unsafe { bytes(key, key_len, "key") });
        let pin = reclaim::pin();
        let Some(obj) = CACHES.get(c as usize, &pin) else {
            return fail(
                CACHE_CLOSED,
                "the cache was freed (or this is not a cache handle)",
            );
        };
        match obj.group.contains(key) {
            Ok(true) => CACHE_OK,
            Ok(false) => fail(CACHE_NOT_FOUND, "not in this node's cache"),
            Err(e) => from_error(e),
        }
    })
}

/// Like cache_get, but copies the value into `buf` (`cap` bytes; `buf` may
/// be NULL when `cap` is 0) and allocates nothing. `*out_len` receives the
/// value's length on CACHE_OK, and the size needed on
/// CACHE_BUFFER_TOO_SMALL (the value is then not copied, but it is cached:
/// retry with a larger buffer). Same statuses and blocking as cache_get,
/// plus CACHE_BUFFER_TOO_SMALL.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `buf` points to `cap` writable bytes (or is NULL with `cap` 0);
/// `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_get_into(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    buf: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> cache_status {
    guard(|| {
        require!(c, out_len);
        if buf.is_null() && cap != 0 {
            return fail(CACHE_INVALID_ARGUMENT, "`buf` is NULL but `cap` is not 0");
        }
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = tri!(unsafe { bytes(key, key_len, "key") });
        let copy = |v: &[u8]| {
            if v.len() <= cap && !v.is_empty() {
                // SAFETY: buf has cap >= v.len() writable bytes (promise),
                // and cannot overlap the cache's own memory.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), buf, v.len()) };
            }
            v.len()
        };
        let hit = {
            let pin = reclaim::pin();
            match CACHES.get(c as usize, &pin) {
                Some(obj) => obj.group.get_cached_with(key, &pin, copy),
                None => {
                    return fail(
                        CACHE_CLOSED,
                        "the cache was freed (or this is not a cache handle)",
                    )
                }
            }
        };
        let len = match hit {
            Some(n) => n,
            None => {
                let obj = tri!(cache_arc(c));
                tri!(obj.group.get_with(key, copy).map_err(from_error))
            }
        };
        // SAFETY: out_len is non-NULL (checked) and writable (promise).
        unsafe { *out_len = len };
        if len > cap {
            return fail(
                CACHE_BUFFER_TOO_SMALL,
                format!("the value needs {len} bytes, the buffer has {cap}"),
            );
        }
        CACHE_OK
    })
}

/// Stores `value` under `key`, at the key's owner (when in a pool) and in
/// this node's cache; a load of the key in flight will not overwrite it.
/// The bytes are copied. `ttl_ms <= 0`: no expiry.
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL c, NULL key or value
/// with a non-zero length, a key over 8 KiB, a value over 4 GiB),
/// CACHE_CLOSED, CACHE_PEER_FAILED (the owner could not be reached; the
/// local copy is dropped). May block while the owner answers (up to the
/// peer timeout).
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `value` points to `value_len` readable bytes (or is NULL with
/// `value_len` 0).
#[no_mangle]
pub unsafe extern "C" fn cache_set(
    c: *mut cache,
    key: *const u8,
    key_len: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: i64,
) -> cache_status {
    guard(|| {
        require!(c);
        // SAFETY: the caller promises readable bytes at key and value.
        let (key, value) = unsafe {
            (
                tri!(bytes(key, key_len, "key")),
                tri!(bytes(value, value_len, "value")),
            )
        };
        let obj = tri!(cache_arc(c));
        match obj.group.set(key, value, ttl_ms) {
            Ok(()) => CACHE_OK,
            Err(e) => from_error(e),
        }
    })
}

/// Removes `key` everywhere: locally, at its owner, then at every peer; a
/// load of the key in flight will not cache the old value. Returns once
/// the owner and every reachable peer have dropped it or timed out.
///
/// Returns CACHE_OK (also when the key was not cached),
/// CACHE_INVALID_ARGUMENT, CACHE_CLOSED, CACHE_PEER_FAILED (the owner
/// could not be reached; it may still hold the value). May block on peers.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0).
#[no_mangle]
pub unsafe extern "C" fn cache_remove(c: *mut cache, key: *const u8, key_len: usize) -> cache_status {
    guard(|| {
        require!(c);
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = tri!(unsafe { bytes(key, key_len, "key") });
        let obj = tri!(cache_arc(c));
        match obj.group.remove(key) {
            Ok(()) => CACHE_OK,
            Err(e) => from_error(e),
        }
    })
}

/// The size of struct cache_stats in 0.1: its first 19 counters, all that
/// cache_stats_get writes, in this version and every later one.
const STATS_SIZE_0_1: usize = 19 * 8;
// Every field is a u64, so the struct has no padding and the fields of an
// older, shorter struct are a prefix of it.
const _: () = assert!(std::mem::size_of::<cache_stats>().is_multiple_of(8));
const _: () = assert!(std::mem::size_of::<cache_stats>() >= STATS_SIZE_0_1);

/// Copies the cache's first 19 counters (struct cache_stats as of 0.1, 152
/// bytes) into `*out`, and never writes more: a program built against 0.1
/// keeps working as counters are added. Counters added later are not
/// written: use cache_stats_get_sized. Returns CACHE_OK,
/// CACHE_INVALID_ARGUMENT (NULL), CACHE_CLOSED. Never blocks.
///
/// # Safety
/// `out` is NULL or points to a writable struct cache_stats of any
/// version (at least 152 bytes).
#[no_mangle]
pub unsafe extern "C" fn cache_stats_get(c: *mut cache, out: *mut cache_stats) -> cache_status {
    // SAFETY: the caller promises a writable struct cache_stats of 0.1 or
    // later at out: at least STATS_SIZE_0_1 bytes.
    unsafe { cache_stats_get_sized(c, out, STATS_SIZE_0_1) }
}

/// Copies the cache's counters into `*out`, a struct cache_stats of
/// `out_size` bytes: pass sizeof(struct cache_stats) as your header
/// declares it. Writes exactly `out_size` bytes: the counters that both
/// your header and this library know, and 0 in any counter your header
/// has and this (older) library does not. Counters this library has and
/// your (older) header does not are left out. So programs built against
/// any version work with libraries of any other.
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL c or out, an `out_size`
/// that is 0 or not a multiple of 8: no struct cache_stats has that size;
/// nothing is written then), CACHE_CLOSED. Never blocks.
///
/// # Safety
/// `out` is NULL or points to `out_size` writable bytes.
#[no_mangle]
pub unsafe extern "C" fn cache_stats_get_sized(
    c: *mut cache,
    out: *mut cache_stats,
    out_size: usize,
) -> cache_status {
    guard(|| {
        require!(c, out);
        if out_size == 0 || !out_size.is_multiple_of(8) {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("out_size {out_size} is not the size of a struct cache_stats (a multiple of 8)"),
            );
        }
        let s = tri!(with_cache(c, |obj| obj.group.stats()));
        let st = cache_stats {
            gets: s.gets,
            cache_hits: s.cache_hits,
            peer_loads: s.peer_loads,
            peer_errors: s.peer_errors,
            loads: s.loads,
            loads_deduped: s.loads_deduped,
            local_loads: s.local_loads,
            local_load_errs: s.local_load_errs,
            server_requests: s.server_requests,
            main_bytes: s.main_bytes,
            main_items: s.main_items,
            main_gets: s.main_gets,
            main_hits: s.main_hits,
            main_evictions: s.main_evictions,
            hot_bytes: s.hot_bytes,
            hot_items: s.hot_items,
            hot_gets: s.hot_gets,
            hot_hits: s.hot_hits,
            hot_evictions: s.hot_evictions,
            batch_loads: s.batch_loads,
            batch_loaded_keys: s.batch_loaded_keys,
            peer_batch_requests: s.peer_batch_requests,
            server_batch_requests: s.server_batch_requests,
            peers: s.peers,
            membership_changes: s.membership_changes,
        };
        let known = out_size.min(std::mem::size_of::<cache_stats>());
        let out = out as *mut u8;
        // SAFETY: out is non-NULL (checked) and the caller promises out_size
        // writable bytes there; `known` bytes of st are read, at most its
        // size, and the rest up to out_size is zeroed: nothing past out_size
        // is written. u8 writes need no alignment.
        unsafe {
            std::ptr::copy_nonoverlapping(&st as *const cache_stats as *const u8, out, known);
            std::ptr::write_bytes(out.add(known), 0, out_size - known);
        }
        CACHE_OK
    })
}
