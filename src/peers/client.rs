//! The HTTP client side of the peer protocol: one [`HttpPeer`] per remote
//! node, implementing the engine's [`PeerGetter`].
//!
//! The engine's API is blocking: it calls peers from plain threads (an
//! application's `get`) and, rarely, from inside some tokio runtime. Two
//! ways to send a request, both HTTP/1.1 keep-alive through hyper:
//!
//! - **On a plain thread** (the common case) the calling thread drives the
//!   whole exchange itself, on a small current-thread runtime of its own,
//!   over a keep-alive connection it keeps per peer (hyper's
//!   `client::conn::http1`). It writes the request, sleeps in `epoll_wait`
//!   and is woken by the kernel when the answer arrives: no other thread is
//!   involved, which is what makes a remote fetch cheap (a hop through a
//!   runtime worker costs more than the loopback round trip). A thread has
//!   at most one request in flight, so it keeps at most one idle
//!   connection per peer, dropped after `POOL_IDLE_TIMEOUT`, and all of
//!   them when the thread exits.
//! - **Inside a runtime context**, where blocking on another runtime would
//!   panic, the request is spawned onto the pool's runtime and sent with
//!   its hyper-util pooled client; the caller waits on a std channel.
//!
//! Every `HttpPeer` holds the pool's runtime alive (`RuntimeOwner`), so a
//! request in flight when its pool closes finishes (or times out) instead of
//! finding its timers gone; the runtime shuts down when the pool and the
//! last peer in use are gone. After close, new requests fail at once.
//!
//! Batches ([`HttpPeer`]'s `get_many`, and [`get_many_all`] for several
//! peers at once, the pool's `PeerPicker::get_many_from`): one
//! `POST {base}{group}` per up to `max_batch_keys` keys to a node that
//! serves the batch route. Those requests of all the peers go out at once,
//! from the calling thread on its kept connections (one per peer, as for
//! a GET: no thread per peer, no new connection per call) when each goes
//! to another address, else on the pool's runtime. GETs per key, at most
//! [`PARALLEL_GETS`] of a peer at once on the pool's runtime, go to a node
//! without the route (golang/groupcache answers the POST with a 400 and
//! without our header). A node that answered a batch
//! without the batch token gets GETs for [`BATCH_REPROBE`], then a batch
//! again; one known to send no header at all (a Go node) gets no batch.
//! The whole batch has one deadline, `timeout`.
//!
//! Errors: 404 is [`PeerError::NotFound`] (final: the owner's getter said the
//! key does not exist), except a "no such group" 404 (the peer does not know
//! the group, e.g. it has not registered it yet), which is a failure so the
//! caller falls back to a local load as Go's client would. Everything else
//! (connect error, timeout, another status, a body that is too large, not
//! protobuf or does not decode) is [`PeerError::Failed`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1 as conn1;
use hyper::{header, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use prost::Message;

use super::escape::escape_into;
use super::proto::{
    expire_from_wire, expire_to_wire, header_has_batch, GetManyResponse, GetResponse, KeyResult, SetRequest,
    AUTH_HEADER, PEER_HEADER, PROTOBUF, STATUS_FOUND, STATUS_TOO_LARGE,
};
use super::server::BATCH_OVERHEAD_PER_KEY;
use super::tls::Tls;
use crate::engine::{PeerError, PeerGetter, PeerValue};

mod batch;
mod connect;
pub(crate) use batch::get_many_all;
use connect::{connect, Conn, Connector};

/// What a peer is known to implement.
const KIND_UNKNOWN: u8 = 0;
const KIND_OURS: u8 = 1;
const KIND_GET_ONLY: u8 = 2;

/// How long an idle keep-alive connection is kept. Shorter than the server's
/// idle timeout (ours: 120 s by default; Go's: none) so that the client, not
/// the server, closes idle connections and a reused one is rarely stale.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests of one `get_many` in flight at once to one peer when it is
/// sent several (GETs per key to a node without the batch route, keys
/// answered "too large" in a batch, batches of more than `max_batch_keys`).
pub(crate) const PARALLEL_GETS: usize = 16;

/// How long a peer that answered a batch without the batch token (an
/// older node of ours) is sent GETs per key before a batch is tried again.
pub(crate) const BATCH_REPROBE: Duration = Duration::from_secs(60);

/// How much of an error body goes into a message.
const ERROR_SNIPPET: usize = 512;

/// Client settings, from [`super::PoolOptions`].
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_idle_per_peer: usize,
    /// Most keys per batch request (larger batches are split).
    pub max_batch_keys: usize,
    /// Signs every request (see `peers::auth`) when set.
    pub secret: Option<Arc<[u8]>>,
    /// Connections are TLS when set (the pool's peers are all https).
    pub tls: Option<Arc<Tls>>,
}

