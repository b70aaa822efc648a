//! `cache_pool_options`: the builder cache_pool_new_with_options takes
//! (defaults, then GROUPCACHE_* variables, then the setters).

use super::boundary::{guard, str_arg};
use super::handles::HandleTable;
use super::status::*;
use crate::engine::reclaim;
use crate::peers::dns::{parse_nameserver, PeerSource};
use crate::peers::pool::{MAX_REPLICAS, MIN_PEERS_REFRESH};
use crate::peers::PoolOptions;
use once_cell::sync::Lazy;
use std::ffi::c_char;
use std::sync::{Arc, Mutex};

/// Options for cache_pool_new_with_options: an opaque builder, so that new
/// options never change the ABI. Defaults, then the environment (see
/// cache_pool_options_new), then the setters. A handle like a cache or a
/// pool: never dereferenced, so a freed (or twice freed) one is refused,
/// even after a new options object took its place.
pub struct cache_pool_options {
    _private: [u8; 0],
}

/// What a `cache_pool_options` handle refers to.
pub(crate) struct OptionsObj {
    opts: Mutex<PoolOptions>,
}

static OPTIONS: Lazy<&'static HandleTable<OptionsObj>> = Lazy::new(HandleTable::leaked);

/// The environment variables a pool reads, with the option each sets.
const ENV: [(&str, &str); 22] = [
    ("GROUPCACHE_TIMEOUT_MS", "timeout_ms"),
    ("GROUPCACHE_CONNECT_TIMEOUT_MS", "connect_timeout_ms"),
    ("GROUPCACHE_REPLICAS", "replicas"),
    ("GROUPCACHE_BASE_PATH", "base_path"),
    ("GROUPCACHE_SECRET", "secret"),
    ("GROUPCACHE_MAX_CONNECTIONS", "max_connections"),
    ("GROUPCACHE_HEADER_TIMEOUT_MS", "header_timeout_ms"),
    ("GROUPCACHE_IDLE_TIMEOUT_MS", "idle_timeout_ms"),
    ("GROUPCACHE_BODY_TIMEOUT_MS", "body_timeout_ms"),
    ("GROUPCACHE_MAX_BODY_BYTES", "max_body_bytes"),
    ("GROUPCACHE_BODY_BUDGET_BYTES", "body_budget_bytes"),
    ("GROUPCACHE_MAX_HEADER_BYTES", "max_header_bytes"),
    ("GROUPCACHE_SERVER_WORKERS", "server_workers"),
    ("GROUPCACHE_DRAIN_MS", "drain_ms"),
    ("GROUPCACHE_MAX_BATCH_KEYS", "max_batch_keys"),
    // Membership from DNS.
    ("GROUPCACHE_PEERS_FROM", "peers_from"),
    ("GROUPCACHE_PEERS_REFRESH_MS", "peers_refresh_ms"),
    ("GROUPCACHE_NAMESERVER", "nameserver"),
    ("GROUPCACHE_TLS_CERT", "tls_cert"),
    ("GROUPCACHE_TLS_KEY", "tls_key"),
    ("GROUPCACHE_TLS_CA", "tls_ca"),
    ("GROUPCACHE_TLS_SERVER_NAME", "tls_server_name"),
];

/// Valid values of the server limits, as the setters and the environment
/// check them (the pool checks them again).
const MAX_CONNECTIONS: std::ops::RangeInclusive<u64> = 0..=crate::peers::pool::MAX_CONNECTIONS as u64;
const MAX_BODY_BYTES: std::ops::RangeInclusive<u64> = 1024..=usize::MAX as u64;
const BODY_BUDGET_BYTES: std::ops::RangeInclusive<u64> = 1..=usize::MAX as u64;
const MAX_HEADER_BYTES: std::ops::RangeInclusive<u64> = 8192..=crate::peers::pool::MAX_HEADER_BYTES as u64;
const SERVER_WORKERS: std::ops::RangeInclusive<u64> = 1..=crate::peers::pool::MAX_SERVER_WORKERS as u64;
const MAX_BATCH_KEYS: std::ops::RangeInclusive<u64> = 1..=crate::peers::pool::MAX_BATCH_KEYS as u64;

