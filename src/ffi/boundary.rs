//! The panic boundary and argument checks shared by every entry point.
//!
//! Every `extern "C"` body runs inside [`guard`]: a panic becomes the
//! return type's fallback (`CACHE_PANIC`, NULL, 0, nothing) and never
//! unwinds into C.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::status::{cache_status, fail, CACHE_PANIC};

/// What an entry point returns when its body panicked.
pub(crate) trait Fallback {
    fn on_panic() -> Self;
}

impl Fallback for cache_status {
    fn on_panic() -> Self {
        CACHE_PANIC
    }
}
impl<T> Fallback for *const T {
    fn on_panic() -> Self {
        std::ptr::null()
    }
}
impl<T> Fallback for *mut T {
    fn on_panic() -> Self {
        std::ptr::null_mut()
    }
}
impl Fallback for usize {
    fn on_panic() -> Self {
        0
    }
}
impl Fallback for () {
    fn on_panic() -> Self {}
}

/// Runs `body`, turning a panic into `R::on_panic()` with a message.
#[inline]
pub(crate) fn guard<R: Fallback>(body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r,
        Err(p) => {
            let msg = crate::engine::panic_message(&*p);
            fail(CACHE_PANIC, format!("internal error (please report): {msg}"));
            R::on_panic()
        }
    }
}

/// Returns `CACHE_INVALID_ARGUMENT` from the enclosing function when a
/// pointer argument is NULL.
macro_rules! require {
    ($($p:ident),+) => {
        $(if $p.is_null() {
            return $crate::ffi::status::fail(
                $crate::ffi::status::CACHE_INVALID_ARGUMENT,
                concat!("`", stringify!($p), "` is NULL"),
            );
        })+
    };
}
pub(crate) use require;

/// Borrows `len` bytes at `ptr` as a slice; NULL is accepted for `len == 0`.
///
/// # Safety
/// If non-NULL, `ptr` must point to `len` readable bytes that stay valid
/// and unmodified for the returned lifetime (the C caller's promise).
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], cache_status> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(fail(
            super::status::CACHE_INVALID_ARGUMENT,
            format!("`{what}` is NULL but its length is {len}"),
        ));
    }
    if len > isize::MAX as usize {
        return Err(fail(
            super::status::CACHE_INVALID_ARGUMENT,
            format!("`{what}` length {len} is larger than any object can be"),
        ));
    }
    // SAFETY: non-NULL, len <= isize::MAX, validity is the caller's promise.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// If non-NULL, `p` must point to a NUL-terminated string.
pub(crate) unsafe fn str_arg<'a>(p: *const std::ffi::c_char, what: &str) -> Result<&'a str, cache_status> {
    if p.is_null() {
        return Err(fail(
            super::status::CACHE_INVALID_ARGUMENT,
            format!("`{what}` is NULL"),
        ));
    }
    // SAFETY: non-NULL and NUL-terminated by the caller's promise.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_str().map_err(|_| {
        fail(
            super::status::CACHE_INVALID_ARGUMENT,
            format!("`{what}` is not valid UTF-8"),
        )
    })
}
