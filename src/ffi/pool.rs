//! `cache_pool`: one node of a cluster, behind a handle.

use std::ffi::{c_char, CString};
use std::sync::{Arc, Weak};

use crate::engine::reclaim;
use once_cell::sync::Lazy;

use crate::engine::{Group, PeerPicker};
use crate::peers::{Pool, PoolError};

use super::boundary::{guard, require, str_arg};
use super::handles::HandleTable;
use super::pool_options::{cache_pool_options, options_from_env, with_opts};
use super::status::*;

/// A node of a groupcache cluster: serves the peer protocol and knows the
/// other nodes. Opaque; get one from cache_pool_new, give it back with
/// cache_pool_free.
pub struct cache_pool {
    _private: [u8; 0],
}

pub(crate) struct PoolObj {
    pool: Arc<Pool>,
    url: CString,
}

static POOLS: Lazy<&'static HandleTable<PoolObj>> = Lazy::new(HandleTable::leaked);

pub(crate) fn from_pool_error(e: PoolError) -> cache_status {
    let status = match &e {
        PoolError::InvalidArgument(_) => CACHE_INVALID_ARGUMENT,
        PoolError::AlreadyExists(_) => CACHE_ALREADY_EXISTS,
        PoolError::Io(_) => CACHE_IO,
        PoolError::Closed => CACHE_CLOSED,
    };
    fail(status, e.to_string())
}

fn closed() -> cache_status {
    fail(CACHE_CLOSED, "the pool was freed (or this is not a pool handle)")
}

/// A cache's registration in a pool; leaving frees its name there.
pub(crate) struct Membership {
    pool: Weak<Pool>,
    group: Arc<Group>,
}

impl Membership {
    pub(crate) fn leave(&self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.unregister_group(&self.group);
        }
    }
}

/// Registers `group` with the pool behind `p` (for cache_new).
pub(crate) fn join(p: *mut cache_pool, group: &Arc<Group>) -> Result<Membership, cache_status> {
    let pin = reclaim::pin();
    let obj = POOLS.get(p as usize, &pin).ok_or_else(closed)?;
    obj.pool.register(group.clone()).map_err(from_pool_error)?;
    Ok(Membership {
        pool: Arc::downgrade(&obj.pool),
        group: group.clone(),
    })
}

/// Creates a node: binds `listen_addr` at once (e.g. "127.0.0.1:8000";
/// "127.0.0.1:0" picks a free port) and serves the peer protocol there on
/// background threads. `self_url` is how the other nodes reach this one;
/// NULL means `http://<bound address>` (`https://<bound address>` with
/// TLS). Caches join it through cache_new.
///
/// Without a secret (cache_pool_options_set_secret) the port serves cache
/// contents to anyone who can reach it: bind to loopback or a private
/// network.
///
/// Options come from the environment (see cache_pool_options_new); use
/// cache_pool_new_with_options to set them in code.
///
/// fork(): create pools (and caches) in each worker after the fork. A pool
/// created before it is, in the child, a client-only node: it sends to its
/// peers on connections of its own (with TLS, the child reads the
/// certificate files again), serves nothing (the parent keeps the
/// port; the child's copy of the listening socket is closed), and treats
/// its own URL as a peer, so keys the parent owns are fetched from the
/// parent. Every call on it works in the child, cache_pool_free included;
/// the parent keeps serving. A child never gets another process's value.
///
/// On CACHE_OK `*out` receives the handle. Returns CACHE_OK,
/// CACHE_INVALID_ARGUMENT (NULL listen_addr or out, an address or URL that
/// does not parse, a malformed GROUPCACHE_* variable), CACHE_IO (the
/// address cannot be bound). Does not block beyond binding, except with
/// peers_from: then it waits for the first DNS answer, at most 5 s (past
/// that the node starts with no peers and keeps asking).
///
/// # Safety
/// `listen_addr` and `self_url` are NULL or NUL-terminated strings;
/// `out` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_new(
    listen_addr: *const c_char,
    self_url: *const c_char,
    out: *mut *mut cache_pool,
) -> cache_status {
    // SAFETY: forwarded with the caller's promises.
    unsafe { cache_pool_new_with_options(listen_addr, self_url, std::ptr::null(), out) }
}