/// Sets one of the numeric server limits on `o`, if `v` is in range.
fn set_limit(o: &mut PoolOptions, opt: &str, v: u64) -> Result<(), String> {
    let (range, set): (std::ops::RangeInclusive<u64>, fn(&mut PoolOptions, u64)) = match opt {
        "max_connections" => (MAX_CONNECTIONS, |o, v| o.max_connections = v as usize),
        "max_body_bytes" => (MAX_BODY_BYTES, |o, v| o.max_body_bytes = v as usize),
        "body_budget_bytes" => (BODY_BUDGET_BYTES, |o, v| o.body_budget_bytes = v as usize),
        "max_header_bytes" => (MAX_HEADER_BYTES, |o, v| o.max_header_bytes = v as usize),
        "server_workers" => (SERVER_WORKERS, |o, v| o.server_workers = v as usize),
        "max_batch_keys" => (MAX_BATCH_KEYS, |o, v| o.max_batch_keys = v as usize),
        _ => return Err(format!("no option {opt}")),
    };
    if !range.contains(&v) {
        return Err(format!(
            "{opt} must be from {} to {}, not {v}",
            range.start(),
            range.end()
        ));
    }
    set(o, v);
    Ok(())
}

/// Defaults overridden by the environment; a malformed variable is an
/// error naming it, never silently ignored.
pub(super) fn options_from_env() -> Result<PoolOptions, String> {
    let mut o = PoolOptions::default();
    for (var, opt) in ENV {
        let v = match std::env::var(var) {
            Ok(v) => v,
            Err(std::env::VarError::NotPresent) => continue,
            Err(std::env::VarError::NotUnicode(_)) => return Err(format!("{var} is not valid UTF-8")),
        };
        // A whole number within [min, max], or an error naming the variable.
        let num = |min: u32, max: u32| {
            v.trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (min..=max).contains(n))
                .ok_or_else(|| format!("{var}={v:?}: {opt} must be a whole number from {min} to {max}"))
        };
        let ms = || num(1, u32::MAX).map(|n| std::time::Duration::from_millis(n as u64));
        match opt {
            "timeout_ms" => o.timeout = ms()?,
            "connect_timeout_ms" => o.connect_timeout = ms()?,
            "header_timeout_ms" => o.header_timeout = ms()?,
            "idle_timeout_ms" => o.idle_timeout = ms()?,
            "body_timeout_ms" => o.body_timeout = ms()?,
            "drain_ms" => o.drain = std::time::Duration::from_millis(num(0, u32::MAX)? as u64),
            "replicas" => o.replicas = num(1, MAX_REPLICAS as u32)? as usize,
            "secret" if v.is_empty() => return Err(format!("{var} is set but empty")),
            "secret" => o.secret = Some(v.clone()),
            "base_path" => o.base_path = v.clone(),
            "peers_from" if v.is_empty() => return Err(format!("{var} is set but empty")),
            "peers_from" => {
                PeerSource::parse(&v).map_err(|m| format!("{var}: {m}"))?;
                o.peers_from = Some(v.clone());
            }
            "peers_refresh_ms" => {
                let min = MIN_PEERS_REFRESH.as_millis() as u32;
                o.peers_refresh = std::time::Duration::from_millis(num(min, u32::MAX)? as u64);
            }
            "nameserver" => {
                o.nameserver = Some(parse_nameserver(v.trim()).map_err(|m| format!("{var}: {m}"))?)
            }
            "tls_cert" | "tls_key" | "tls_ca" if v.is_empty() => {
                return Err(format!("{var} is set but empty"))
            }
            "tls_cert" => o.tls_cert = Some(v.clone().into()),
            "tls_key" => o.tls_key = Some(v.clone().into()),
            "tls_ca" => o.tls_ca = Some(v.clone().into()),
            "tls_server_name" => {
                crate::peers::check_tls_server_name(&v).map_err(|m| format!("{var}: {m}"))?;
                o.tls_server_name = Some(v.clone());
            }
            limit => {
                let n = v
                    .trim()
                    .parse::<u64>()
                    .map_err(|_| format!("{var}={v:?} is not a whole number"))?;
                set_limit(&mut o, limit, n).map_err(|m| format!("{var}: {m}"))?;
            }
        }
    }
    Ok(o)
}

