//! The HTTP server side of the peer protocol (hyper 1, HTTP/1.1 keep-alive).
//!
//! Routes `{base_path}{group}/{key}`: the raw path is split at the first '/'
//! after the base path (group names cannot contain '/', keys can, escaped or
//! not), then each part is decoded once (`%XX`, and `+` as a space; see
//! [`super::escape`]).
//!
//! - `GET`: answered from the group's cache on the runtime thread that read
//!   the request ([`PeerService::get_cached_for_peer`], which never blocks);
//!   a miss runs [`PeerService::get_for_peer`] (the getter, which may block
//!   for seconds) on a worker from a bounded pool (see "Threads") → 200
//!   `application/x-protobuf` `GetResponse` (with `expire` when the value has
//!   a TTL); 404 "not found" when the getter says so; 500 "loader failed"
//!   when it fails (the getter's own message, which may name tables, paths
//!   or secrets, goes to the local log only), 503 for a closed group, 504
//!   for an engine timeout.
//! - `PUT` with a `SetRequest` body → `set_from_peer` → 200. As in mailgun,
//!   the key is the body's (exact bytes, no escaping involved); a body whose
//!   group differs from the path's is a 400, a key over the engine's limit
//!   too.
//! - `DELETE` → `remove_from_peer` → 200 (400 for a key over the limit).
//! - `GET /healthz` (or `HEAD`) → 200 "ok" while the node serves, 503
//!   "closing" from the moment its pool starts closing (a drain, then the
//!   shutdown; see [`ServerHandle::drain`]): for readiness probes. Answered
//!   on the runtime thread that read it, never behind a worker, and under
//!   the same connection limits and timeouts as every request.
//! - `POST {base_path}{group}` (no key) with a `GetManyRequest` body: the
//!   batch route ([`serve_batch`]). At most `max_batch_keys` keys (400
//!   past it); the hits are answered on the runtime thread, the misses go
//!   to a worker in one [`PeerService::get_many_for_peer`] call (never run
//!   on the runtime: a batch's loads may take long). 200 with a
//!   `GetManyResponse`: per key the value and expiry, or the status and
//!   text the single GET would have answered.
//! - With a secret (`ServerConfig::auth`), every request but `GET /metrics`
//!   and `/healthz` is checked first, its head before its body is read (see
//!   [`super::auth`]): a bare 401 for anything not signed for this node, or
//!   a replayed PUT, DELETE or batch POST.
//! - With TLS (`ServerConfig::tls`), every connection is a TLS one first
//!   (see [`super::tls`]): the handshake, mutual with a CA, runs through the
//!   connection's [`ConnIo`] and in its table slot, so the head deadline
//!   and the connection limit cover a client that never finishes it.
//!   With a CA, a client that presents no certificate finishes the
//!   handshake (readiness probes have none) but is answered only `GET` or
//!   `HEAD /healthz`: every other request gets a 403 "client certificate
//!   required" from its head alone (no body read, no group looked up) and
//!   the connection is closed after it. A certificate that does not verify
//!   fails the handshake, as before.
//! - 404 "no such group: NAME" for a group this node does not serve (Go's
//!   text; our client reads it as a failure, not as a missing key), 400 for a
//!   malformed path, 405 for another method.
//!
//! Threads: every connection is a task on the pool's multi-thread runtime
//! (`worker_threads`), so a connection costs no thread while it is idle or
//! sends a request; a stalled client costs a socket and a small buffer.
//! Cache hits, PUTs of small values and DELETEs are answered on the runtime
//! (short, non-blocking engine calls); misses and large PUTs run on a pool
//! of at most `server_workers` threads, and requests beyond that wait for a
//! turn as tasks. Misses of a group whose loads have been fast run on the
//! runtime thread itself, one at a time, as a thread hop costs more than
//! such a load; a slow load sends the group back to the workers (see
//! [`mod@inline`]).
//!
//! Limits (all in [`ServerConfig`], defaults in [`super::PoolOptions`]):
//! - connections (`max_connections`, by default derived from the fd limit;
//!   see [`conns`]): when full, a new connection takes the place of the one
//!   that has waited longest without completing a request; when every
//!   connection is busy being served, the newcomer gets a 503 and is closed;
//!   running out of descriptors in `accept` closes a waiting connection and
//!   backs off. Each of these logs at most once per 10 s.
//! - time: a request head must arrive within `header_timeout` of the accept
//!   or of its first byte, a body within `body_timeout` (408), and a
//!   keep-alive connection may idle `idle_timeout` between requests.
//! - size: request heads (`max_header_bytes`, 431), bodies
//!   (`max_body_bytes`, 413), and all bodies held at once
//!   (`body_budget_bytes`, 503; see [`budget`]).

mod batch;
mod budget;
mod conns;
pub(crate) mod fuzzing;
mod inline;
mod workers;

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prost::Message;
use tokio::sync::watch;