/// Owns a pool's tokio runtime; shuts it down when the last owner goes.
pub(crate) struct RuntimeOwner {
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    grace: Duration,
}

impl RuntimeOwner {
    pub(crate) fn new(rt: tokio::runtime::Runtime, grace: Duration) -> Arc<RuntimeOwner> {
        Arc::new(RuntimeOwner {
            handle: rt.handle().clone(),
            rt: Mutex::new(Some(rt)),
            grace,
        })
    }

    pub(crate) fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        let Some(rt) = self.rt.get_mut().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside some runtime (possibly this one's blocking pool):
            // waiting here could wait on ourselves or stall a worker. The
            // threads still end promptly on their own.
            rt.shutdown_background();
        } else {
            rt.shutdown_timeout(self.grace);
        }
    }
}

/// What every peer of one pool shares.
pub(crate) struct ClientShared {
    /// For callers inside a runtime context.
    pooled: Client<Connector, Full<Bytes>>,
    handle: tokio::runtime::Handle,
    cfg: ClientConfig,
    closed: AtomicBool,
}

impl ClientShared {
    pub(crate) fn new(handle: tokio::runtime::Handle, cfg: ClientConfig) -> Arc<ClientShared> {
        let mut conn = HttpConnector::new();
        // Requests are small and latency-bound: never wait for Nagle.
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(cfg.connect_timeout));
        // https URIs too: the TLS layer is `Connector`'s.
        conn.enforce_http(false);
        let conn = Connector {
            http: conn,
            tls: cfg.tls.clone(),
            connect_timeout: cfg.connect_timeout,
        };
        let pooled = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(cfg.max_idle_per_peer)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(conn);
        Arc::new(ClientShared {
            pooled,
            handle,
            cfg,
            closed: AtomicBool::new(false),
        })
    }

    /// Makes every later request fail at once (the pool is closing).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

/// One request, before it is sent either way.
struct Call {
    method: Method,
    /// "host:port" as in the URL, for the Host header and the pooled client.
    authority: Arc<str>,
    /// Where to connect (the URL's host and port, 80 or 443 by default).
    connect_to: Arc<str>,
    /// The URL's host, which a TLS peer's certificate must name (unless
    /// the pool has a `tls_server_name`).
    host: Arc<str>,
    /// What this thread's keep-alive connection is kept under: the address,
    /// and for TLS the identity it was opened with (the `Tls`, which holds
    /// the name the peer's certificate was checked against).
    conn_key: Arc<str>,
    /// The node a signature is bound to (`auth::node_of` the peer URL).
    node: Arc<str>,
    /// Path and escaped segments: "/_groupcache/g/k".
    path: String,
    body: Bytes,
}

impl Call {
    fn request(&self, absolute: bool, secret: Option<&[u8]>) -> Result<Request<Full<Bytes>>, PeerError> {
        let uri = if absolute {
            let scheme = if self.conn_key.starts_with("tls") {
                "https"
            } else {
                "http"
            };
            Uri::try_from(format!("{scheme}://{}{}", self.authority, self.path))
        } else {
            Uri::try_from(self.path.as_str())
        }
        .map_err(|e| PeerError::Failed(format!("bad request URI: {e}")))?;
        let mut b = Request::builder().method(self.method.clone()).uri(uri);
        if !absolute {
            // hyper-util sets Host itself; a bare connection does not.
            b = b.header(header::HOST, &*self.authority);
        }
        if !self.body.is_empty() {
            b = b.header(header::CONTENT_TYPE, PROTOBUF);
        }
        if let Some(secret) = secret {
            // Signed afresh for every attempt (a retry gets a new nonce).
            let sig = super::auth::sign(
                secret,
                self.method.as_str(),
                &self.node,
                &self.path,
                &super::auth::body_digest(&self.body),
                super::auth::now_ms(),
                super::auth::next_nonce(),
            );
            b = b.header(AUTH_HEADER, sig);
        }
        b.body(Full::new(self.body.clone()))
            .map_err(|e| PeerError::Failed(format!("bad request: {e}")))
    }
}