/// Runs `f` on the options behind the handle `o`.
pub(super) fn with_opts(
    o: *const cache_pool_options,
    f: impl FnOnce(&mut PoolOptions) -> cache_status,
) -> cache_status {
    if o.is_null() {
        return fail(CACHE_INVALID_ARGUMENT, "`options` is NULL");
    }
    let pin = reclaim::pin();
    match OPTIONS.get(o as usize, &pin) {
        Some(obj) => f(&mut obj.opts.lock().unwrap_or_else(|e| e.into_inner())),
        None => fail(
            CACHE_INVALID_ARGUMENT,
            "not a live cache_pool_options (freed, or not one)",
        ),
    }
}

/// New pool options: the defaults (see README.md's options table: peer
/// timeout 2000 ms, connect timeout 1000 ms, 50 replicas, base path
/// "/_groupcache/", no secret, and the server limits below), then the
/// environment: GROUPCACHE_TIMEOUT_MS, GROUPCACHE_CONNECT_TIMEOUT_MS,
/// GROUPCACHE_HEADER_TIMEOUT_MS, GROUPCACHE_IDLE_TIMEOUT_MS and
/// GROUPCACHE_BODY_TIMEOUT_MS (1 to 4294967295), GROUPCACHE_REPLICAS (1 to
/// 10000), GROUPCACHE_BASE_PATH, GROUPCACHE_SECRET (not empty),
/// GROUPCACHE_MAX_CONNECTIONS, GROUPCACHE_MAX_BODY_BYTES,
/// GROUPCACHE_BODY_BUDGET_BYTES, GROUPCACHE_MAX_HEADER_BYTES,
/// GROUPCACHE_SERVER_WORKERS, GROUPCACHE_DRAIN_MS (0 to 4294967295),
/// GROUPCACHE_MAX_BATCH_KEYS, GROUPCACHE_PEERS_FROM,
/// GROUPCACHE_PEERS_REFRESH_MS (100 to 4294967295) and
/// GROUPCACHE_NAMESERVER, GROUPCACHE_TLS_CERT, GROUPCACHE_TLS_KEY and
/// GROUPCACHE_TLS_CA (file paths, not empty), and
/// GROUPCACHE_TLS_SERVER_NAME (a DNS name). Returns NULL (with
/// cache_last_error naming the variable) if a variable is malformed or
/// out of range.
///
/// The result is a handle, not a pointer to memory: like cache and pool
/// handles it is checked at each use, so a freed one is refused
/// (CACHE_INVALID_ARGUMENT) and freeing it again does nothing, even after
/// another options object was made. Free with cache_pool_options_free.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cache_pool_options_new() -> *mut cache_pool_options {
    guard(|| match options_from_env() {
        Ok(opts) => match OPTIONS.insert(Arc::new(OptionsObj {
            opts: Mutex::new(opts),
        })) {
            Some(h) => h as *mut cache_pool_options,
            None => {
                fail(CACHE_INVALID_ARGUMENT, "too many live cache_pool_options");
                std::ptr::null_mut()
            }
        },
        Err(m) => {
            fail(CACHE_INVALID_ARGUMENT, m);
            std::ptr::null_mut()
        }
    })
}

/// Frees options; NULL is a no-op, and so is a handle already freed (even
/// after a new options object was made: handles are never reused). Pools
/// created from them are unaffected. Never blocks.
#[no_mangle]
pub extern "C" fn cache_pool_options_free(options: *mut cache_pool_options) {
    guard(|| {
        if !options.is_null() {
            drop(OPTIONS.remove(options as usize, 0));
        }
    })
}

/// Sets a duration option of at least 1 ms.
fn set_ms(
    options: *mut cache_pool_options,
    name: &str,
    ms: u32,
    set: impl FnOnce(&mut PoolOptions, std::time::Duration),
) -> cache_status {
    guard(|| {
        with_opts(options, |o| {
            if ms == 0 {
                return fail(
                    CACHE_INVALID_ARGUMENT,
                    format!("{name} must be at least 1 ms, not 0"),
                );
            }
            set(o, std::time::Duration::from_millis(ms as u64));
            CACHE_OK
        })
    })
}

/// Deadline for a whole request to a peer, in milliseconds (1 or more).
/// Past it the get loads locally (groupcache's rule). Every node may use
/// its own. Returns CACHE_OK or CACHE_INVALID_ARGUMENT (0; NULL or freed
/// options).
#[no_mangle]
pub extern "C" fn cache_pool_options_set_timeout_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    set_ms(options, "timeout_ms", ms, |o, d| o.timeout = d)
}

