//! `cache_sink` and the C getter: how C code fills a miss.

use std::cell::RefCell;
use std::ffi::{c_char, c_void};

use crate::engine::{BatchGetter, BatchSink, Error, Getter, Sink};

use super::boundary::{bytes, guard, require, str_arg};
use super::status::*;

/// Where a getter puts the value it loaded. Valid only during the getter
/// call it was passed to, on that thread.
pub struct cache_sink {
    _private: [u8; 0],
}

/// Called on a miss, on the thread that needs the value (a caller of
/// cache_get, or a server thread answering a peer). Return CACHE_OK after
/// cache_sink_set, CACHE_NOT_FOUND if the key does not exist; any other
/// value is a failure and the caller gets CACHE_LOADER_FAILED. Neither
/// failures nor "not found" are cached. `key` is valid only during the call.
/// May be called from several threads at once, for different keys (and,
/// after a load timeout abandoned a stuck call, for the same key).
///
/// A getter must return normally. Nothing may unwind or jump out of it
/// across the library's frames: no C++ exception, no Lua error (lua_error
/// is a longjmp), no longjmp, no Go panic, no Rust panic, no
/// pthread_exit or thread cancellation. Catch everything inside the getter
/// and turn it into a status (cache_sink_fail, then return
/// CACHE_LOADER_FAILED). If one does escape, the behaviour is undefined:
/// the process may abort, or the library's frames are skipped without
/// their cleanup, leaving its locks and the key's in-flight load held:
/// other gets of that key then wait forever (or, with a load timeout, until
/// it), cache_getters_stop waits for a getter that never returns, and
/// memory leaks. The Python package's loaders already catch every
/// exception.
#[allow(non_camel_case_types)]
pub type cache_getter_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        key: *const u8,
        key_len: usize,
        sink: *mut cache_sink,
    ) -> i32,
>;

thread_local! {
    /// Sinks of the getter calls running on this thread (innermost last):
    /// a sink pointer is honoured only while its call runs.
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn with_active_sink(s: *mut cache_sink, f: impl FnOnce(&mut Sink) -> cache_status) -> cache_status {
    let active = ACTIVE.with(|a| a.borrow().contains(&(s as usize)));
    if !active {
        return fail(
            CACHE_INVALID_ARGUMENT,
            "this sink is not the one of a getter call running on this thread",
        );
    }
    // SAFETY: s is the address of the Sink of a getter call still running
    // on this thread (checked above), borrowed by nothing else meanwhile.
    f(unsafe { &mut *(s as *mut Sink) })
}

/// Stores the loaded value in the sink; the bytes are copied. `ttl_ms <= 0`:
/// no expiry. A second call replaces the first. Returns CACHE_OK, or
/// CACHE_INVALID_ARGUMENT (NULL sink, NULL value with a non-zero length, a
/// sink that is not the one of a getter call running on this thread, a
/// value over 4 GiB). Never blocks.
///
/// # Safety
/// `value` points to `value_len` readable bytes (or is NULL with
/// `value_len` 0). `sink` is any value (it is checked).
#[no_mangle]
pub unsafe extern "C" fn cache_sink_set(
    sink: *mut cache_sink,
    value: *const u8,
    value_len: usize,
    ttl_ms: i64,
) -> cache_status {
    guard(|| {
        require!(sink);
        // SAFETY: the caller promises value_len readable bytes at value.
        let v = match unsafe { bytes(value, value_len, "value") } {
            Ok(v) => v,
            Err(s) => return s,
        };
        with_active_sink(sink, |s| match s.set(v, ttl_ms) {
            Ok(()) => CACHE_OK,
            Err(e) => from_error(e),
        })
    })
}

/// Records why the getter is failing; the caller of cache_get gets
/// CACHE_LOADER_FAILED with this message from cache_last_error(). The
/// message is copied; NULL is CACHE_INVALID_ARGUMENT. A getter that calls
/// this fails even if it returns CACHE_OK. Never blocks.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string. `sink` is any value (it
/// is checked).
#[no_mangle]
pub unsafe extern "C" fn cache_sink_fail(sink: *mut cache_sink, message: *const c_char) -> cache_status {
    guard(|| {
        require!(sink);
        // SAFETY: the caller promises a NUL-terminated string.
        let msg = match unsafe { str_arg(message, "message") } {
            Ok(m) => m.to_owned(),
            Err(_) if !message.is_null() => {
                // Not UTF-8: keep what can be read rather than lose it.
                // SAFETY: non-NULL and NUL-terminated by the caller's promise.
                unsafe { std::ffi::CStr::from_ptr(message) }
                    .to_string_lossy()
                    .into_owned()
            }
            Err(s) => return s,
        };
        with_active_sink(sink, |s| {
            s.fail(&msg);
            CACHE_OK
        })
    })
}

/// Set by cache_getters_stop: getters are no longer called.
static GETTERS_STOPPED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
/// Getter calls running now, on any thread.
static GETTERS_RUNNING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// For a language runtime that is shutting down: from now on no getter is
/// called (a miss fails with CACHE_LOADER_FAILED, "shutting down"), and
/// this waits up to `timeout_ms` for getter calls already running to
/// return. Returns CACHE_OK when none is left, CACHE_TIMEOUT otherwise.
/// Irreversible, process-wide. Blocks (call it without holding locks your
/// getters need, e.g. with Python's GIL released).
///
/// Why: CPython ends a daemon thread that tries to re-enter Python during
/// interpreter shutdown with pthread_exit, a forced unwind that must not
/// cross this library's frames (it would abort the process). Stopping
/// getters first means no thread re-enters Python from inside a call.
#[no_mangle]
pub extern "C" fn cache_getters_stop(timeout_ms: u32) -> cache_status {
    use std::sync::atomic::Ordering;
    guard(|| {
        GETTERS_STOPPED.store(true, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64);
        while GETTERS_RUNNING.load(Ordering::SeqCst) > 0 {
            if std::time::Instant::now() >= deadline {
                return fail(CACHE_TIMEOUT, "getters were still running");
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        CACHE_OK
    })
}

/// A C getter and its user data, as an engine Getter.
pub(crate) struct CGetter {
    f: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut cache_sink) -> i32,
    user_data: *mut c_void,
}

// SAFETY: the header documents that the getter may be called from any
// thread, with the same user_data; making that safe is the caller's part.
unsafe impl Send for CGetter {}
// SAFETY: as for Send.
unsafe impl Sync for CGetter {}

impl CGetter {
    pub(crate) fn new(f: cache_getter_fn, user_data: *mut c_void) -> Option<CGetter> {
        f.map(|f| CGetter { f, user_data })
    }
}

impl Getter for CGetter {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        // Counted before the check, so cache_getters_stop either sees this
        // call running or this call sees the stop (both SeqCst).
        GETTERS_RUNNING.fetch_add(1, Ordering::SeqCst);
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                GETTERS_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _leave = Leave;
        if GETTERS_STOPPED.load(Ordering::SeqCst) {
            return Err(Error::LoaderFailed(
                "the process is shutting down: getters are stopped".into(),
            ));
        }
        let addr = sink as *mut Sink as usize;
        ACTIVE.with(|a| a.borrow_mut().push(addr));
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                let _ = ACTIVE.try_with(|a| a.borrow_mut().pop());
            }
        }
        let _pop = Pop;
        // SAFETY: calling the user's getter with the documented arguments;
        // key is valid for the call, the sink pointer only while ACTIVE
        // lists it.
        let status = unsafe { (self.f)(self.user_data, key.as_ptr(), key.len(), addr as *mut cache_sink) };
        // The getter returns an int32_t (a C enum's width is the compiler's
        // choice, so the callback type cannot be the enum itself).
        const OK: i32 = CACHE_OK as i32;
        const NOT_FOUND: i32 = CACHE_NOT_FOUND as i32;
        match status {
            OK => Ok(()),
            NOT_FOUND => Err(Error::NotFound),
            other => Err(Error::LoaderFailed(format!("the getter returned status {other}"))),
        }
    }
}