use self::budget::{BodyBudget, Reservation};
use self::conns::{Admit, ConnGuard, ConnIo, ConnTable, Phase, Slot, Throttle, Timeouts};
use self::inline::{Inline, Speed};
use self::workers::Workers;
use super::auth::Verifier;
use super::escape::unescape;
use super::proto::{
    expire_from_wire, GetManyRequest, GetResponse, KeyResult, SetRequest, DEFAULT_BASE_PATH, PEER_HEADER,
    PEER_HEADER_VALUE, PROMETHEUS_TEXT, PROTOBUF, STATUS_TOO_LARGE, TEXT_PLAIN,
};
use super::tls::Tls;
use crate::engine::{Error, Group, PeerValue};

use self::batch::serve_batch;
pub(crate) use self::batch::BATCH_OVERHEAD_PER_KEY;
pub(crate) use self::conns::auto_max_connections;
pub(crate) use self::inline::inline_call_running;

/// What the server needs of a group: the peer entry points.
/// Implemented by [`Group`]; tests use doubles.
pub(crate) trait PeerService: Send + Sync + 'static {
    /// The value if it is cached, without blocking (this runs on the
    /// runtime's I/O threads); `Ok(None)` sends the request to
    /// `get_for_peer` on a worker. A value over `max_len` bytes may be
    /// left to the worker (not copied here).
    fn get_cached_for_peer(&self, _key: &[u8], _max_len: usize) -> Result<Option<PeerValue>, Error> {
        Ok(None)
    }
    /// The full peer GET: may run the getter, and block.
    fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error>;
    fn set_from_peer(&self, key: &[u8], value: PeerValue) -> Result<(), Error>;
    fn remove_from_peer(&self, key: &[u8]) -> Result<(), Error>;
    /// A batch of peer GETs (may run getters, and block): result `i`
    /// answers `keys[i]`.
    fn get_many_for_peer(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        keys.iter().map(|k| self.get_for_peer(k)).collect()
    }
    /// Called once per batch request, before its keys are looked up (the
    /// misses then go to `get_many_for_peer`, which counts no batch).
    fn count_batch(&self) {}
}

impl PeerService for Group {
    fn get_cached_for_peer(&self, key: &[u8], max_len: usize) -> Result<Option<PeerValue>, Error> {
        Group::get_cached_for_peer(self, key, max_len)
    }
    fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        Group::get_for_peer(self, key)
    }
    fn set_from_peer(&self, key: &[u8], value: PeerValue) -> Result<(), Error> {
        Group::set_from_peer(self, key, value)
    }
    fn remove_from_peer(&self, key: &[u8]) -> Result<(), Error> {
        Group::remove_from_peer(self, key)
    }
    fn get_many_for_peer(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        Group::get_many_for_peer_uncounted(self, keys)
    }
    fn count_batch(&self) {
        Group::count_server_batch(self)
    }
}