/// One remote node.
pub struct HttpPeer {
    url: String,
    authority: Arc<str>,
    connect_to: Arc<str>,
    host: Arc<str>,
    conn_key: Arc<str>,
    node: Arc<str>,
    /// The URL's path without a trailing '/', then the base path:
    /// "/_groupcache/".
    prefix: String,
    shared: Arc<ClientShared>,
    _runtime: Arc<RuntimeOwner>,
    /// KIND_*: learnt from any answer (our header or its absence) or, before
    /// a first PUT or DELETE, from a probe.
    kind: Arc<AtomicU8>,
    /// Until when (ms of [`mono_ms`]) this peer is sent GETs instead of
    /// batches: it answered a batch without the batch token. 0: batches.
    no_batch_until: AtomicU64,
    /// Whether the peer is failing, for logging changes of state only.
    health: Health,
}

/// Milliseconds on a monotonic clock, from the first call in the process.
fn mono_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A batch's answer.
enum BatchAnswer {
    /// `results[i]` answers key `i` of the request.
    Results(Vec<KeyResult>),
    /// The peer does not serve the batch route (no batch token in its
    /// answer): send GETs.
    NoRoute,
}

impl std::fmt::Debug for HttpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPeer").field("url", &self.url).finish()
    }
}

impl HttpPeer {
    /// `url` was checked by the pool: `http://host[:port][/path]`.
    pub(crate) fn new(
        url: &str,
        base_path: &str,
        shared: Arc<ClientShared>,
        runtime: Arc<RuntimeOwner>,
    ) -> HttpPeer {
        let uri: Uri = url.parse().expect("the pool checks peer URLs");
        let auth = uri.authority().expect("the pool checks peer URLs");
        let authority: Arc<str> = auth.as_str().into();
        let host = auth.host();
        let https = uri.scheme_str() == Some("https");
        let port = auth.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connect_to: Arc<str> = format!("{host}:{port}").into();
        // The pool checks that https URLs come with TLS, and only them.
        let conn_key: Arc<str> = match &shared.cfg.tls {
            Some(tls) if https => format!("tls{}/{connect_to}", tls.id()).into(),
            _ => connect_to.clone(),
        };
        let prefix = format!("{}{}", uri.path().trim_end_matches('/'), base_path);
        let node: Arc<str> = super::auth::node_of(url)
            .expect("the pool checks peer URLs")
            .into();
        HttpPeer {
            url: url.to_string(),
            authority,
            connect_to,
            host: host.into(),
            conn_key,
            node,
            prefix,
            shared,
            _runtime: runtime,
            kind: Arc::new(AtomicU8::new(KIND_UNKNOWN)),
            no_batch_until: AtomicU64::new(0),
            health: Health::default(),
        }
    }

    /// Does this peer implement PUT and DELETE? Asks it once, with a GET of
    /// the bare base path: every groupcache server answers that with a 400
    /// ("bad request"), ours with its header. A peer that cannot be reached
    /// stays unknown (the caller's request then fails the usual way).
    ///
    /// `op` is the method that needs to know ("PUT", "DELETE"): a failing
    /// probe is reported as that request's failure.
    fn supports_set_remove(&self, op: Method) -> Result<bool, PeerError> {
        match self.kind.load(Ordering::Relaxed) {
            KIND_OURS => return Ok(true),
            KIND_GET_ONLY => return Ok(false),
            _ => {}
        }
        let probe = self.call_to(Method::GET, self.prefix.clone(), Bytes::new());
        let kind = self.kind.clone();
        self.exec_as(op, probe, move |resp, _max| async move {
            note_kind(&kind, &resp);
            let _ = snippet(resp.into_body(), ERROR_SNIPPET).await;
            Ok(kind.load(Ordering::Relaxed) == KIND_OURS)
        })
    }

    fn call(&self, method: Method, group: &str, key: &[u8], body: Bytes) -> Call {
        let mut path = String::with_capacity(self.prefix.len() + group.len() + key.len() * 3 + 1);
        path.push_str(&self.prefix);
        escape_into(group.as_bytes(), &mut path);
        path.push('/');
        escape_into(key, &mut path);
        self.call_to(method, path, body)
    }

    /// A request to this peer: `method` on `path` with `body`.
    fn call_to(&self, method: Method, path: String, body: Bytes) -> Call {
        Call {
            method,
            authority: self.authority.clone(),
            connect_to: self.connect_to.clone(),
            host: self.host.clone(),
            conn_key: self.conn_key.clone(),
            node: self.node.clone(),
            path,
            body,
        }
    }

