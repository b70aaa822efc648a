//! `cache_options`: settings of a cache beyond its name, size and getter,
//! behind a generation-checked handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::engine::reclaim;
use crate::engine::{GroupOptions, MAX_BATCH_CHUNK_KEYS, MAX_MISS_CONCURRENCY};

use super::boundary::guard;
use super::handles::HandleTable;
use super::sink::{cache_batch_getter_fn, CBatchGetter};
use super::status::*;

/// Options for cache_new_with_options: an opaque builder, so that new
/// options never change the ABI. Defaults, then the environment (see
/// cache_options_new), then the setters. A handle, not a pointer: a freed
/// or double-freed one is CACHE_INVALID_ARGUMENT, never memory corruption.
pub struct cache_options {
    _private: [u8; 0],
}

static OPTIONS: Lazy<&'static HandleTable<Mutex<GroupOptions>>> = Lazy::new(HandleTable::leaked);

/// The environment variable of the load timeout.
const ENV_LOAD_TIMEOUT: &str = "GROUPCACHE_LOAD_TIMEOUT_MS";

fn ms_to_timeout(ms: u32) -> Option<Duration> {
    (ms != 0).then(|| Duration::from_millis(ms as u64))
}

/// The environment variable of the batch getter's chunk size.
const ENV_BATCH_CHUNK_KEYS: &str = "GROUPCACHE_BATCH_CHUNK_KEYS";
/// The environment variable of the miss concurrency.
const ENV_MISS_CONCURRENCY: &str = "GROUPCACHE_MISS_CONCURRENCY";

/// `n` if it is within 1..=max, else the error naming `what`.
fn in_range(n: u64, max: usize, what: &str) -> Result<usize, String> {
    if n == 0 || n > max as u64 {
        return Err(format!("{what} must be 1 to {max}, not {n}"));
    }
    Ok(n as usize)
}

/// The defaults overridden by the environment; a malformed variable is an
/// error naming it, never silently ignored.
pub(crate) fn options_from_env() -> Result<GroupOptions, String> {
    let mut o = GroupOptions::default();
    if let Ok(v) = std::env::var(ENV_LOAD_TIMEOUT) {
        let ms = v.trim().parse::<u32>().map_err(|_| {
            format!("{ENV_LOAD_TIMEOUT}={v:?} is not a whole number of milliseconds (0 to 4294967295)")
        })?;
        o.load_timeout = ms_to_timeout(ms);
    }
    let count = |name: &str, max: usize| -> Result<Option<usize>, String> {
        let Ok(v) = std::env::var(name) else {
            return Ok(None);
        };
        let n = v
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("{name}={v:?} is not a whole number (1 to {max})"))?;
        in_range(n, max, name).map(Some)
    };
    if let Some(n) = count(ENV_BATCH_CHUNK_KEYS, MAX_BATCH_CHUNK_KEYS)? {
        o.batch_chunk_keys = n;
    }
    if let Some(n) = count(ENV_MISS_CONCURRENCY, MAX_MISS_CONCURRENCY)? {
        o.miss_concurrency = n;
    }
    Ok(o)
}

fn not_live() -> cache_status {
    fail(
        CACHE_INVALID_ARGUMENT,
        "not a live cache_options (freed, or never one)",
    )
}