/// Where a batch getter puts the values it loaded, one slot per key by
/// index. Valid only during the batch getter call it was passed to, on
/// that thread.
pub struct cache_batch_sink {
    _private: [u8; 0],
}

/// Called with several missing keys at once (a dataloader's batch
/// function: one `WHERE id IN (...)` for all of them), on a thread that
/// needs them: a caller of cache_get_many or cache_get, a thread of the
/// library's running part of such a batch, or a server thread answering
/// peers. `keys[i]` (`key_lens[i]` bytes, binary-safe) is key number `i`
/// of `n` (1 to the chunk size, see cache_options_set_batch_chunk_keys);
/// the keys are distinct, and no other call loads them meanwhile. The
/// arrays and the keys are valid only during the call.
///
/// For each key it finds, call cache_batch_sink_set(sink, i, ...); for a
/// key that failed alone, cache_batch_sink_fail(sink, i, message); a key
/// left unset does not exist (CACHE_NOT_FOUND for its callers). Return
/// CACHE_OK; CACHE_NOT_FOUND means none of the keys exists; any other value
/// fails every key of the call (CACHE_LOADER_FAILED). Neither failures nor
/// "not found" are cached. May be called from several threads at once,
/// for different keys.
///
/// It must return normally, exactly as cache_getter_fn describes: nothing
/// may unwind or jump out of it across the library's frames (no C++
/// exception, longjmp, Go or Rust panic, pthread_exit, thread
/// cancellation); otherwise the behaviour is undefined and every key of
/// the call may stay in flight forever.
#[allow(non_camel_case_types)]
pub type cache_batch_getter_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        keys: *const *const u8,
        key_lens: *const usize,
        n: usize,
        sink: *mut cache_batch_sink,
    ) -> i32,
>;