/// Deadline for opening a connection to a peer, in milliseconds (1 or
/// more; within the request timeout). Returns CACHE_OK or
/// CACHE_INVALID_ARGUMENT (0; NULL or freed options).
#[no_mangle]
pub extern "C" fn cache_pool_options_set_connect_timeout_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    set_ms(options, "connect_timeout_ms", ms, |o, d| o.connect_timeout = d)
}

/// Points per node on the consistent hash (golang/groupcache: 50). Every
/// node of a cluster must use the same number, or they disagree on owners.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT (0, or over 10,000; NULL or
/// freed options).
#[no_mangle]
pub extern "C" fn cache_pool_options_set_replicas(
    options: *mut cache_pool_options,
    replicas: u32,
) -> cache_status {
    guard(|| {
        with_opts(options, |o| {
            if !(1..=MAX_REPLICAS as u32).contains(&replicas) {
                return fail(
                    CACHE_INVALID_ARGUMENT,
                    format!("replicas must be 1 to {MAX_REPLICAS}, not {replicas}"),
                );
            }
            o.replicas = replicas as usize;
            CACHE_OK
        })
    })
}

/// The URL path prefix of the peer protocol, with leading and trailing
/// '/' (golang/groupcache: "/_groupcache/"). Every node must use the same.
/// The string is copied. Returns CACHE_OK or CACHE_INVALID_ARGUMENT (NULL
/// or not UTF-8; NULL or freed options). A malformed path is refused by
/// cache_pool_new_with_options.
///
/// # Safety
/// `base_path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_base_path(
    options: *mut cache_pool_options,
    base_path: *const c_char,
) -> cache_status {
    guard(|| {
        // SAFETY: the caller promises a NUL-terminated string.
        let p = match unsafe { str_arg(base_path, "base_path") } {
            Ok(p) => p,
            Err(s) => return s,
        };
        with_opts(options, |o| {
            o.base_path = p.to_owned();
            CACHE_OK
        })
    })
}

/// A shared secret (1 byte or more; copied): every request this node sends
/// is signed with it (HMAC-SHA256 over method, whole request target, a
/// SHA-256 of the body, the node it is addressed to, and the time), and
/// every request it receives must be signed for this node, or it gets 401
/// and learns nothing; a PUT or DELETE is accepted once (README, "Peer
/// authentication"). All nodes of the cluster need the same secret and
/// the same library version, and each node's self_url must be its URL as
/// the peer lists spell it; golang/groupcache nodes cannot join such a
/// cluster. `GET /metrics` stays open (names and counts only). Without a
/// secret the port serves cache contents to anyone who reaches it.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT (NULL, empty, not UTF-8;
/// NULL or freed options).
///
/// # Safety
/// `secret` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_secret(
    options: *mut cache_pool_options,
    secret: *const c_char,
) -> cache_status {
    guard(|| {
        // SAFETY: the caller promises a NUL-terminated string.
        let v = match unsafe { str_arg(secret, "secret") } {
            Ok("") => return fail(CACHE_INVALID_ARGUMENT, "an empty secret"),
            Ok(v) => v,
            Err(s) => return s,
        };
        with_opts(options, |o| {
            o.secret = Some(v.to_owned());
            CACHE_OK
        })
    })
}

/// Sets or clears (NULL) an optional string option: `parse` turns the
/// string into the value or says what is wrong with it (then
/// CACHE_INVALID_ARGUMENT with that message). `name` names the argument in
/// other errors (not UTF-8).
///
/// # Safety
/// `s` is NULL or a NUL-terminated string.
unsafe fn set_opt_str<T>(
    options: *mut cache_pool_options,
    name: &str,
    s: *const c_char,
    parse: impl FnOnce(&str) -> Result<T, String>,
    set: impl FnOnce(&mut PoolOptions, Option<T>),
) -> cache_status {
    guard(|| {
        let v = if s.is_null() {
            None
        } else {
            // SAFETY: non-NULL, and NUL-terminated by the caller's promise.
            match unsafe { str_arg(s, name) } {
                Ok(v) => match parse(v) {
                    Ok(v) => Some(v),
                    Err(m) => return fail(CACHE_INVALID_ARGUMENT, m),
                },
                Err(s) => return s,
            }
        };
        with_opts(options, |o| {
            set(o, v);
            CACHE_OK
        })
    })
}

