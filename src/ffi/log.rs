//! `cache_log_set`: the library's log messages, handed to a C callback.
//!
//! The library logs through the `log` crate's macros at the few places worth
//! an operator's attention (a peer that fails, a server error, a fallback to
//! a local load), never on the hit path. This module is the one logger
//! behind those macros: it forwards each message to the callback installed
//! with cache_log_set.
//!
//! Levels are filtered by `log`'s global maximum level, which every macro
//! checks before it builds or formats anything: a level nobody listens to
//! costs one relaxed atomic load. With no callback the maximum is "off".
//!
//! The library is a cdylib with its own copy of `log`, so this logger never
//! meets an application's. (A Rust program that links the crate as an rlib
//! and installs its own `log` logger gets CACHE_ALREADY_EXISTS here; its
//! logger already receives these messages.)

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_void};
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{OnceLock, RwLock};

use ::log::{Level, LevelFilter, Log, Metadata, Record};

use super::boundary::guard;
use super::status::*;

/// cache_log_set's `min_level`: no messages.
pub const CACHE_LOG_OFF: i32 = 0;
/// A bug or a crash caught: a getter or the engine panicked.
pub const CACHE_LOG_ERROR: i32 = 1;
/// Something failed: a peer could not be reached or answered badly (a get
/// then loads the key locally; a set or remove reports CACHE_PEER_FAILED),
/// or this node's server answered a peer with an error.
pub const CACHE_LOG_WARN: i32 = 2;
/// Rare events worth a line in a log: a pool started serving or stopped.
pub const CACHE_LOG_INFO: i32 = 3;
/// Details for debugging, e.g. a request the server rejected as malformed
/// or one for a cache this node does not have.
pub const CACHE_LOG_DEBUG: i32 = 4;
/// The most verbose level, for per-request detail.
pub const CACHE_LOG_TRACE: i32 = 5;

/// Receives one log message. `level` is CACHE_LOG_ERROR .. CACHE_LOG_TRACE;
/// `target` names the part of the library that logged (e.g.
/// "groupcache::peers::server"); `message` is one line of UTF-8 without a
/// trailing newline. Both strings are NUL-terminated and valid only during
/// the call: copy them to keep them.
///
/// Called on library threads (server threads, and the threads of callers
/// of cache_get and friends), possibly from several at once: it must be
/// thread-safe. It must not unwind (no C++ exception, no longjmp) and
/// should return quickly. Calls into this library from inside it are
/// allowed, but whatever they log is dropped, and cache_log_set then fails
/// (use cache_log_set_level).
#[allow(non_camel_case_types)]
pub type cache_log_fn = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: i32, target: *const c_char, message: *const c_char),
>;

struct Callback {
    f: unsafe extern "C" fn(*mut c_void, i32, *const c_char, *const c_char),
    user_data: *mut c_void,
}

// SAFETY: the pointer is the C caller's, handed back to its callback, which
// cache_log_set documents must be thread-safe.
unsafe impl Send for Callback {}
// SAFETY: as for Send.
unsafe impl Sync for Callback {}

/// The installed callback. Held for reading while it runs, so that
/// cache_log_set (a writer) returns only once no thread is inside the
/// previous one.
static CALLBACK: RwLock<Option<Callback>> = RwLock::new(None);

thread_local! {
    /// Set while this thread runs the callback: what it logs is dropped
    /// (no recursion, no re-entrant read lock).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
    /// The formatting buffer, reused.
    static BUF: RefCell<String> = const { RefCell::new(String::new()) };
}

fn in_callback() -> bool {
    IN_CALLBACK.try_with(|c| c.get()).unwrap_or(false)
}

fn filter(min_level: i32) -> LevelFilter {
    match min_level {
        CACHE_LOG_ERROR => LevelFilter::Error,
        CACHE_LOG_WARN => LevelFilter::Warn,
        CACHE_LOG_INFO => LevelFilter::Info,
        CACHE_LOG_DEBUG => LevelFilter::Debug,
        CACHE_LOG_TRACE => LevelFilter::Trace,
        _ => LevelFilter::Off,
    }
}

fn c_level(level: Level) -> i32 {
    match level {
        Level::Error => CACHE_LOG_ERROR,
        Level::Warn => CACHE_LOG_WARN,
        Level::Info => CACHE_LOG_INFO,
        Level::Debug => CACHE_LOG_DEBUG,
        Level::Trace => CACHE_LOG_TRACE,
    }
}