thread_local! {
    /// Batch sinks of the batch getter calls running on this thread.
    static ACTIVE_BATCH: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

fn with_active_batch_sink(
    s: *mut cache_batch_sink,
    f: impl FnOnce(&mut BatchSink) -> Result<(), Error>,
) -> cache_status {
    let active = ACTIVE_BATCH.with(|a| a.borrow().contains(&(s as usize)));
    if !active {
        return fail(
            CACHE_INVALID_ARGUMENT,
            "this sink is not the one of a batch getter call running on this thread",
        );
    }
    // SAFETY: s is the address of the BatchSink of a batch getter call
    // still running on this thread (checked above), borrowed by nothing
    // else meanwhile.
    match f(unsafe { &mut *(s as *mut BatchSink) }) {
        Ok(()) => CACHE_OK,
        Err(e) => from_error(e),
    }
}

/// Stores the value of key number `index` of the batch getter call; the
/// bytes are copied. `ttl_ms <= 0`: no expiry. A second call for the same
/// index replaces the first; a key already failed with
/// cache_batch_sink_fail stays failed. Returns CACHE_OK, or
/// CACHE_INVALID_ARGUMENT (NULL sink, NULL value with a non-zero length,
/// an index not below the call's `n`, a sink that is not the one of a batch
/// getter call running on this thread, a value over 4 GiB). Never blocks.
///
/// # Safety
/// `value` points to `value_len` readable bytes (or is NULL with
/// `value_len` 0). `sink` is any value (it is checked).
#[no_mangle]
pub unsafe extern "C" fn cache_batch_sink_set(
    sink: *mut cache_batch_sink,
    index: usize,
    value: *const u8,
    value_len: usize,
    ttl_ms: i64,
) -> cache_status {
    guard(|| {
        require!(sink);
        // SAFETY: the caller promises value_len readable bytes at value.
        let v = match unsafe { bytes(value, value_len, "value") } {
            Ok(v) => v,
            Err(s) => return s,
        };
        with_active_batch_sink(sink, |s| s.set(index, v, ttl_ms))
    })
}

/// Fails key number `index` of the batch getter call alone: its callers
/// get CACHE_LOADER_FAILED with this message (copied; invalid UTF-8 is
/// replaced). The key fails even if a value was set for it. Returns
/// CACHE_OK, or CACHE_INVALID_ARGUMENT (NULL sink or message, an index
/// not below `n`, a sink not of a call running on this thread). Never
/// blocks.
///
/// # Safety
/// `message` is NULL or a NUL-terminated string. `sink` is any value (it
/// is checked).
#[no_mangle]
pub unsafe extern "C" fn cache_batch_sink_fail(
    sink: *mut cache_batch_sink,
    index: usize,
    message: *const c_char,
) -> cache_status {
    guard(|| {
        require!(sink, message);
        // SAFETY: non-NULL (checked) and NUL-terminated by the caller's
        // promise.
        let msg = unsafe { std::ffi::CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned();
        with_active_batch_sink(sink, |s| s.fail(index, &msg))
    })
}

/// A C batch getter and its user data, as an engine BatchGetter.
pub(crate) struct CBatchGetter {
    f: unsafe extern "C" fn(*mut c_void, *const *const u8, *const usize, usize, *mut cache_batch_sink) -> i32,
    user_data: *mut c_void,
}

// SAFETY: the header documents that the batch getter may be called from
// any thread, with the same user_data; making that safe is the caller's
// part.
unsafe impl Send for CBatchGetter {}
// SAFETY: as for Send.
unsafe impl Sync for CBatchGetter {}

impl CBatchGetter {
    pub(crate) fn new(f: cache_batch_getter_fn, user_data: *mut c_void) -> Option<CBatchGetter> {
        f.map(|f| CBatchGetter { f, user_data })
    }
}

impl BatchGetter for CBatchGetter {
    fn get_many(&self, keys: &[&[u8]], sink: &mut BatchSink) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        // As CGetter::get: counted before the check (cache_getters_stop).
        GETTERS_RUNNING.fetch_add(1, Ordering::SeqCst);
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                GETTERS_RUNNING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _leave = Leave;
        if GETTERS_STOPPED.load(Ordering::SeqCst) {
            return Err(Error::LoaderFailed(
                "the process is shutting down: getters are stopped".into(),
            ));
        }
        let ptrs: Vec<*const u8> = keys.iter().map(|k| k.as_ptr()).collect();
        let lens: Vec<usize> = keys.iter().map(|k| k.len()).collect();
        let addr = sink as *mut BatchSink as usize;
        ACTIVE_BATCH.with(|a| a.borrow_mut().push(addr));
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                let _ = ACTIVE_BATCH.try_with(|a| a.borrow_mut().pop());
            }
        }
        let _pop = Pop;
        // SAFETY: calling the user's batch getter with the documented
        // arguments: `n` key pointers and lengths, valid for the call (the
        // keys are borrowed for it); the sink pointer is honoured only
        // while ACTIVE_BATCH lists it.
        let status = unsafe {
            (self.f)(
                self.user_data,
                ptrs.as_ptr(),
                lens.as_ptr(),
                keys.len(),
                addr as *mut cache_batch_sink,
            )
        };
        const OK: i32 = CACHE_OK as i32;
        const NOT_FOUND: i32 = CACHE_NOT_FOUND as i32;
        match status {
            OK => Ok(()),
            NOT_FOUND => Err(Error::NotFound),
            other => Err(Error::LoaderFailed(format!(
                "the batch getter returned status {other}"
            ))),
        }
    }
}