/// Sets one of the TLS file paths (`name`): NULL clears it, an empty path
/// is refused.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
unsafe fn set_tls_path(
    options: *mut cache_pool_options,
    name: &str,
    path: *const c_char,
    set: impl FnOnce(&mut PoolOptions, Option<std::path::PathBuf>),
) -> cache_status {
    let parse = |v: &str| match v {
        "" => Err(format!("an empty {name} path")),
        v => Ok(std::path::PathBuf::from(v)),
    };
    // SAFETY: the caller's promise, passed on.
    unsafe { set_opt_str(options, name, path, parse, set) }
}

/// TLS between nodes: the path of this node's certificate chain (PEM,
/// leaf first; copied). With it and cache_pool_options_set_tls_key the
/// node serves https only: its URL and every peer URL are https:// (a
/// cluster does not mix http and https: set_peers refuses http:// URLs),
/// and it presents this certificate to peers that ask for one, so the
/// certificate needs both the serverAuth and clientAuth uses (or none),
/// and must name the host of this node's URL (DNS name or IP address).
/// The files are read by cache_pool_new_with_options (an unreadable or
/// mismatched file is CACHE_INVALID_ARGUMENT there) and read again when
/// they change (looked at when a connection is made, at most once a
/// second): new connections use the new certificate, open ones keep
/// theirs, and files that do not load keep the last good ones (logged
/// once). NULL clears it. Default: none (plain http), or
/// GROUPCACHE_TLS_CERT. Returns CACHE_OK or CACHE_INVALID_ARGUMENT
/// (empty, not UTF-8; NULL or freed options). Never blocks.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_tls_cert(
    options: *mut cache_pool_options,
    path: *const c_char,
) -> cache_status {
    // SAFETY: the caller's promise, passed on.
    unsafe { set_tls_path(options, "tls_cert", path, |o, p| o.tls_cert = p) }
}

/// The path of the private key (PEM: PKCS#8, PKCS#1 or SEC1; copied) of
/// the certificate set with cache_pool_options_set_tls_cert; the two go
/// together. NULL clears it. Default: none, or GROUPCACHE_TLS_KEY.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT (empty, not UTF-8; NULL or
/// freed options). Never blocks.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_tls_key(
    options: *mut cache_pool_options,
    path: *const c_char,
) -> cache_status {
    // SAFETY: the caller's promise, passed on.
    unsafe { set_tls_path(options, "tls_key", path, |o, p| o.tls_key = p) }
}

/// Mutual TLS: the path of the CA certificate(s) (PEM; copied) that
/// peers' certificates must chain to. The client then accepts a peer
/// only with such a certificate for the host of its URL, and the server
/// asks every client for one: a certificate that does not verify fails
/// the handshake, and a client that presents none (a readiness probe) is
/// answered GET or HEAD /healthz only, 403 for every other request (its
/// body unread, no cache reached). Needs the certificate and key. Without it,
/// servers are checked against the system's trust store (SSL_CERT_FILE
/// and SSL_CERT_DIR honoured) and the server asks for no client
/// certificate. Works with a secret (cache_pool_options_set_secret): both
/// are checked. Read again when it changes, like the certificate. NULL
/// clears it. Default: none, or GROUPCACHE_TLS_CA. Returns CACHE_OK or
/// CACHE_INVALID_ARGUMENT (empty, not UTF-8; NULL or freed options).
/// Never blocks.
///
/// # Safety
/// `path` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_tls_ca(
    options: *mut cache_pool_options,
    path: *const c_char,
) -> cache_status {
    // SAFETY: the caller's promise, passed on.
    unsafe { set_tls_path(options, "tls_ca", path, |o, p| o.tls_ca = p) }
}

/// The DNS name (copied) that every peer's certificate is checked against
/// (chain to the CA or trust store, validity, usage), in place of the host
/// of the peer's URL; the connection still goes to the URL's address. For
/// peers whose URLs are IP addresses, as membership from DNS gives them
/// (pod IPs of a headless Service), and one certificate that names the
/// cluster, e.g. the Service's name. Needs TLS (the certificate and key;
/// cache_pool_new_with_options refuses it otherwise). NULL clears it.
/// Default: none (the URL's host), or GROUPCACHE_TLS_SERVER_NAME. Returns
/// CACHE_OK or CACHE_INVALID_ARGUMENT (empty, not a DNS name or IP
/// address, not UTF-8; NULL or freed options). Never blocks.
///
/// # Safety
/// `name` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_tls_server_name(
    options: *mut cache_pool_options,
    name: *const c_char,
) -> cache_status {
    let parse = |v: &str| crate::peers::check_tls_server_name(v).map(|()| v.to_owned());
    // SAFETY: the caller's promise, passed on.
    unsafe {
        set_opt_str(options, "tls_server_name", name, parse, |o, v| {
            o.tls_server_name = v
        })
    }
}