/// Finds the group a request names.
pub(crate) trait GroupLookup: Send + Sync + 'static {
    fn lookup(&self, name: &str) -> Option<Arc<dyn PeerService>>;
    /// The body of `GET /metrics` (Prometheus text format).
    fn metrics(&self) -> String {
        String::new()
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ServerConfig {
    pub base_path: String,
    pub max_body_bytes: usize,
    pub max_header_bytes: usize,
    /// Resolved: never 0.
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    pub body_budget_bytes: usize,
    /// Most keys in one batch request (400 past it).
    pub max_batch_keys: usize,
    pub server_workers: usize,
    /// Name of the worker threads (at most 15 bytes show on Linux).
    pub worker_name: String,
    /// Whether misses of fast groups may run on the runtime (see
    /// [`mod@inline`]): only with two runtime workers or more.
    pub inline: bool,
    /// Name of the inline calls' watchdog thread.
    pub watchdog_name: String,
    /// When set, requests must be signed for this node under its secret
    /// (see `peers::auth`).
    pub auth: Option<Arc<Verifier>>,
    /// When set, connections are TLS (see `peers::tls`): the handshake
    /// runs within the connection's head deadline, in its table slot.
    pub tls: Option<Arc<Tls>>,
}

/// Values up to this size are copied out of the cache on the runtime
/// thread; larger hits (a copy of megabytes) go to a worker. PUTs of values
/// up to it are stored on the runtime thread too.
const INLINE_VALUE_BYTES: usize = 256 << 10;

/// How often the "full" and "accept failed" conditions may be logged.
const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The path of the health route (see the module docs).
pub(crate) const HEALTH_PATH: &str = "/healthz";

/// Controls a running server.
pub(crate) struct ServerHandle {
    shutdown: watch::Sender<bool>,
    /// Set when the pool starts closing: `/healthz` answers 503 from then.
    closing: Arc<AtomicBool>,
    table: Arc<ConnTable>,
    listener_closed: Arc<AtomicBool>,
    workers: Arc<Workers>,
    inline: Arc<Inline>,
}

impl ServerHandle {
    /// Starts the drain: everything is served as before, but `/healthz`
    /// answers 503, so that readiness probes (and through them a headless
    /// Service's DNS, and every node's membership) drop this node before it
    /// stops accepting. Idempotent; `shutdown` implies it.
    pub(crate) fn drain(&self) {
        self.closing.store(true, Ordering::Release);
    }

    /// Stops accepting, lets each connection finish the request it is
    /// serving (idle keep-alive connections close at once), and waits up to
    /// `grace` for the listener to close, the connections to drain and the
    /// worker threads to end. Connections still open then end with the
    /// runtime; a getter still running keeps its thread until it returns.
    pub(crate) fn shutdown(&self, grace: Duration) {
        self.drain();
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.listener_closed.load(Ordering::Acquire) && self.table.live() == 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.workers.close(deadline);
        self.inline.close();
    }
}

/// What every connection needs.
struct ServeCtx {
    builder: http1::Builder,
    cfg: ServerConfig,
    groups: Arc<dyn GroupLookup>,
    shutdown: watch::Receiver<bool>,
    table: Arc<ConnTable>,
    budget: Arc<BodyBudget>,
    workers: Arc<Workers>,
    inline: Arc<Inline>,
    /// How long each group's misses take (where the next one runs).
    speeds: Mutex<HashMap<String, Arc<Speed>>>,
    /// The pool is closing (see [`ServerHandle::drain`]).
    closing: Arc<AtomicBool>,
    /// Failed TLS handshakes, logged at most once per `LOG_INTERVAL`.
    tls_log: Throttle,
}

impl ServeCtx {
    fn speed_of(&self, group: &str) -> Arc<Speed> {
        let mut m = self.speeds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = m.get(group) {
            return s.clone();
        }
        m.entry(group.to_string()).or_default().clone()
    }
}

/// Starts serving on `listener` (already bound) on the runtime `handle`.
pub(crate) fn start(
    handle: &tokio::runtime::Handle,
    listener: std::net::TcpListener,
    cfg: ServerConfig,
    groups: Arc<dyn GroupLookup>,
) -> std::io::Result<ServerHandle> {
    listener.set_nonblocking(true)?;
    let listener = {
        let _entered = handle.enter();
        tokio::net::TcpListener::from_std(listener)?
    };
    let (tx, rx) = watch::channel(false);
    let table = ConnTable::new(
        cfg.max_connections,
        Timeouts {
            header: cfg.header_timeout,
            idle: cfg.idle_timeout,
        },
    );
    let listener_closed = Arc::new(AtomicBool::new(false));
    let closing = Arc::new(AtomicBool::new(false));
    let workers = Arc::new(Workers::new(cfg.server_workers, cfg.worker_name.clone()));
    let inline = Arc::new(Inline::new(
        cfg.inline.then(|| handle.clone()),
        cfg.watchdog_name.clone(),
    ));
    let h = ServerHandle {
        shutdown: tx,
        closing: closing.clone(),
        table: table.clone(),
        listener_closed: listener_closed.clone(),
        workers: workers.clone(),
        inline: inline.clone(),
    };
    let ctx = Arc::new(ServeCtx {
        builder: http1_builder(&cfg),
        budget: BodyBudget::new(cfg.body_budget_bytes),
        workers,
        inline,
        speeds: Mutex::default(),
        closing,
        tls_log: Throttle::new(LOG_INTERVAL),
        cfg,
        groups,
        shutdown: rx.clone(),
        table,
    });
    handle.spawn(accept_loop(listener, ctx, rx, listener_closed));
    Ok(h)
}

/// The HTTP/1.1 settings of every connection (and of the fuzzing entry).
/// Head and idle deadlines are [`ConnIo`]'s, not hyper's (whose one header
/// timeout covers both).
fn http1_builder(cfg: &ServerConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(None)
        .max_header_size(cfg.max_header_bytes)
        .max_buf_size(cfg.max_header_bytes.max(64 * 1024) + 8192)
        .max_headers(64);
    builder
}

async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    // wait_for looks at the current value first, so a shutdown sent before
    // this receiver was cloned is not missed. A dropped sender also stops.
    let _ = rx.wait_for(|&v| v).await;
}

/// What a refused connection is told before it is closed.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
Content-Length: 12\r\nConnection: close\r\nRetry-After: 1\r\n\r\nserver busy\n";

