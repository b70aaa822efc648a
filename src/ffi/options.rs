//! `cache_options`: settings of a cache beyond its name, size and getter,
//! behind a generation-checked handle.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use once_cell::sync::Lazy;

use crate::engine::reclaim;
use crate::engine::GroupOptions;

use super::boundary::guard;
use super::handles::HandleTable;
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

/// New cache options: the defaults (no load timeout, as golang/groupcache),
/// then the environment: GROUPCACHE_LOAD_TIMEOUT_MS (0: none). Returns
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