/// Sets a numeric server limit (see `set_limit`).
fn set_u64(options: *mut cache_pool_options, opt: &str, v: u64) -> cache_status {
    guard(|| {
        with_opts(options, |o| match set_limit(o, opt, v) {
            Ok(()) => CACHE_OK,
            Err(m) => fail(CACHE_INVALID_ARGUMENT, m),
        })
    })
}

/// Connections the peer server keeps open at once (0 to 1,048,576).
/// When full, a new connection takes the place of the one that has waited
/// longest without completing a request; when every connection is being
/// served, the newcomer gets a 503 and is closed. 0 (the default): half the
/// process's soft RLIMIT_NOFILE when the pool is made, at least 16, at most
/// 16,384, leaving the other half to the rest of the process. Returns
/// CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_max_connections(
    options: *mut cache_pool_options,
    n: u32,
) -> cache_status {
    set_u64(options, "max_connections", n as u64)
}

/// How long a client of the peer server has to send a request head, in
/// milliseconds (1 or more; default 10,000): from its connection for the
/// first request, from the head's first byte for later ones. A connection
/// past it is closed. Returns CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_header_timeout_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    set_ms(options, "header_timeout_ms", ms, |o, d| o.header_timeout = d)
}

/// How long the peer server keeps a keep-alive connection that idles
/// between requests, in milliseconds (1 or more; default 120,000). Returns
/// CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_idle_timeout_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    set_ms(options, "idle_timeout_ms", ms, |o, d| o.idle_timeout = d)
}

/// How long the peer server waits for a whole request body (a PUT), in
/// milliseconds (1 or more; default 10,000); past it the client gets 408.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_body_timeout_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    set_ms(options, "body_timeout_ms", ms, |o, d| o.body_timeout = d)
}

/// Largest request body the peer server accepts (413 past it) and
/// response body the client accepts, in bytes (1,024 or more; default
/// 64 MiB + 64 KiB, a 64 MiB value with its framing). Returns CACHE_OK or
/// CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_max_body_bytes(
    options: *mut cache_pool_options,
    bytes: u64,
) -> cache_status {
    set_u64(options, "max_body_bytes", bytes)
}

/// Request bodies the peer server holds at once, all connections together,
/// in bytes (1 or more; default 64 MiB); a body that does not fit gets 503.
/// A body larger than this (up to the max body size) is taken when no
/// other is in flight. Returns CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_body_budget_bytes(
    options: *mut cache_pool_options,
    bytes: u64,
) -> cache_status {
    set_u64(options, "body_budget_bytes", bytes)
}

/// Largest request head (request line with the escaped key, plus headers)
/// the peer server accepts, in bytes (8,192 to 64 MiB; default 128 KiB);
/// 431 past it. Returns CACHE_OK or CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_max_header_bytes(
    options: *mut cache_pool_options,
    bytes: u32,
) -> cache_status {
    set_u64(options, "max_header_bytes", bytes as u64)
}

/// Threads that run peers' requests that may block (a miss runs the
/// cache's getter) at once (1 to 4,096; default 64). More requests wait
/// for a turn without a thread; cache hits need none. Returns CACHE_OK or
/// CACHE_INVALID_ARGUMENT.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_server_workers(
    options: *mut cache_pool_options,
    n: u32,
) -> cache_status {
    set_u64(options, "server_workers", n as u64)
}

/// How long freeing the pool (cache_pool_free) keeps the node serving
/// before it stops accepting, in milliseconds (0 to 4294967295; default
/// 0, no drain). Meanwhile everything is served as before except
/// `GET /healthz`, which answers 503 instead of 200, so that readiness
/// probes and DNS-based membership drop the node while its peers' requests
/// are still answered. cache_pool_free blocks for this long. Returns
/// CACHE_OK or CACHE_INVALID_ARGUMENT (NULL or freed options).
#[no_mangle]
pub extern "C" fn cache_pool_options_set_drain_ms(options: *mut cache_pool_options, ms: u32) -> cache_status {
    guard(|| {
        with_opts(options, |o| {
            o.drain = std::time::Duration::from_millis(ms as u64);
            CACHE_OK
        })
    })
}