/// Whether an accept error means the process (or system) is out of
/// descriptors or memory, which waiting may cure.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<ServeCtx>,
    mut shutdown: watch::Receiver<bool>,
    listener_closed: Arc<AtomicBool>,
) {
    let full_log = Throttle::new(LOG_INTERVAL);
    let evict_log = Throttle::new(LOG_INTERVAL);
    let fd_log = Throttle::new(LOG_INTERVAL);
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = wait_shutdown(&mut shutdown) => break,
        };
        let stream = match accepted {
            Ok((s, _)) => {
                backoff = Duration::ZERO;
                s
            }
            Err(e) if out_of_resources(&e) => {
                // Free a descriptor for the next accept (the longest-waiting
                // connection's), and give the process a moment.
                let freed = ctx.table.evict_one();
                backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                if let Some(n) = fd_log.hit() {
                    log::warn!(
                        "peer server: accepting connections failed {n} time(s) since the last such \
                         message: {e} ({} connections open{}); backing off",
                        ctx.table.live(),
                        if freed {
                            ", closing the longest-waiting one"
                        } else {
                            ""
                        }
                    );
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = wait_shutdown(&mut shutdown) => break,
                }
                continue;
            }
            Err(e) => {
                // A connection reset before it was accepted, and the like.
                log::debug!("peer server: accept: {e}");
                continue;
            }
        };
        let evicted_before = ctx.table.counts.evicted.load(Ordering::Relaxed);
        let mut admitted = ctx.table.admit();
        for _ in 0..100 {
            if !matches!(admitted, Admit::Crowded) {
                break;
            }
            // Connections chosen for closing close when their tasks run.
            tokio::task::yield_now().await;
            admitted = ctx.table.admit();
        }
        let guard = match admitted {
            Admit::Serve(g) => g,
            refused => {
                if matches!(refused, Admit::Crowded) {
                    ctx.table.counts.refused.fetch_add(1, Ordering::Relaxed);
                }
                let _ = stream.try_write(BUSY);
                drop(stream);
                if let Some(n) = full_log.hit() {
                    log::warn!(
                        "peer server: all {} connections are busy serving requests: refused {n} \
                         new connection(s) since the last such message (max_connections)",
                        ctx.table.max(),
                    );
                }
                continue;
            }
        };
        if ctx.table.counts.evicted.load(Ordering::Relaxed) != evicted_before {
            if let Some(n) = evict_log.hit() {
                log::warn!(
                    "peer server: at its limit of {} connections: closed {n} waiting connection(s) \
                     to make room for new ones since the last such message (max_connections)",
                    ctx.table.max(),
                );
            }
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_conn(stream, guard, ctx.clone()));
    }
    drop(listener);
    listener_closed.store(true, Ordering::Release);
}

/// Serves one connection until it closes, is closed to make room, or the
/// server shuts down.
async fn serve_conn(stream: tokio::net::TcpStream, guard: ConnGuard, ctx: Arc<ServeCtx>) {
    let io = ConnIo::new(stream, &guard);
    let Some(tls) = &ctx.cfg.tls else {
        return serve_http(io, guard, ctx, false).await;
    };
    // The handshake reads and writes through `ConnIo`: it has the head
    // deadline from the accept (a client that never finishes it is cut
    // then), and the connection holds its place in the table meanwhile,
    // where it is a waiting one (the first to go when the table is full).
    let slot = guard.slot().clone();
    let mut shutdown = ctx.shutdown.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config());
    let accepted = tokio::select! {
        r = acceptor.accept(io) => r,
        _ = slot.closed() => return,
        _ = wait_shutdown(&mut shutdown) => return,
    };
    match accepted {
        Ok(io) => {
            // Presented and verified (a failed one ended the handshake),
            // or none: then only /healthz is served (see `route`).
            let anonymous = tls.mutual() && io.get_ref().1.peer_certificates().is_none();
            serve_http(io, guard, ctx, anonymous).await
        }
        Err(e) => {
            // A peer with a certificate this node does not accept (or none),
            // a plain-http client, a scanner: say why, without a line each.
            if let Some(n) = ctx.tls_log.hit() {
                log::warn!(
                    "peer server: TLS handshake failed: {e} ({n} failed handshake(s) since the last \
                     such message)"
                );
            }
        }
    }
}

/// Serves HTTP/1.1 on a connection (plain or TLS). `anonymous`: a TLS
/// connection of a server that asks for client certificates, whose client
/// presented none (see `route`).
async fn serve_http<I>(io: I, guard: ConnGuard, ctx: Arc<ServeCtx>, anonymous: bool)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let slot = guard.slot().clone();
    let mut shutdown = ctx.shutdown.clone();
    let (svc_ctx, svc_slot) = (ctx.clone(), slot.clone());
    let svc = service_fn(move |req| {
        let (ctx, slot) = (svc_ctx.clone(), svc_slot.clone());
        async move { Ok::<_, Infallible>(serve_request(req, &ctx, &slot, anonymous).await) }
    });
    let conn = ctx.builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = slot.closed() => {}
        _ = wait_shutdown(&mut shutdown) => {
            // Waiting connections close now; a request being sent (a body)
            // or served finishes first.
            if !slot.close_if_idle() {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = slot.closed() => {}
                }
            }
        }
    }
    drop(guard);
}

/// One request, start to end: busy while it is served (see `Phase`), then
/// idle again.
async fn serve_request(
    req: Request<Incoming>,
    ctx: &ServeCtx,
    slot: &Slot,
    anonymous: bool,
) -> Response<Chunks> {
    let mut resp = if slot.enter(Phase::Busy) {
        route(req, ctx, slot, anonymous).await
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "closing")
    };
    slot.done(ctx.table.now_ms());
    // Tells our clients that this node implements PUT and DELETE.
    resp.headers_mut()
        .insert(PEER_HEADER, header::HeaderValue::from_static(PEER_HEADER_VALUE));
    resp
}