/// cache_pool_new with explicit options (from cache_pool_options_new; NULL
/// means the defaults and environment). The options are copied: free them
/// whenever. Same statuses as cache_pool_new, plus CACHE_INVALID_ARGUMENT
/// for freed options and for options the pool rejects (e.g. a base path
/// without '/' at both ends).
///
/// # Safety
/// As cache_pool_new; `options` is any value (handles are checked).
#[no_mangle]
pub unsafe extern "C" fn cache_pool_new_with_options(
    listen_addr: *const c_char,
    self_url: *const c_char,
    options: *const cache_pool_options,
    out: *mut *mut cache_pool,
) -> cache_status {
    guard(|| {
        require!(out);
        // SAFETY: the caller promises NUL-terminated strings.
        let listen = match unsafe { str_arg(listen_addr, "listen_addr") } {
            Ok(s) => s,
            Err(s) => return s,
        };
        let self_url = if self_url.is_null() {
            None
        } else {
            // SAFETY: as above.
            match unsafe { str_arg(self_url, "self_url") } {
                Ok(s) => Some(s),
                Err(s) => return s,
            }
        };
        let opts = if options.is_null() {
            match options_from_env() {
                Ok(o) => o,
                Err(m) => return fail(CACHE_INVALID_ARGUMENT, m),
            }
        } else {
            let mut copy = None;
            let s = with_opts(options, |o| {
                copy = Some(o.clone());
                CACHE_OK
            });
            match copy {
                Some(o) => o,
                None => return s,
            }
        };
        let pool = match Pool::new(listen, self_url, opts) {
            Ok(p) => p,
            Err(e) => return from_pool_error(e),
        };
        let url = CString::new(pool.url()).unwrap_or_default();
        match POOLS.insert(Arc::new(PoolObj { pool, url })) {
            Some(h) => {
                // SAFETY: out is non-NULL (checked) and writable (promise).
                unsafe { *out = h as *mut cache_pool };
                CACHE_OK
            }
            None => fail(CACHE_INVALID_ARGUMENT, "too many live pools"),
        }
    })
}

/// This node's URL, as given or derived at cache_pool_new. The string
/// belongs to the pool and stays valid until cache_pool_free. NULL for
/// NULL or a freed pool. Never blocks.
#[no_mangle]
pub extern "C" fn cache_pool_url(p: *const cache_pool) -> *const c_char {
    guard(|| {
        let pin = reclaim::pin();
        match POOLS.get(p as usize, &pin) {
            // The CString lives in the PoolObj, which cache_pool_free drops
            // only through the epoch, after which the caller may not use it.
            Some(obj) => obj.url.as_ptr(),
            None => std::ptr::null(),
        }
    })
}

/// Sets the whole cluster, this node included (as Go's HTTPPool.Set):
/// `urls` is an array of `n` base URLs such as "http://10.0.0.1:8000". A
/// node missing from its own list owns no keys (a client only). May be
/// called at any time; requests in flight finish with the membership they
/// started with. Every node must be given the same list.
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL p, NULL urls with n > 0,
/// a NULL or malformed URL, a pool whose peers come from DNS
/// (peers_from): nothing is changed then), CACHE_CLOSED. Never blocks on
/// the network.
///
/// # Safety
/// `urls` is NULL (with `n` 0) or points to `n` readable pointers, each
/// NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_set_peers(
    p: *mut cache_pool,
    urls: *const *const c_char,
    n: usize,
) -> cache_status {
    guard(|| {
        require!(p);
        if urls.is_null() && n != 0 {
            return fail(CACHE_INVALID_ARGUMENT, "`urls` is NULL but `n` is not 0");
        }
        if n > 1 << 20 {
            return fail(
                CACHE_INVALID_ARGUMENT,
                format!("{n} peers is not a plausible cluster"),
            );
        }
        let mut list = Vec::with_capacity(n);
        for i in 0..n {
            // SAFETY: urls has n readable pointers (the caller's promise).
            let u = unsafe { *urls.add(i) };
            // SAFETY: each a NUL-terminated string (promise); NULL checked.
            match unsafe { str_arg(u, "urls[i]") } {
                Ok(s) => list.push(s.to_owned()),
                Err(_) => return fail(CACHE_INVALID_ARGUMENT, format!("urls[{i}] is NULL or not UTF-8")),
            }
        }
        let pin = reclaim::pin();
        let Some(obj) = POOLS.get(p as usize, &pin) else {
            return closed();
        };
        match obj.pool.set_peers(&list) {
            Ok(()) => CACHE_OK,
            Err(e) => from_pool_error(e),
        }
    })
}