/// Takes the membership from DNS instead of cache_pool_set_peers: `spec`
/// is "dns+http://NAME:PORT" (one peer "http://ADDR:PORT" per A and AAAA
/// record of NAME), "dns+http://NAME:FIRST-LAST" (a port range: one peer
/// per address per port, for several worker processes per host, each a
/// node on its own port), "dns+srv+http://_service._proto.NAME" (SRV
/// records: each target's addresses with its port), or the same with
/// "https" for TLS peers. NAME is looked up as /etc/resolv.conf and
/// /etc/hosts say (or at cache_pool_options_set_nameserver's server) when
/// the pool is made, and again every peers_refresh_ms (default 5,000). The
/// peers are the URLs found, sorted and without duplicates, so every node
/// computes the same list; a node finds itself by its self_url (the
/// default, `http://<bound address>`, matches when it binds the address
/// DNS gives). A lookup that fails or finds no address keeps the last
/// good membership. The string is copied; NULL removes a spec set before
/// (or by GROUPCACHE_PEERS_FROM). A pool made with one refuses
/// cache_pool_set_peers. Returns CACHE_OK or CACHE_INVALID_ARGUMENT (a
/// malformed spec, named in cache_last_error; not UTF-8; NULL or freed
/// options).
///
/// # Safety
/// `spec` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_peers_from(
    options: *mut cache_pool_options,
    spec: *const c_char,
) -> cache_status {
    let parse = |v: &str| PeerSource::parse(v).map(|_| v.to_owned());
    // SAFETY: the caller's promise, passed on.
    unsafe { set_opt_str(options, "spec", spec, parse, |o, v| o.peers_from = v) }
}

/// Most keys one batch request between nodes carries (1 to 1,048,576;
/// default 1024): a node that fetches many keys of a cache from the node
/// that owns them sends one request per this many keys (the batch route
/// of docs/peer-protocol.md), and its peer server answers a request with
/// more keys with a 400 (those keys then load at the asking node). Give
/// every node the same value. Returns CACHE_OK or CACHE_INVALID_ARGUMENT.
/// Never blocks.
#[no_mangle]
pub extern "C" fn cache_pool_options_set_max_batch_keys(
    options: *mut cache_pool_options,
    n: u32,
) -> cache_status {
    set_u64(options, "max_batch_keys", n as u64)
}

/// How often peers_from is looked up again, in milliseconds (100 or more;
/// default 5,000). A change of membership is seen within this time.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT (below 100; NULL or freed
/// options).
#[no_mangle]
pub extern "C" fn cache_pool_options_set_peers_refresh_ms(
    options: *mut cache_pool_options,
    ms: u32,
) -> cache_status {
    guard(|| {
        with_opts(options, |o| {
            let min = MIN_PEERS_REFRESH.as_millis() as u32;
            if ms < min {
                return fail(
                    CACHE_INVALID_ARGUMENT,
                    format!("peers_refresh_ms must be at least {min}, not {ms}"),
                );
            }
            o.peers_refresh = std::time::Duration::from_millis(ms as u64);
            CACHE_OK
        })
    })
}

/// The DNS server peers_from asks, as "IP:PORT" (`127.0.0.1:5353`,
/// `[::1]:53`) or "IP" (port 53), in place of the servers of
/// /etc/resolv.conf (its search domains still apply; /etc/hosts is still
/// read first). The string is copied; NULL goes back to resolv.conf's.
/// Returns CACHE_OK or CACHE_INVALID_ARGUMENT (not an IP address and
/// port; NULL or freed options).
///
/// # Safety
/// `addr` is NULL or a NUL-terminated string.
#[no_mangle]
pub unsafe extern "C" fn cache_pool_options_set_nameserver(
    options: *mut cache_pool_options,
    addr: *const c_char,
) -> cache_status {
    // SAFETY: the caller's promise, passed on.
    unsafe { set_opt_str(options, "addr", addr, parse_nameserver, |o, v| o.nameserver = v) }
}