    /// A batch request for `keys` of `group`: `POST {prefix}{group}`, the
    /// `GetManyRequest` encoded by hand (no copy of the keys into
    /// messages).
    fn batch_call(&self, group: &str, keys: &[&[u8]]) -> Call {
        use bytes::BufMut;
        use prost::encoding::{encode_varint, encoded_len_varint};
        let mut path = String::with_capacity(self.prefix.len() + group.len() * 3);
        path.push_str(&self.prefix);
        escape_into(group.as_bytes(), &mut path);
        let budget = self.shared.cfg.max_body_bytes as u64;
        let len = 1
            + encoded_len_varint(group.len() as u64)
            + group.len()
            + keys
                .iter()
                .map(|k| 1 + encoded_len_varint(k.len() as u64) + k.len())
                .sum::<usize>()
            + 1
            + encoded_len_varint(budget);
        let mut body = bytes::BytesMut::with_capacity(len);
        body.put_u8(0x0a); // group = 1
        encode_varint(group.len() as u64, &mut body);
        body.put_slice(group.as_bytes());
        for k in keys {
            body.put_u8(0x12); // keys = 2
            encode_varint(k.len() as u64, &mut body);
            body.put_slice(k);
        }
        body.put_u8(0x18); // max_response_bytes = 3
        encode_varint(budget, &mut body);
        self.call_to(Method::POST, path, body.freeze())
    }

    /// Whether this peer is known not to serve the batch route.
    fn batch_route_absent(&self) -> bool {
        self.kind.load(Ordering::Relaxed) == KIND_GET_ONLY
            || mono_ms() < self.no_batch_until.load(Ordering::Relaxed)
    }

    /// Sends `call` and gives the response to `handle`, within the timeout.
    fn exec<T, H, Fut>(&self, call: Call, handle: H) -> Result<T, PeerError>
    where
        T: Send + 'static,
        H: FnOnce(Response<Incoming>, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PeerError>> + Send,
    {
        let what = call.method.clone();
        self.exec_as(what, call, handle)
    }

    /// `exec`, naming the request `what` in an error message.
    fn exec_as<T, H, Fut>(&self, what: Method, call: Call, handle: H) -> Result<T, PeerError>
    where
        T: Send + 'static,
        H: FnOnce(Response<Incoming>, usize) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PeerError>> + Send,
    {
        let s = &self.shared;
        let r = if s.closed.load(Ordering::Acquire) {
            Err(PeerError::Failed("the pool is closed".to_string()))
        } else if tokio::runtime::Handle::try_current().is_err() {
            match exec_on_this_thread(&call, &s.cfg, handle) {
                Ok(r) => r,
                // This thread's runtime is unavailable (re-entered, or it
                // could not be built): use the pool's.
                Err(handle) => exec_on_pool(s, call, handle),
            }
        } else if super::server::inline_call_running() {
            // A getter the server runs on one of a runtime's workers: the
            // request spawned below must not wait behind this thread.
            tokio::task::block_in_place(|| exec_on_pool(s, call, handle))
        } else {
            exec_on_pool(s, call, handle)
        };
        let r = r.map_err(|e| match e {
            PeerError::Failed(m) => PeerError::Failed(format!("{what} at {}: {m}", self.url)),
            nf => nf,
        });
        if !s.closed.load(Ordering::Acquire) {
            self.health.note(&self.url, &r);
        }
        r
    }
}

/// How often a peer that keeps failing gets a summary line in the log.
const FAILING_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// A peer's state for the log: a dead peer must not log once per key
/// (every get of its keys fails over to a local load). Its failures are
/// logged when it starts failing and when it answers again, and meanwhile
/// in one summary line a minute.
#[derive(Default)]
struct Health {
    failing: AtomicBool,
    /// Failures since the state changed or the last summary.
    failures: AtomicUsize,
    /// When the state changed or the last summary was logged.
    since: Mutex<Option<Instant>>,
}

impl Health {
    fn note<T>(&self, url: &str, r: &Result<T, PeerError>) {
        match r {
            Ok(_) | Err(PeerError::NotFound) => {
                if self.failing.load(Ordering::Relaxed) && self.failing.swap(false, Ordering::AcqRel) {
                    let n = self.failures.swap(0, Ordering::AcqRel);
                    log::info!("peer {url} answers again ({n} failed requests since the last report)");
                }
            }
            Err(PeerError::Failed(m)) => {
                let now = Instant::now();
                if !self.failing.swap(true, Ordering::AcqRel) {
                    self.failures.store(0, Ordering::Release);
                    *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
                    log::warn!(
                        "peer {url} is failing: {m}; gets of the keys it owns load locally until it \
                         answers again; further failures are summed up once a minute"
                    );
                    return;
                }
                let n = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
                let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
                let start = *since.get_or_insert(now);
                if now.duration_since(start) >= FAILING_SUMMARY_EVERY {
                    *since = Some(now);
                    self.failures.store(0, Ordering::Release);
                    drop(since);
                    log::warn!(
                        "peer {url} is still failing: {n} failed requests in the last {} s; the last: {m}",
                        now.duration_since(start).as_secs()
                    );
                }
            }
        }
    }
}

async fn with_timeout<T>(
    timeout: Duration,
    fut: impl Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(PeerError::Failed(format!("timed out after {timeout:?}"))),
    }
}