/// The options behind `o`; NULL means the defaults and the environment.
pub(crate) fn resolve(o: *const cache_options) -> Result<GroupOptions, cache_status> {
    if o.is_null() {
        return options_from_env().map_err(|m| fail(CACHE_INVALID_ARGUMENT, m));
    }
    let pin = reclaim::pin();
    match OPTIONS.get(o as usize, &pin) {
        Some(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        None => Err(not_live()),
    }
}

/// New cache options: the defaults (no load timeout, as golang/groupcache;
/// no batch getter; chunks of 256 keys; 16 loads at once), then the
/// environment: GROUPCACHE_LOAD_TIMEOUT_MS (0: none),
/// GROUPCACHE_BATCH_CHUNK_KEYS, GROUPCACHE_MISS_CONCURRENCY. Returns
/// NULL (with cache_last_error) if a variable is malformed. Free with
/// cache_options_free. Never blocks.
#[no_mangle]
pub extern "C" fn cache_options_new() -> *mut cache_options {
    guard(|| {
        let opts = match options_from_env() {
            Ok(o) => o,
            Err(m) => {
                fail(CACHE_INVALID_ARGUMENT, m);
                return std::ptr::null_mut();
            }
        };
        match OPTIONS.insert(Arc::new(Mutex::new(opts))) {
            Some(h) => h as *mut cache_options,
            None => {
                fail(
                    CACHE_INVALID_ARGUMENT,
                    "too many live cache_options (over a million)",
                );
                std::ptr::null_mut()
            }
        }
    })
}

/// Frees options; NULL, or options already freed, is a no-op. Caches
/// created from them are unaffected. Never blocks.
#[no_mangle]
pub extern "C" fn cache_options_free(options: *mut cache_options) {
    guard(|| {
        if !options.is_null() {
            OPTIONS.remove(options as usize, 0);
        }
    })
}

/// How long a load may take, in milliseconds; 0: no limit (the default).
///
/// The getter runs on the thread of the call that started the load and
/// is never interrupted: that caller waits for it and gets what it
/// returns.
/// Other callers waiting on the same load get CACHE_TIMEOUT once the load
/// is older than this, and the load is abandoned: a get after that starts
/// a fresh load (so the getter may run twice at once for the key), and
/// the abandoned load's result, if it ever comes, is not cached.
///
/// Returns CACHE_OK, or CACHE_INVALID_ARGUMENT (NULL or freed options).
/// Never blocks.
#[no_mangle]
pub extern "C" fn cache_options_set_load_timeout_ms(options: *mut cache_options, ms: u32) -> cache_status {
    guard(|| {
        if options.is_null() {
            return fail(CACHE_INVALID_ARGUMENT, "`options` is NULL");
        }
        let pin = reclaim::pin();
        match OPTIONS.get(options as usize, &pin) {
            Some(m) => {
                m.lock().unwrap_or_else(|p| p.into_inner()).load_timeout = ms_to_timeout(ms);
                CACHE_OK
            }
            None => not_live(),
        }
    })
}

/// Runs `f` on the options behind `options` (CACHE_INVALID_ARGUMENT for
/// NULL or freed ones).
fn update(options: *mut cache_options, f: impl FnOnce(&mut GroupOptions)) -> cache_status {
    if options.is_null() {
        return fail(CACHE_INVALID_ARGUMENT, "`options` is NULL");
    }
    let pin = reclaim::pin();
    match OPTIONS.get(options as usize, &pin) {
        Some(m) => {
            f(&mut m.lock().unwrap_or_else(|p| p.into_inner()));
            CACHE_OK
        }
        None => not_live(),
    }
}

/// Sets the batch getter (see cache_batch_getter_fn) of the caches made
/// from these options, with its `user_data`; NULL removes it (the
/// default). With it, the misses of cache_get_many (and of batches peers
/// send this node) load through it, at most the chunk size a call
/// (cache_options_set_batch_chunk_keys); without it, they load through the
/// getter, several at once (cache_options_set_miss_concurrency). A cache
/// with a batch getter and no getter loads cache_get's misses through it,
/// one key a call. `user_data` must stay valid until every cache made from
/// these options is freed and its calls in progress have returned.
///
/// Returns CACHE_OK, or CACHE_INVALID_ARGUMENT (NULL or freed options).
/// Never blocks.
///
/// # Safety
/// `getter` is NULL or a function as cache_batch_getter_fn describes;
/// `user_data` stays valid as said above.
#[no_mangle]
pub unsafe extern "C" fn cache_options_set_batch_getter(
    options: *mut cache_options,
    getter: cache_batch_getter_fn,
    user_data: *mut std::ffi::c_void,
) -> cache_status {
    guard(|| {
        let bg = CBatchGetter::new(getter, user_data).map(|g| Arc::new(g) as _);
        update(options, |o| o.batch_getter = bg)
    })
}

/// The most keys one batch getter call gets (1 to 65536; default 256):
/// the misses of one cache_get_many are split into chunks of this size.
/// Returns CACHE_OK, or CACHE_INVALID_ARGUMENT (NULL or freed options, 0,
/// over 65536). Never blocks.
#[no_mangle]
pub extern "C" fn cache_options_set_batch_chunk_keys(options: *mut cache_options, n: u32) -> cache_status {
    guard(
        || match in_range(n.into(), MAX_BATCH_CHUNK_KEYS, "batch_chunk_keys") {
            Ok(n) => update(options, |o| o.batch_chunk_keys = n),
            Err(m) => fail(CACHE_INVALID_ARGUMENT, m),
        },
    )
}

/// How many loads of one cache_get_many run at once (1 to 1024; default
/// 16): getter calls when there is no batch getter, else batch getter
/// chunks. They run on the calling thread and threads started for the
/// call (none outlive it). Fetches from the keys' owners run besides, one
/// batch per peer, all at once. Returns CACHE_OK, or CACHE_INVALID_ARGUMENT
/// (NULL or freed options, 0, over 1024). Never blocks.
#[no_mangle]
pub extern "C" fn cache_options_set_miss_concurrency(options: *mut cache_options, n: u32) -> cache_status {
    guard(
        || match in_range(n.into(), MAX_MISS_CONCURRENCY, "miss_concurrency") {
            Ok(n) => update(options, |o| o.miss_concurrency = n),
            Err(m) => fail(CACHE_INVALID_ARGUMENT, m),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_handles_stale_ones_are_rejected() {
        let o = cache_options_new();
        assert!(!o.is_null());
        assert_eq!(cache_options_set_load_timeout_ms(o, 250), CACHE_OK);
        assert_eq!(resolve(o).unwrap().load_timeout, Some(Duration::from_millis(250)));
        assert_eq!(cache_options_set_load_timeout_ms(o, 0), CACHE_OK);
        assert_eq!(resolve(o).unwrap().load_timeout, None);
        cache_options_free(o);
        cache_options_free(o); // double free: a no-op
        assert_eq!(cache_options_set_load_timeout_ms(o, 5), CACHE_INVALID_ARGUMENT);
        assert_eq!(resolve(o).unwrap_err(), CACHE_INVALID_ARGUMENT);
        assert_eq!(
            cache_options_set_load_timeout_ms(std::ptr::null_mut(), 5),
            CACHE_INVALID_ARGUMENT
        );
        assert_eq!(
            cache_options_set_load_timeout_ms(0xdead_beef as *mut cache_options, 5),
            CACHE_INVALID_ARGUMENT
        );
    }
}
