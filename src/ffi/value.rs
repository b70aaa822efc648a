//! `cache_value`: an immutable value handed to C.

use bytes::Bytes;

use super::boundary::guard;

/// A value returned by cache_get. Immutable; the caller owns it until
/// cache_value_free. It stays valid after the key is evicted or removed
/// and after the cache is freed.
pub struct cache_value {
    magic: u64,
    bytes: Bytes,
}

const LIVE: u64 = 0x6763_7661_6c75_6521; // "gcvalue!"
const DEAD: u64 = 0x6465_6164_7661_6c21;

pub(crate) fn into_c(bytes: Bytes) -> *mut cache_value {
    Box::into_raw(Box::new(cache_value { magic: LIVE, bytes }))
}

fn live<'a>(v: *const cache_value) -> Option<&'a cache_value> {
    // SAFETY: a non-NULL pointer from C is one we returned (the caller's
    // promise); the magic catches most uses after free.
    let v = unsafe { v.as_ref()? };
    (v.magic == LIVE).then_some(v)
}

/// The value's bytes: `cache_value_len(v)` of them, valid until
/// cache_value_free(v). NULL for NULL. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_data(v: *const cache_value) -> *const u8 {
    guard(|| match live(v) {
        Some(v) => v.bytes.as_ptr(),
        None => std::ptr::null(),
    })
}

/// The value's length in bytes; 0 for NULL. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_len(v: *const cache_value) -> usize {
    guard(|| live(v).map_or(0, |v| v.bytes.len()))
}

/// Frees a value returned by cache_get. NULL is a no-op. Freeing a value
/// twice is a bug in the caller, as with free(); it is detected in most
/// cases and then ignored. Never blocks.
#[no_mangle]
pub extern "C" fn cache_value_free(v: *mut cache_value) {
    guard(|| {
        if live(v).is_none() {
            return;
        }
        // SAFETY: v is a live value we allocated with Box in into_c.
        let mut b = unsafe { Box::from_raw(v) };
        // Volatile: a plain store right before the free could be elided.
        // SAFETY: b.magic is a valid, aligned field of a live box.
        unsafe { std::ptr::write_volatile(&mut b.magic, DEAD) };
        drop(b);
    })
}