/// Spawns the call onto the pool's runtime (hyper-util's pooled client) and
/// waits for it on a std channel.
fn exec_on_pool<T, H, Fut>(s: &ClientShared, call: Call, handle: H) -> Result<T, PeerError>
where
    T: Send + 'static,
    H: FnOnce(Response<Incoming>, usize) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, PeerError>> + Send,
{
    let req = call.request(true, s.cfg.secret.as_deref())?;
    let timeout = s.cfg.timeout;
    let max = s.cfg.max_body_bytes;
    let client = s.pooled.clone();
    let (tx, rx) = mpsc::sync_channel(1);
    // Dropping the JoinHandle detaches the task; if the runtime is shut
    // down the task is dropped unpolled, `tx` with it: Disconnected.
    drop(s.handle.spawn(async move {
        let r = with_timeout(timeout, async move {
            let resp = client
                .request(req)
                .await
                .map_err(|e| PeerError::Failed(describe(&e)))?;
            handle(resp, max).await
        })
        .await;
        let _ = tx.send(r);
    }));
    // The task enforces the timeout; this one is only a backstop in case
    // the runtime stalls.
    match rx.recv_timeout(timeout + Duration::from_secs(1)) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            Err(PeerError::Failed(format!("timed out after {timeout:?}")))
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(PeerError::Failed("the pool is closed".to_string())),
    }
}

/// A calling thread's own runtime and keep-alive connections.
struct LocalClient {
    rt: tokio::runtime::Runtime,
    /// One idle connection per "host:port" (a thread has one request in
    /// flight at most), shared by every pool that talks to that address
    /// over plain http; a TLS connection only by pools of the same `Tls`.
    idle: HashMap<Arc<str>, Idle>,
    /// The process generation (`engine::fork`) it was made in: a forked
    /// child must not use its parent's connections (both processes would
    /// read answers from one socket) nor its runtime.
    generation: u64,
}

/// An idle keep-alive connection.
struct Idle {
    tx: conn1::SendRequest<Full<Bytes>>,
    since: Instant,
    sock: Sock,
}

/// A connection's socket descriptor, closed by a forked child (see
/// `LocalClient::abandon`), and the identity of the socket behind it,
/// taken once when the connection is made.
#[derive(Clone, Copy)]
struct Sock {
    fd: i32,
    id: Option<(u64, u64)>,
}

/// The (device, inode) of what `fd` refers to, to tell our socket from
/// another file that got its number after it was closed.
fn socket_id(fd: i32) -> Option<(u64, u64)> {
    // SAFETY: fstat writes only into `st`; an invalid fd is an error.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    Some((st.st_dev, st.st_ino))
}

impl LocalClient {
    /// Leaves a parent's client behind in a forked child: closes the
    /// child's copies of its idle sockets (the parent's stay open: the
    /// kernel closes a connection when its last descriptor goes), and
    /// leaks the rest. Dropping it would deregister those sockets from an
    /// epoll instance that the parent shares, and drop hyper connection
    /// tasks that might act on them.
    fn abandon(self) {
        for idle in self.idle.values() {
            // A connection whose task has ended closed its socket, and its
            // number may be another file's by now: only live ones, and only
            // if the descriptor is still the socket this thread opened.
            let Sock { fd, id } = idle.sock;
            if idle.tx.is_closed() || id.is_none() || socket_id(fd) != id {
                continue;
            }
            // SAFETY: the descriptor of a socket this thread opened (in the
            // parent), still open (checked just above, and nothing else
            // runs in the child yet); the objects that own the number are
            // leaked below, so nothing closes it a second time.
            unsafe { libc::close(fd) };
        }
        std::mem::forget(self);
    }
}

thread_local! {
    static LOCAL: RefCell<Option<LocalClient>> = const { RefCell::new(None) };
}

/// This thread's client, made on first use, and again in a forked child
/// (the parent's is abandoned: see `LocalClient::abandon`). `None` if its
/// runtime cannot be built.
fn local_client(slot: &mut Option<LocalClient>) -> Option<&mut LocalClient> {
    let generation = crate::engine::fork::generation();
    if slot.as_ref().is_some_and(|lc| lc.generation != generation) {
        if let Some(parents) = slot.take() {
            parents.abandon();
        }
    }
    if slot.is_none() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .ok()?;
        *slot = Some(LocalClient {
            rt,
            idle: HashMap::new(),
            generation,
        });
    }
    slot.as_mut()
}