/// A response body of up to three chunks, so a large value is written from
/// the engine's own `Bytes` without being copied into an encoding buffer.
pub(crate) struct Chunks {
    parts: [Bytes; 3],
    next: usize,
    /// More parts after the three (a batch answer); empty otherwise, which
    /// costs no allocation.
    tail: std::vec::IntoIter<Bytes>,
    remaining: u64,
}

impl Chunks {
    fn one(b: Bytes) -> Chunks {
        Chunks::three(b, Bytes::new(), Bytes::new())
    }
    fn three(a: Bytes, b: Bytes, c: Bytes) -> Chunks {
        let remaining = (a.len() + b.len() + c.len()) as u64;
        Chunks {
            parts: [a, b, c],
            next: 0,
            tail: Vec::new().into_iter(),
            remaining,
        }
    }
    fn many(parts: Vec<Bytes>) -> Chunks {
        let remaining = parts.iter().map(|b| b.len() as u64).sum();
        Chunks {
            parts: Default::default(),
            next: 3,
            tail: parts.into_iter(),
            remaining,
        }
    }
}

impl Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        while self.next < 3 {
            let i = self.next;
            self.next += 1;
            let b = std::mem::take(&mut self.parts[i]);
            if !b.is_empty() {
                self.remaining -= b.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
        }
        for b in self.tail.by_ref() {
            if !b.is_empty() {
                self.remaining -= b.len() as u64;
                return Poll::Ready(Some(Ok(Frame::data(b))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Values up to this size are encoded into one buffer (a copy is cheaper
/// than a vectored write); larger ones are sent from the value's own bytes.
const COPY_LIMIT: usize = 16 * 1024;

/// Encodes a GetResponse: field 1 by hand (so the value need not be copied),
/// then the rest (only `expire`, when set) with prost. Field order is free
/// in protobuf.
fn get_response_body(v: PeerValue) -> Chunks {
    let rest = GetResponse {
        value: Bytes::new(),
        minute_qps: 0.0,
        expire: v.expire_unix_nanos.filter(|&e| e > 0).unwrap_or(0),
    };
    let mut head = BytesMut::with_capacity(
        16 + if v.value.len() <= COPY_LIMIT {
            v.value.len()
        } else {
            0
        },
    );
    if !v.value.is_empty() {
        head.put_u8(0x0a); // field 1, length-delimited
        prost::encoding::encode_varint(v.value.len() as u64, &mut head);
    }
    if v.value.len() <= COPY_LIMIT {
        head.put_slice(&v.value);
        rest.encode(&mut head).expect("BytesMut grows");
        Chunks::one(head.freeze())
    } else {
        Chunks::three(head.freeze(), v.value, Bytes::from(rest.encode_to_vec()))
    }
}

fn text(status: StatusCode, msg: &str) -> Response<Chunks> {
    let mut body = String::with_capacity(msg.len() + 1);
    body.push_str(msg);
    body.push('\n');
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, TEXT_PLAIN)
        .header("x-content-type-options", "nosniff")
        .body(Chunks::one(Bytes::from(body)))
        .expect("valid response")
}

fn ok_empty() -> Response<Chunks> {
    Response::new(Chunks::one(Bytes::new()))
}

/// The answer for an engine error. A remote client learns the kind of
/// failure only: a getter's message may hold SQL, paths or secrets, and is
/// logged here instead (by the caller).
fn error_response(e: &Error) -> Response<Chunks> {
    let (status, msg) = error_status(e);
    text(status, &msg)
}

/// A request's target, decoded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Ok {
        group: String,
        key: Vec<u8>,
    },
    /// Outside the base path.
    NotOurs,
    /// `{base_path}{group}`, no '/' after the group: the batch route's
    /// target (a POST), malformed for every other method.
    Group(String),
    /// A bad escape.
    Malformed(&'static str),
    /// The group name is not UTF-8, so no group can have it.
    NoSuchGroup(String),
}

/// Splits and decodes `{base_path}{group}/{key}`.
pub(crate) fn parse_target(path: &str, base_path: &str) -> Target {
    let Some(rest) = path.strip_prefix(base_path) else {
        return Target::NotOurs;
    };
    let Some((g, k)) = rest.split_once('/') else {
        let Ok(group) = unescape(rest.as_bytes()) else {
            return Target::Malformed("bad escape in group");
        };
        return match String::from_utf8(group) {
            Ok(group) => Target::Group(group),
            Err(e) => Target::NoSuchGroup(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        };
    };
    let Ok(group) = unescape(g.as_bytes()) else {
        return Target::Malformed("bad escape in group");
    };
    let Ok(key) = unescape(k.as_bytes()) else {
        return Target::Malformed("bad escape in key");
    };
    match String::from_utf8(group) {
        Ok(group) => Target::Ok { group, key },
        Err(e) => Target::NoSuchGroup(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

/// Runs a short, non-blocking engine call on this (runtime) thread. A
/// panic is caught here; the engine catches getters' panics itself, so this
/// is only a backstop that keeps the connection's task alive.
#[allow(clippy::result_large_err)] // the error is the answer, built once
fn inline<T>(f: impl FnOnce() -> T) -> Result<T, Response<Chunks>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| panicked())
}

fn panicked() -> Response<Chunks> {
    log::error!("peer server: the engine panicked answering a peer");
    text(StatusCode::INTERNAL_SERVER_ERROR, "the engine panicked")
}

/// Runs an engine call that may block (a getter) on a worker.
async fn on_worker<T: Send + 'static>(
    ctx: &ServeCtx,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Response<Chunks>> {
    ctx.workers.run(f).await.map_err(|_| panicked())
}

fn protobuf(v: PeerValue) -> Response<Chunks> {
    Response::builder()
        .header(header::CONTENT_TYPE, PROTOBUF)
        .body(get_response_body(v))
        .expect("valid response")
}

/// A request's body: still to be read, or read (and checked against its
/// signature) with its share of the bodies' budget.
enum ReqBody {
    Unread(Incoming),
    Read(Bytes, Option<Reservation>),
}

impl ReqBody {
    /// The whole body and its reservation (if it has one), read now if it
    /// was not yet (within the request's body phase).
    async fn read(
        self,
        ctx: &ServeCtx,
        slot: &Slot,
    ) -> Result<(Bytes, Option<Reservation>), Response<Chunks>> {
        match self {
            ReqBody::Read(b, held) => Ok((b, held)),
            ReqBody::Unread(body) => read_body_in_phase(body, ctx, slot)
                .await
                .map(|(b, held)| (b, Some(held))),
        }
    }
}

/// The answer to every request but `GET`/`HEAD /healthz` on a connection
/// without a client certificate, where the server asks for one.
const CERT_REQUIRED: &str = "client certificate required";

async fn route(req: Request<Incoming>, ctx: &ServeCtx, slot: &Slot, anonymous: bool) -> Response<Chunks> {
    let cfg = &ctx.cfg;
    let (parts, body) = req.into_parts();
    // Mutual TLS, and the client presented no certificate (a readiness
    // probe): the health route's GET or HEAD, nothing else. Decided from
    // the head: the body is never read, and the connection is closed after
    // the answer (whatever body follows is not looked at).
    if anonymous {
        let health_probe =
            parts.uri.path() == HEALTH_PATH && (parts.method == Method::GET || parts.method == Method::HEAD);
        if health_probe {
            return health(&parts.method, ctx);
        }
        log::debug!(
            "peer server: refused a {} request from a client without a certificate",
            parts.method
        );
        drop(body);
        let mut r = text(StatusCode::FORBIDDEN, CERT_REQUIRED);
        r.headers_mut()
            .insert(header::CONNECTION, header::HeaderValue::from_static("close"));
        return r;
    }
    // The health route is open (probes cannot sign) and says one bit: it
    // is answered here, on the runtime, before any group or worker.
    if parts.uri.path() == HEALTH_PATH {
        return health(&parts.method, ctx);
    }
    let Some(auth) = &cfg.auth else {
        return serve(parts, ReqBody::Unread(body), ctx, slot).await;
    };
    // GET /metrics is left open for scrapers, which cannot sign: it names
    // groups and counts, no keys or values (README, "Metrics").
    if parts.method == Method::GET && parts.uri.path() == "/metrics" {
        return serve(parts, ReqBody::Unread(body), ctx, slot).await;
    }
    // The head first: a request that is not signed for this node reads no
    // body and never reaches the engine. Then the body, within the usual
    // limits, which must be the one signed.
    let unauthorized = |method: &Method, why: super::auth::Refusal| {
        log::debug!("peer server: refused a {method} request: {why}");
        text(StatusCode::UNAUTHORIZED, "unauthorized")
    };
    let head = match auth.check_request(&parts.method, &parts.uri, &parts.headers) {
        Ok(h) => h,
        Err(why) => return unauthorized(&parts.method, why),
    };
    let (body, held) = if body.is_end_stream() {
        (Bytes::new(), None) // a GET or DELETE: no timer, no collecting
    } else {
        match read_body_in_phase(body, ctx, slot).await {
            Ok((b, held)) => (b, Some(held)),
            Err(resp) => return resp,
        }
    };
    if let Err(why) = auth.check_body(head, &body) {
        return unauthorized(&parts.method, why);
    }
    serve(parts, ReqBody::Read(body, held), ctx, slot).await
}

/// `GET /healthz`: 200 "ok" while serving, 503 "closing" once the pool
/// began to close. Never cached by anything in between.
fn health(method: &Method, ctx: &ServeCtx) -> Response<Chunks> {
    let mut r = if *method != Method::GET && *method != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        r
    } else if ctx.closing.load(Ordering::Acquire) {
        text(StatusCode::SERVICE_UNAVAILABLE, "closing")
    } else {
        text(StatusCode::OK, "ok")
    };
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    r
}

/// Reads a body while the connection counts as waiting on its client, so
/// that a client that stalls here may be closed to make room (see
/// `conns`); the connection is busy again afterwards.
async fn read_body_in_phase(
    body: Incoming,
    ctx: &ServeCtx,
    slot: &Slot,
) -> Result<(Bytes, Reservation), Response<Chunks>> {
    if !slot.enter(Phase::Body) {
        return Err(text(StatusCode::SERVICE_UNAVAILABLE, "closing"));
    }
    let read = read_request_body(body, &ctx.cfg, &ctx.budget).await;
    if !slot.enter(Phase::Busy) {
        return Err(text(StatusCode::SERVICE_UNAVAILABLE, "closing"));
    }
    read
}

/// Routes a request that is authorised (or needs no authorisation).
async fn serve(
    req: hyper::http::request::Parts,
    body: ReqBody,
    ctx: &ServeCtx,
    slot: &Slot,
) -> Response<Chunks> {
    let (cfg, groups) = (&ctx.cfg, &*ctx.groups);
    let (group, key) = match parse_target(req.uri.path(), &cfg.base_path) {
        Target::Ok { group, key } => (group, key),
        Target::Group(group) if req.method == Method::POST => {
            return serve_batch(group, body, ctx, slot).await;
        }
        Target::Group(_) => {
            log::debug!(
                "peer server: {} {}: bad request: expected {{group}}/{{key}}",
                &req.method,
                req.uri.path()
            );
            return text(StatusCode::BAD_REQUEST, "bad request: expected {group}/{key}");
        }
        Target::NotOurs if req.uri.path() == "/metrics" && req.method == Method::GET => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, PROMETHEUS_TEXT)
                .body(Chunks::one(Bytes::from(groups.metrics())))
                .expect("valid response");
        }
        Target::NotOurs => return text(StatusCode::NOT_FOUND, "404 page not found"),
        Target::Malformed(why) => {
            log::debug!(
                "peer server: {} {}: bad request: {why}",
                &req.method,
                req.uri.path()
            );
            return text(StatusCode::BAD_REQUEST, &format!("bad request: {why}"));
        }
        Target::NoSuchGroup(g) => return text(StatusCode::NOT_FOUND, &format!("no such group: {g}")),
    };
    let Some(svc) = groups.lookup(&group) else {
        log::debug!("peer server: a peer asked for cache {group:?}, which this node does not have");
        return text(StatusCode::NOT_FOUND, &format!("no such group: {group}"));
    };
    let failed = |what: &str, e: &Error| {
        if !matches!(e, Error::NotFound) {
            log::warn!("peer server: answering a {what} for cache {group:?}: {e}");
        }
        error_response(e)
    };
    match req.method {
        Method::GET => {
            // A hit is answered here; only a miss takes a worker.
            match inline(|| svc.get_cached_for_peer(&key, INLINE_VALUE_BYTES)) {
                Ok(Ok(Some(v))) => return protobuf(v),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => return failed("GET", &e),
                Err(resp) => return resp,
            }
            // A miss: here if its group's loads are fast (see `inline`),
            // else on a worker.
            let speed = ctx.speed_of(&group);
            let r = match ctx.inline.try_run(&speed, || svc.get_for_peer(&key)) {
                Ok(r) => r,
                Err(_) => {
                    let speed = speed.clone();
                    ctx.workers
                        .run(move || speed.time(|| svc.get_for_peer(&key)))
                        .await
                }
            };
            match r.map_err(|_| panicked()) {
                Ok(Ok(v)) => protobuf(v),
                Ok(Err(e)) => failed("GET", &e),
                Err(resp) => resp,
            }
        }
        Method::PUT => {
            let (body, held) = match body.read(ctx, slot).await {
                Ok(r) => r,
                Err(resp) => return resp,
            };
            let m = match SetRequest::decode(body) {
                Ok(m) => m,
                Err(e) => return text(StatusCode::BAD_REQUEST, &format!("decoding SetRequest: {e}")),
            };
            if !m.group.is_empty() && m.group != group.as_bytes() {
                return text(
                    StatusCode::BAD_REQUEST,
                    "SetRequest group differs from the path's",
                );
            }
            let value = PeerValue {
                value: m.value,
                expire_unix_nanos: expire_from_wire(m.expire),
            };
            let key = m.key;
            // Storing copies the value: a large one is copied on a worker.
            let r = if value.value.len() <= INLINE_VALUE_BYTES {
                inline(|| svc.set_from_peer(&key, value))
            } else {
                on_worker(ctx, move || svc.set_from_peer(&key, value)).await
            };
            drop(held);
            match r {
                Ok(Ok(())) => ok_empty(),
                Ok(Err(e)) => failed("PUT", &e),
                Err(resp) => resp,
            }
        }
        Method::DELETE => match inline(|| svc.remove_from_peer(&key)) {
            Ok(Ok(())) => ok_empty(),
            Ok(Err(e)) => failed("DELETE", &e),
            Err(resp) => resp,
        },
        _ => {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                header::HeaderValue::from_static("GET, PUT, DELETE"),
            );
            r
        }
    }
}

/// The status and text the single GET would answer for `e` (see
/// [`error_response`]).
fn error_status(e: &Error) -> (StatusCode, String) {
    match e {
        // Our own checks of the request (a key too long, ...): say which.
        Error::NotFound => (StatusCode::NOT_FOUND, "not found".into()),
        Error::Closed => (StatusCode::SERVICE_UNAVAILABLE, "closed".into()),
        Error::Timeout(_) | Error::InProgress => (StatusCode::GATEWAY_TIMEOUT, "timed out".into()),
        Error::InvalidArgument(_) => (StatusCode::BAD_REQUEST, e.to_string()),
        Error::LoaderFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "loader failed".into()),
        Error::PeerFailed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "peer failed".into()),
    }
}