/// Appends `s` with NUL, CR and LF escaped, then a NUL terminator.
fn push_c_line(buf: &mut String, s: &str) {
    for ch in s.chars() {
        match ch {
            '\0' => buf.push_str("\\0"),
            '\n' => buf.push_str("\\n"),
            '\r' => buf.push_str("\\r"),
            c => buf.push(c),
        }
    }
    buf.push('\0');
}

struct Forward;

impl Log for Forward {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= ::log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) || in_callback() {
            return;
        }
        // Never let a panic (a Display impl, a poisoned lock) out of a
        // log call: logging must not change what the library does.
        let _ = catch_unwind(AssertUnwindSafe(|| forward(record)));
    }

    fn flush(&self) {}
}

fn forward(record: &Record<'_>) {
    let guard = CALLBACK.read().unwrap_or_else(|p| p.into_inner());
    let Some(cb) = guard.as_ref() else { return };
    let emit = |buf: &mut String| {
        buf.clear();
        // target, NUL, message, NUL: one buffer, two C strings.
        push_c_line(buf, record.target());
        let split = buf.len();
        let mut msg = String::new();
        let text = match record.args().as_str() {
            Some(s) => s,
            None => {
                let _ = write!(msg, "{}", record.args());
                &msg
            }
        };
        push_c_line(buf, text);
        let base = buf.as_ptr() as *const c_char;
        let _reset = InCallback::enter();
        // SAFETY: both pointers are NUL-terminated and live until the call
        // returns; the callback's contract is the C caller's promise.
        unsafe { (cb.f)(cb.user_data, c_level(record.level()), base, base.add(split)) };
    };
    // A thread being torn down has no buffer left: use a fresh one.
    let done = BUF.try_with(|b| match b.try_borrow_mut() {
        Ok(mut buf) => {
            emit(&mut buf);
            true
        }
        Err(_) => false,
    });
    if done != Ok(true) {
        emit(&mut String::new());
    }
}

/// Marks this thread as inside the callback until dropped (also on unwind).
struct InCallback;

impl InCallback {
    fn enter() -> InCallback {
        let _ = IN_CALLBACK.try_with(|c| c.set(true));
        InCallback
    }
}

impl Drop for InCallback {
    fn drop(&mut self) {
        let _ = IN_CALLBACK.try_with(|c| c.set(false));
    }
}

static LOGGER: Forward = Forward;
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Installs `Forward` as `log`'s logger, once. False if another one was.
fn install_logger() -> bool {
    *INSTALLED.get_or_init(|| ::log::set_logger(&LOGGER).is_ok())
}

/// Sends the library's log messages of `min_level` and more severe
/// (CACHE_LOG_ERROR = 1 .. CACHE_LOG_TRACE = 5; CACHE_LOG_OFF = 0: none) to
/// `log_fn`, with `user_data` as its first argument; NULL `log_fn` removes the
/// callback. Replaces any previous callback. Nothing is logged by default.
///
/// See cache_log_fn for what the callback must do: it is called from
/// library threads, possibly several at once, and its strings are valid
/// only during the call. Disabled levels cost nothing: messages below
/// `min_level` are never formatted. The hit path never logs.
///
/// When this returns, no thread is inside the previous callback any more
/// and it will not be called again, so its `user_data` may be freed. (It
/// waits for calls in progress: do not call it while holding a lock that
/// the callback takes.)
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (`min_level` outside 0..5, or
/// called from inside the log callback: use cache_log_set_level there),
/// CACHE_ALREADY_EXISTS (only when the crate is linked into a Rust program
/// that installed its own `log` logger).
#[no_mangle]
pub extern "C" fn cache_log_set(
    log_fn: cache_log_fn,
    user_data: *mut c_void,
    min_level: i32,
) -> cache_status {
    guard(|| {
        if !(CACHE_LOG_OFF..=CACHE_LOG_TRACE).contains(&min_level) {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("min_level {min_level} is not in {CACHE_LOG_OFF}..{CACHE_LOG_TRACE}"),
            );
        }
        if in_callback() {
            return fail(
                CACHE_INVALID_ARGUMENT,
                "cache_log_set called from inside the log callback (it would wait for itself); \
                 use cache_log_set_level",
            );
        }
        if log_fn.is_some() && !install_logger() {
            return fail(
                CACHE_ALREADY_EXISTS,
                "another `log` logger is installed in this program",
            );
        }
        // Off first: no new call starts while the callback changes.
        ::log::set_max_level(LevelFilter::Off);
        let mut slot = CALLBACK.write().unwrap_or_else(|p| p.into_inner());
        *slot = log_fn.map(|f| Callback { f, user_data });
        if slot.is_some() {
            ::log::set_max_level(filter(min_level));
        }
        CACHE_OK
    })
}