/// Runs the call on this thread (see the module docs). Gives `handle` back
/// if this thread's client cannot be used.
fn exec_on_this_thread<T, H, Fut>(
    call: &Call,
    cfg: &ClientConfig,
    handle: H,
) -> Result<Result<T, PeerError>, H>
where
    H: FnOnce(Response<Incoming>, usize) -> Fut,
    Fut: Future<Output = Result<T, PeerError>>,
{
    let mut handle = Some(handle);
    let r = LOCAL.try_with(|cell| {
        let Ok(mut slot) = cell.try_borrow_mut() else {
            return None;
        };
        let lc = local_client(&mut slot)?;
        let now = Instant::now();
        lc.idle
            .retain(|_, i| now.duration_since(i.since) < POOL_IDLE_TIMEOUT && !i.tx.is_closed());
        let reused = lc.idle.remove(&call.conn_key).map(|i| (i.tx, i.sock));
        let handle = handle.take()?;
        IN_FLIGHT.fetch_add(1, Ordering::Relaxed);
        let _in_flight = InFlight(1);
        let (result, keep) = lc.rt.block_on(async {
            let mut keep = None;
            let r = with_timeout(cfg.timeout, exchange(call, cfg, reused, &mut keep, handle)).await;
            (r, keep)
        });
        // Not after a timeout: the connection may be mid-answer.
        if let (Some((tx, sock)), Ok(_) | Err(PeerError::NotFound)) = (keep, &result) {
            let since = Instant::now();
            lc.idle.insert(call.conn_key.clone(), Idle { tx, since, sock });
        }
        Some(result)
    });
    match (r, handle) {
        (Ok(Some(result)), _) => Ok(result),
        (_, Some(handle)) => Err(handle),
        // Thread-local storage torn down mid-call (thread exit): cannot be.
        (_, None) => Ok(Err(PeerError::Failed(
            "this thread's client is unavailable".to_string(),
        ))),
    }
}

/// Counts requests out of `IN_FLIGHT` when they end (or unwind).
struct InFlight(usize);