/// Reads a request body within `body_timeout`, `max_body_bytes` and the
/// bodies' budget (see [`budget`]). Returns it with its reservation, which
/// the caller holds while the body's bytes are in use.
async fn read_request_body(
    mut body: Incoming,
    cfg: &ServerConfig,
    budget: &Arc<BodyBudget>,
) -> Result<(Bytes, Reservation), Response<Chunks>> {
    let max = cfg.max_body_bytes;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {max} bytes"),
        )
    };
    let busy = || {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request bodies in flight; try again",
        )
    };
    let hint = body.size_hint();
    if hint.lower() > max as u64 {
        return Err(too_large());
    }
    // A Content-Length is reserved whole, before the first byte is read.
    let announced = hint.exact().map(|n| n as usize);
    let Some(mut held) = budget.reserve(announced.unwrap_or(0)) else {
        return Err(busy());
    };
    let read = async {
        // One frame is the whole body, usually: no copy then.
        let mut first: Option<Bytes> = None;
        let mut buf = BytesMut::new();
        let mut len = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| text(StatusCode::BAD_REQUEST, &format!("reading body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            len += data.len();
            if len > max {
                return Err(too_large());
            }
            if announced.is_none() && !held.grow(data.len()) {
                return Err(busy());
            }
            match first.take() {
                None if buf.is_empty() => first = Some(data),
                prev => {
                    if buf.is_empty() {
                        buf.reserve(announced.unwrap_or(len).max(len));
                    }
                    if let Some(p) = prev {
                        buf.extend_from_slice(&p);
                    }
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| buf.freeze()))
    };
    match tokio::time::timeout(cfg.body_timeout, read).await {
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, "timed out reading the body")),
        Ok(Err(resp)) => Err(resp),
        Ok(Ok(b)) => Ok((b, held)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        let b = "/_groupcache/";
        assert_eq!(
            parse_target("/_groupcache/g/a%2Fb/c+d%20e", b),
            Target::Ok {
                group: "g".into(),
                key: b"a/b/c d e".to_vec()
            }
        );
        assert_eq!(
            parse_target("/_groupcache/g/", b),
            Target::Ok {
                group: "g".into(),
                key: vec![]
            }
        );
        assert_eq!(parse_target("/other/g/k", b), Target::NotOurs);
        assert_eq!(parse_target("/_groupcache/g", b), Target::Group("g".into()));
        assert_eq!(
            parse_target("/_groupcache/a%2Fb+c", b),
            Target::Group("a/b c".into())
        );
        assert_eq!(parse_target("/_groupcache/", b), Target::Group(String::new()));
        assert!(matches!(
            parse_target("/_groupcache/%zz", b),
            Target::Malformed(_)
        ));
        assert!(matches!(
            parse_target("/_groupcache/%ff", b),
            Target::NoSuchGroup(_)
        ));
        assert!(matches!(
            parse_target("/_groupcache/g/%zz", b),
            Target::Malformed(_)
        ));
        assert!(matches!(
            parse_target("/_groupcache/%ff/k", b),
            Target::NoSuchGroup(_)
        ));
        // The group is split off before decoding: an escaped '/' stays in it.
        assert_eq!(
            parse_target("/_groupcache/a%2Fb/k", b),
            Target::Ok {
                group: "a/b".into(),
                key: b"k".to_vec()
            }
        );
    }

    fn collect(mut c: Chunks) -> Vec<u8> {
        let mut out = Vec::new();
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: Arc<Self>) {}
        }
        let waker = std::task::Waker::from(Arc::new(Noop));
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(Ok(f))) = Pin::new(&mut c).poll_frame(&mut cx) {
            out.extend_from_slice(f.data_ref().unwrap());
        }
        assert!(c.is_end_stream());
        out
    }

    #[test]
    fn get_response_encoding_matches_prost() {
        for len in [0usize, 1, 300, COPY_LIMIT, COPY_LIMIT + 1, 1 << 20] {
            for expire in [None, Some(1_700_000_000_000_000_000i64)] {
                let value = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<_>>());
                let body = collect(get_response_body(PeerValue {
                    value: value.clone(),
                    expire_unix_nanos: expire,
                }));
                let m = GetResponse::decode(&body[..]).unwrap();
                assert_eq!(m.value, value);
                assert_eq!(expire_from_wire(m.expire), expire);
                let want = GetResponse {
                    value,
                    minute_qps: 0.0,
                    expire: expire.unwrap_or(0),
                };
                assert_eq!(body.len(), want.encoded_len());
            }
        }
    }
}
