//! `cache_status`, the thread's last error message, and the mapping from
//! engine errors.

use std::cell::RefCell;
use std::ffi::{c_char, CString};

use crate::engine::Error;

/// The result of every fallible call.
#[allow(non_camel_case_types)]
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum cache_status {
    /// Success.
    CACHE_OK = 0,
    /// The getter (here or at the key's owner) said the key does not exist.
    CACHE_NOT_FOUND = 1,
    /// NULL, a bad length, a bad name, a bad URL, a misuse of a sink...
    CACHE_INVALID_ARGUMENT = 2,
    /// The getter failed; cache_last_error() says why.
    CACHE_LOADER_FAILED = 3,
    /// A peer could not be reached or answered badly, and no fallback applied.
    CACHE_PEER_FAILED = 4,
    /// A wait exceeded its deadline.
    CACHE_TIMEOUT = 5,
    /// The cache or pool was freed, or is closing.
    CACHE_CLOSED = 6,
    /// The caller's buffer is too small; the needed size was reported.
    CACHE_BUFFER_TOO_SMALL = 7,
    /// A name is already in use (e.g. a group name within a pool).
    CACHE_ALREADY_EXISTS = 8,
    /// An operating-system error, e.g. the listen address cannot be bound.
    CACHE_IO = 9,
    /// An internal bug was caught at the library boundary.
    CACHE_PANIC = 10,
    /// cache_get_slice only: the wait slice ended while another thread's
    /// load of the key goes on; call again to wait more.
    CACHE_IN_PROGRESS = 11,
}

pub use cache_status::*;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records `msg` as this thread's last error and returns `status`.
pub(crate) fn fail(status: cache_status, msg: impl Into<String>) -> cache_status {
    let mut msg = msg.into();
    msg.retain(|c| c != '\0');
    // try_with: during thread teardown the message is simply dropped.
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = CString::new(msg).unwrap_or_default());
    status
}

/// The status for an engine error, with its message recorded.
pub(crate) fn from_error(e: Error) -> cache_status {
    let status = status_of(&e);
    fail(status, e.to_string())
}

/// The status for an engine error.
pub(crate) fn status_of(e: &Error) -> cache_status {
    match e {
        Error::NotFound => CACHE_NOT_FOUND,
        Error::LoaderFailed(_) => CACHE_LOADER_FAILED,
        Error::PeerFailed(_) => CACHE_PEER_FAILED,
        Error::Timeout(_) => CACHE_TIMEOUT,
        Error::InProgress => CACHE_IN_PROGRESS,
        Error::Closed => CACHE_CLOSED,
        Error::InvalidArgument(_) => CACHE_INVALID_ARGUMENT,
    }
}

/// The message for the last non-OK status returned on the calling thread
/// ("" if none). The string is owned by the library and stays valid until
/// the next call into the library on this thread. Never blocks.
#[no_mangle]
pub extern "C" fn cache_last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}