impl Drop for InFlight {
    fn drop(&mut self) {
        IN_FLIGHT.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// How long a calling thread polls for the answer before it sleeps. A
/// sleeping thread is woken by the kernel only after tens of microseconds on
/// a virtual machine (an idle vCPU must be woken first), which can double a
/// loopback fetch. Go's scheduler spins for the same reason and within the
/// same kind of limit: only while CPUs are idle. Here: one spinner at a
/// time, and only while at most `SPIN_MAX_IN_FLIGHT` requests of this
/// process are in flight (under load every CPU has real work, and the
/// wake-ups are cheap anyway).
const SPIN: Duration = Duration::from_micros(60);
const MAX_SPINNERS: usize = 1;
const SPIN_MAX_IN_FLIGHT: usize = 2;
static SPINNERS: AtomicUsize = AtomicUsize::new(0);
static IN_FLIGHT: AtomicUsize = AtomicUsize::new(0);

/// Polls `inner` in a loop (yielding to the runtime's I/O driver in between)
/// for up to `SPIN`, if no other thread is spinning; then waits normally.
struct Spin<F> {
    inner: F,
    until: Option<Instant>,
    spinning: bool,
}

impl<F> Spin<F> {
    fn new(inner: F) -> Self {
        Spin {
            inner,
            until: None,
            spinning: false,
        }
    }
}

impl<F> Drop for Spin<F> {
    fn drop(&mut self) {
        if self.spinning {
            SPINNERS.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<F: Future> Future for Spin<F> {
    type Output = F::Output;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        // SAFETY: `inner` is structurally pinned and never moved out; the
        // other fields are Unpin.
        let this = unsafe { self.get_unchecked_mut() };
        // SAFETY: as above: `this` is pinned, so is its field `inner`.
        let inner = unsafe { std::pin::Pin::new_unchecked(&mut this.inner) };
        if let std::task::Poll::Ready(v) = inner.poll(cx) {
            return std::task::Poll::Ready(v);
        }
        let now = Instant::now();
        let until = *this.until.get_or_insert_with(|| {
            if IN_FLIGHT.load(Ordering::Relaxed) > SPIN_MAX_IN_FLIGHT {
                return now;
            }
            if SPINNERS.fetch_add(1, Ordering::Relaxed) < MAX_SPINNERS {
                this.spinning = true;
                now + SPIN
            } else {
                SPINNERS.fetch_sub(1, Ordering::Relaxed);
                now
            }
        });
        if now < until {
            cx.waker().wake_by_ref();
        } else if this.spinning {
            this.spinning = false;
            SPINNERS.fetch_sub(1, Ordering::Relaxed);
        }
        std::task::Poll::Pending
    }
}

/// One request on this thread's connection to the peer. A request on a
/// reused connection that fails before an answer arrives (the peer closed
/// it while it was idle) is retried once on a new connection: every
/// request of the protocol is idempotent. On success the connection is
/// left in `keep` for the next request.
async fn exchange<T, H, Fut>(
    call: &Call,
    cfg: &ClientConfig,
    reused: Option<Conn>,
    keep: &mut Option<Conn>,
    handle: H,
) -> Result<T, PeerError>
where
    H: FnOnce(Response<Incoming>, usize) -> Fut,
    Fut: Future<Output = Result<T, PeerError>>,
{
    let mut conn = reused;
    let resp = loop {
        let fresh = conn.is_none();
        let (mut tx, sock) = match conn.take() {
            Some(c) => c,
            None => connect(call, cfg).await?,
        };
        let req = call.request(false, cfg.secret.as_deref())?;
        let sent = async {
            tx.ready().await?;
            Spin::new(tx.send_request(req)).await
        }
        .await;
        match sent {
            Ok(resp) => {
                *keep = Some((tx, sock));
                break resp;
            }
            Err(_) if !fresh => continue, // stale keep-alive connection
            Err(e) => return Err(PeerError::Failed(describe(&e))),
        }
    };
    let r = handle(resp, cfg.max_body_bytes).await;
    // The handlers read bodies to the end, so the connection is ready for
    // another request; after an error it may not be.
    if r.is_err() && !matches!(r, Err(PeerError::NotFound)) {
        *keep = None;
    }
    r
}

/// Describes a hyper/hyper-util error with its causes ("client error
/// (Connect): tcp connect error: Connection refused").
fn describe(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        src = c.source();
    }
    s
}

/// Up to `limit` bytes of a body, for an error message; reads the body to
/// its end when it is no longer than that, so the connection can be reused.
async fn snippet(mut body: Incoming, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() <= limit {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Some(d) = f.data_ref() {
                    buf.extend_from_slice(d);
                }
            }
            _ => break,
        }
    }
    buf.truncate(limit);
    String::from_utf8_lossy(&buf).trim().to_string()
}

fn status_error(status: StatusCode, text: &str) -> PeerError {
    if status == StatusCode::UNAUTHORIZED {
        // The server says no more, on purpose (see `auth`): the usual causes.
        return PeerError::Failed(format!(
            "server returned {status}: the request was not accepted as signed (every node needs \
             the same secret and software version, clocks within 5 minutes of each other, and \
             each node's self_url must be its URL as the peer lists spell it)"
        ));
    }
    if text.is_empty() {
        PeerError::Failed(format!("server returned {status}"))
    } else {
        PeerError::Failed(format!("server returned {status}: {text}"))
    }
}

/// Reads a whole body, at most `max` bytes.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, PeerError> {
    if body.size_hint().lower() > max as u64 {
        return Err(PeerError::Failed(format!(
            "response body larger than {max} bytes"
        )));
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(PeerError::Failed(format!(
            "reading response body: {}",
            describe(&*e)
        ))),
    }
}

/// Records whether an answer came from one of our servers.
fn note_kind(kind: &AtomicU8, resp: &Response<Incoming>) {
    let ours = resp.headers().contains_key(PEER_HEADER);
    kind.store(if ours { KIND_OURS } else { KIND_GET_ONLY }, Ordering::Relaxed);
}

fn is_protobuf(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start().to_ascii_lowercase().starts_with(PROTOBUF))
        .unwrap_or(false)
}

/// A GET's answer: a value, "not found", or a failure.
async fn get_response(resp: Response<Incoming>, max: usize) -> Result<PeerValue, PeerError> {
    let status = resp.status();
    if status == StatusCode::OK {
        // A 200 without the protobuf type is not a groupcache server (a
        // proxy's page, a misrouted port): garbage that might otherwise
        // decode as an empty value.
        if !is_protobuf(&resp) {
            return Err(PeerError::Failed(
                "200 without Content-Type application/x-protobuf".into(),
            ));
        }
        let body = read_body(resp.into_body(), max).await?;
        let m = GetResponse::decode(body)
            .map_err(|e| PeerError::Failed(format!("decoding response body: {e}")))?;
        return Ok(PeerValue {
            value: m.value,
            expire_unix_nanos: expire_from_wire(m.expire),
        });
    }
    let text = snippet(resp.into_body(), ERROR_SNIPPET).await;
    if status == StatusCode::NOT_FOUND && !text.starts_with("no such group") {
        return Err(PeerError::NotFound);
    }
    Err(status_error(status, &text))
}