/// Changes the minimum level of the installed callback (0 .. 5, as in
/// cache_log_set) without replacing it. Never blocks; may be called from
/// inside the callback, e.g. to lower the level once the receiver no longer
/// wants some messages. Without a callback it does nothing. Returns
/// CACHE_OK or CACHE_INVALID_ARGUMENT (`min_level` outside 0..5).
#[no_mangle]
pub extern "C" fn cache_log_set_level(min_level: i32) -> cache_status {
    guard(|| {
        if !(CACHE_LOG_OFF..=CACHE_LOG_TRACE).contains(&min_level) {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("min_level {min_level} is not in {CACHE_LOG_OFF}..{CACHE_LOG_TRACE}"),
            );
        }
        // try_read: a writer (cache_log_set) in progress sets the level
        // itself; blocking here could deadlock inside the callback.
        if let Ok(slot) = CALLBACK.try_read() {
            if slot.is_some() {
                ::log::set_max_level(filter(min_level));
            }
        }
        CACHE_OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;
    use std::sync::Mutex;

    static SEEN: Mutex<Vec<(i32, String, String)>> = Mutex::new(Vec::new());

    /// A log callback that records what it is given.
    ///
    /// # Safety
    /// `target` and `message` are NUL-terminated strings (the library's
    /// promise to a cache_log_fn).
    unsafe extern "C" fn collect(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        message: *const c_char,
    ) {
        assert_eq!(user_data as usize, 42);
        // SAFETY: the library passes NUL-terminated strings that live for
        // the call.
        let (t, m) = unsafe { (CStr::from_ptr(target), CStr::from_ptr(message)) };
        let (t, m) = (t.to_string_lossy().into_owned(), m.to_string_lossy().into_owned());
        // Re-entrant logging is dropped, re-entrant cache_log_set refused.
        ::log::error!("from inside the callback");
        assert_eq!(
            cache_log_set(None, std::ptr::null_mut(), 0),
            CACHE_INVALID_ARGUMENT
        );
        SEEN.lock().unwrap().push((level, t, m));
    }

    // One test: the logger and its level are process-wide.
    #[test]
    fn forwards_filters_and_removes() {
        assert_eq!(
            cache_log_set(Some(collect), 42 as *mut c_void, 7),
            CACHE_INVALID_ARGUMENT
        );
        assert_eq!(
            cache_log_set(Some(collect), 42 as *mut c_void, CACHE_LOG_WARN),
            CACHE_OK
        );
        ::log::warn!(target: "groupcache::test", "peer {} failed:\nline two\0", "http://x");
        ::log::info!(target: "groupcache::test", "not wanted {}", 1);
        assert_eq!(cache_log_set_level(CACHE_LOG_DEBUG), CACHE_OK);
        ::log::debug!(target: "groupcache::test", "now wanted");
        assert_eq!(
            cache_log_set(None, std::ptr::null_mut(), CACHE_LOG_TRACE),
            CACHE_OK
        );
        assert_eq!(::log::max_level(), LevelFilter::Off);
        ::log::error!(target: "groupcache::test", "after removal");
        assert_eq!(cache_log_set_level(CACHE_LOG_TRACE), CACHE_OK);
        assert_eq!(::log::max_level(), LevelFilter::Off);
        let seen: Vec<_> = SEEN
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.1 == "groupcache::test")
            .cloned()
            .collect();
        assert_eq!(
            seen,
            vec![
                (
                    CACHE_LOG_WARN,
                    "groupcache::test".into(),
                    "peer http://x failed:\\nline two\\0".into()
                ),
                (CACHE_LOG_DEBUG, "groupcache::test".into(), "now wanted".into()),
            ]
        );
    }
}