/// Writes the membership (the URLs last given to cache_pool_set_peers, or
/// found by peers_from, sorted), one per line, each followed by '\n', then
/// a NUL, into `buf` (`cap` bytes; `buf` may be NULL when `cap` is 0).
/// `*out_len` receives the text's length without the NUL; on
/// CACHE_BUFFER_TOO_SMALL it is the length needed (add one for the NUL; the
/// membership may change before the next call). For operators and tests:
/// "which nodes does this node see?"
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL p or out_len, NULL buf
/// with a non-zero cap), CACHE_CLOSED, CACHE_BUFFER_TOO_SMALL. Never
/// blocks.
///
/// # Safety
/// `buf` points to `cap` writable bytes (or is NULL with `cap` 0);
/// `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_peers(
    p: *const cache_pool,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> cache_status {
    guard(|| {
        require!(p, out_len);
        if buf.is_null() && cap != 0 {
            return fail(CACHE_INVALID_ARGUMENT, "`buf` is NULL but `cap` is not 0");
        }
        let pin = reclaim::pin();
        let Some(obj) = POOLS.get(p as usize, &pin) else {
            return closed();
        };
        if obj.pool.is_closed() {
            return fail(CACHE_CLOSED, "the pool is closed");
        }
        let text: String = obj.pool.peers().iter().map(|u| format!("{u}\n")).collect();
        // SAFETY: out_len non-NULL (checked); buf/cap/out_len as promised.
        unsafe { write_c_str(&text, "list", buf, cap, out_len) }
    })
}

/// Writes the URL of the node that owns `key` (binary-safe, `key_len`
/// bytes) by this node's current membership into `buf` (`cap` bytes, NUL
/// included; `buf` may be NULL when `cap` is 0). This node's own URL when
/// it owns the key or has no peers. `*out_len` receives the URL's length
/// without the NUL; on CACHE_BUFFER_TOO_SMALL it is the length needed (add
/// one for the NUL). For operators and tests: "which node loads this key?"
///
/// Returns CACHE_OK, CACHE_INVALID_ARGUMENT (NULL p or out_len, NULL key
/// with a non-zero length, NULL buf with a non-zero cap), CACHE_CLOSED,
/// CACHE_BUFFER_TOO_SMALL. Never blocks.
///
/// # Safety
/// `key` points to `key_len` readable bytes (or is NULL with `key_len` 0);
/// `buf` points to `cap` writable bytes (or is NULL with `cap` 0);
/// `out_len` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_owner(
    p: *const cache_pool,
    key: *const u8,
    key_len: usize,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> cache_status {
    guard(|| {
        require!(p, out_len);
        if buf.is_null() && cap != 0 {
            return fail(CACHE_INVALID_ARGUMENT, "`buf` is NULL but `cap` is not 0");
        }
        // SAFETY: the caller promises key_len readable bytes at key.
        let key = match unsafe { super::boundary::bytes(key, key_len, "key") } {
            Ok(k) => k,
            Err(s) => return s,
        };
        let pin = reclaim::pin();
        let Some(obj) = POOLS.get(p as usize, &pin) else {
            return closed();
        };
        let owner = match obj.pool.pick_peer(key) {
            Some(peer) => peer.url().to_owned(),
            None => obj.pool.url().to_owned(),
        };
        // SAFETY: out_len non-NULL (checked); buf/cap/out_len as promised.
        unsafe { write_c_str(&owner, "URL", buf, cap, out_len) }
    })
}

/// Copies `text` and a NUL into `buf` (`cap` bytes) and its length into
/// `*out_len`; CACHE_BUFFER_TOO_SMALL (with `*out_len` still set) when it
/// does not fit. `what` names it in the error.
///
/// # Safety
/// `out_len` is non-NULL and writable; `buf` points to `cap` writable
/// bytes (or is NULL with `cap` 0).
unsafe fn write_c_str(
    text: &str,
    what: &str,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> cache_status {
    // SAFETY: the caller's promise.
    unsafe { *out_len = text.len() };
    if text.len() >= cap {
        return fail(
            CACHE_BUFFER_TOO_SMALL,
            format!("the {what} needs {} bytes with its NUL", text.len() + 1),
        );
    }
    // SAFETY: buf has cap > text.len() writable bytes (the caller's promise).
    unsafe {
        std::ptr::copy_nonoverlapping(text.as_ptr(), buf as *mut u8, text.len());
        *buf.add(text.len()) = 0;
    }
    CACHE_OK
}

/// Stops serving and frees the pool. Its caches keep working as
/// process-local caches until they are freed. Safe while other threads are
/// inside calls on it or on its caches; a freed or double-freed handle
/// gets CACHE_CLOSED later, never memory corruption. NULL is a no-op. May
/// block up to a second while requests being served finish, after the
/// drain when one is set (cache_pool_options_set_drain_ms), during which
/// it blocks and the node serves with `GET /healthz` answering 503.
#[no_mangle]
pub extern "C" fn cache_pool_free(p: *mut cache_pool) {
    guard(|| {
        if p.is_null() {
            return;
        }
        let obj = POOLS.remove(p as usize, usize::MAX);
        if let Some(obj) = obj {
            obj.pool.close();
        }
    })
}