/// A batch's answer: the results, or `NoRoute` when the answer does not
/// carry the batch token (golang/groupcache's 400, an older node's), or a
/// failure of the whole request. `max` bounds the values' bytes; the
/// answer may hold [`BATCH_OVERHEAD_PER_KEY`] more for each of at most
/// `keys` keys.
async fn batch_response(
    resp: Response<Incoming>,
    max: usize,
    keys: usize,
    kind: Arc<AtomicU8>,
) -> Result<BatchAnswer, PeerError> {
    note_kind(&kind, &resp);
    let batch = resp
        .headers()
        .get_all(PEER_HEADER)
        .iter()
        .any(|v| header_has_batch(v.as_bytes()));
    let status = resp.status();
    if !batch {
        let _ = snippet(resp.into_body(), ERROR_SNIPPET).await;
        return Ok(BatchAnswer::NoRoute);
    }
    if status != StatusCode::OK {
        let text = snippet(resp.into_body(), ERROR_SNIPPET).await;
        return Err(status_error(status, &text));
    }
    if !is_protobuf(&resp) {
        return Err(PeerError::Failed(
            "200 without Content-Type application/x-protobuf".into(),
        ));
    }
    let limit = max.saturating_add(keys.saturating_mul(BATCH_OVERHEAD_PER_KEY) + 16);
    let body = read_body(resp.into_body(), limit).await?;
    let m = GetManyResponse::decode(body)
        .map_err(|e| PeerError::Failed(format!("decoding batch response body: {e}")))?;
    // The caller checks that there is one result per key.
    Ok(BatchAnswer::Results(m.results))
}

/// A PUT's or DELETE's answer: 200 is success, anything else a failure.
async fn ok_response(resp: Response<Incoming>, _max: usize) -> Result<(), PeerError> {
    let status = resp.status();
    if status == StatusCode::OK {
        // Read the (empty) body to its end so the connection can be reused.
        let _ = resp.into_body().collect().await;
        return Ok(());
    }
    let text = snippet(resp.into_body(), ERROR_SNIPPET).await;
    Err(status_error(status, &text))
}

impl PeerGetter for HttpPeer {
    fn get(&self, group: &str, key: &[u8]) -> Result<PeerValue, PeerError> {
        let kind = self.kind.clone();
        self.exec(
            self.call(Method::GET, group, key, Bytes::new()),
            move |resp, max| {
                note_kind(&kind, &resp);
                get_response(resp, max)
            },
        )
    }

    /// A no-op for a peer without set (golang/groupcache, which would
    /// serve the PUT as a GET): "set and remove reach our nodes only"
    /// (peers/mod.rs). The engine still keeps the value in this node's cache.
    fn set(&self, group: &str, key: &[u8], value: &PeerValue) -> Result<(), PeerError> {
        if !self.supports_set_remove(Method::PUT)? {
            return Ok(());
        }
        let body = SetRequest {
            group: Bytes::copy_from_slice(group.as_bytes()),
            key: Bytes::copy_from_slice(key),
            value: value.value.clone(),
            expire: expire_to_wire(value.expire_unix_nanos),
            hot_cache: false,
        }
        .encode_to_vec();
        self.exec(self.call(Method::PUT, group, key, Bytes::from(body)), ok_response)
    }

    /// A no-op for a peer without remove (golang/groupcache): it would serve
    /// the DELETE as a GET and load the key. Its copies expire or get
    /// evicted as golang/groupcache's always do.
    fn remove(&self, group: &str, key: &[u8]) -> Result<(), PeerError> {
        if !self.supports_set_remove(Method::DELETE)? {
            return Ok(());
        }
        self.exec(self.call(Method::DELETE, group, key, Bytes::new()), ok_response)
    }

    /// One batch request per `max_batch_keys` keys to our nodes; GETs per
    /// key, [`PARALLEL_GETS`] at once, to a node without the batch route
    /// (see the module docs). A batch request that fails makes each of its
    /// keys `Failed` (the engine then loads them locally); keys the answer
    /// had no room for are fetched with GETs. All within one `timeout`.
    fn get_many(&self, group: &str, keys: &[&[u8]]) -> Vec<Result<PeerValue, PeerError>> {
        get_many_all(group, &[(self, keys)]).pop().unwrap_or_default()
    }

    fn url(&self) -> &str {
        &self.url
    }
}
