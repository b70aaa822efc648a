//! The HTTP server side of the peer protocol (hyper 1, HTTP/1.1 keep-alive).
//!
//! Routes `{base_path}{group}/{key}`: the raw path is split at the first '/'
//! after the base path (group names cannot contain '/', keys can, escaped or
//! not), then each part is decoded once (`%XX`, and `+` as a space; see
//! [`super::escape`]).
//!
//! - `GET`: [`PeerService::get_for_peer`], called inline on the thread
//!   that serves the connection (see `ConnThreads`: a getter may block as
//!   long as it likes and stalls only that connection) → 200
//!   `application/x-protobuf` `GetResponse` (with `expire` when the value has
//!   a TTL); 404 "not found" when the getter says so; 5xx with the error's
//!   text otherwise (503 for a closed group, 504 for an engine timeout).
//! - `PUT` with a `SetRequest` body → `set_from_peer` → 200. As in mailgun,
//!   the key is the body's (exact bytes, no escaping involved); a body whose
//!   group differs from the path's is a 400.
//! - `DELETE` → `remove_from_peer` → 200.
//! - With a secret (`ServerConfig::auth`), every request but `GET /metrics`
//!   is checked first, its head before its body is read (see
//!   [`super::auth`]): a bare 401 for anything not signed for this node, or
//!   a replayed PUT or DELETE.
//! - 404 "no such group: NAME" for a group this node does not serve (Go's
//!   text; our client reads it as a failure, not as a missing key), 400 for a
//!   malformed path, 405 for another method.
//!
//! Limits (all in [`ServerConfig`], defaults in [`super::PoolOptions`]):
//! request bodies (`max_body_bytes`, 413 past it; read within
//! `body_timeout`, else 408), request heads (`max_header_bytes`, 431 past
//! it), the time to send a request head, which is also how long an idle
//! keep-alive connection is kept (`idle_timeout`), and concurrent
//! connections (`max_connections`: past it, new connections wait in the
//! listen backlog).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prost::Message;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use super::auth::Verifier;
use super::client::{PEER_HEADER, PEER_HEADER_VALUE, PROTOBUF};
use super::escape::unescape;
use super::proto::{expire_from_wire, GetResponse, SetRequest};
use crate::engine::{Error, Group, PeerValue};

/// What the server needs of a group: the three peer entry points.
/// Implemented by [`Group`]; tests use doubles.
pub(crate) trait PeerService: Send + Sync + 'static {
    fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error>;
    fn set_from_peer(&self, key: &[u8], value: PeerValue);
    fn remove_from_peer(&self, key: &[u8]);
}

impl PeerService for Group {
    fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        Group::get_for_peer(self, key)
    }
    fn set_from_peer(&self, key: &[u8], value: PeerValue) {
        Group::set_from_peer(self, key, value)
    }
    fn remove_from_peer(&self, key: &[u8]) {
        Group::remove_from_peer(self, key)
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
    pub max_connections: usize,
    pub idle_timeout: Duration,
    pub body_timeout: Duration,
    /// Name of the connection threads (at most 15 bytes show on Linux).
    pub thread_name: String,
    /// When set, requests must be signed for this node under its secret
    /// (see `peers::auth`).
    pub auth: Option<Arc<Verifier>>,
}

/// Controls a running server.
pub(crate) struct ServerHandle {
    shutdown: watch::Sender<bool>,
    conns: Arc<Semaphore>,
    max_connections: usize,
    listener_closed: Arc<AtomicBool>,
    threads: Arc<ConnThreads>,
}

impl ServerHandle {
    /// Stops accepting, lets each connection finish the request it is
    /// serving (idle keep-alive connections close at once), and waits up to
    /// `grace` for the listener to close, the connections to drain and
    /// their threads to end.
    pub(crate) fn shutdown(&self, grace: Duration) {
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.listener_closed.load(Ordering::Acquire)
                && self.conns.available_permits() == self.max_connections
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.threads.close(deadline);
    }
}

/// The threads that serve connections: each runs its own current-thread
/// runtime and serves one connection at a time, calling the engine inline.
/// This is Go's goroutine per connection, with threads: a getter may block
/// as long as it likes and stalls only the connection that asked, and a
/// request costs no thread hop at all (the thread that the kernel wakes for
/// the request writes the answer). Connections are few and long-lived
/// (peers keep them alive), and threads are reused: one that served a
/// connection waits `IDLE_THREAD_EXIT` for the next before it ends.
struct ConnThreads {
    state: Mutex<ThreadsState>,
    cv: Condvar,
    name: String,
}

#[derive(Default)]
struct ThreadsState {
    queue: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads alive.
    live: usize,
    closed: bool,
}

struct Job {
    stream: std::net::TcpStream,
    permit: OwnedSemaphorePermit,
}

const IDLE_THREAD_EXIT: Duration = Duration::from_secs(30);

impl ConnThreads {
    fn lock(&self) -> std::sync::MutexGuard<'_, ThreadsState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a connection to an idle thread, or to a new one.
    fn submit(self: &Arc<Self>, job: Job, ctx: &Arc<ServeCtx>) {
        let mut st = self.lock();
        if st.closed {
            return; // dropping the job closes the connection
        }
        st.queue.push_back(job);
        if st.idle >= st.queue.len() {
            self.cv.notify_one();
            return;
        }
        st.live += 1;
        drop(st);
        let (me, ctx) = (self.clone(), ctx.clone());
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || me.run(ctx));
        if spawned.is_err() {
            // Out of threads: the connection waits for a busy thread.
            self.lock().live -= 1;
        }
    }

    fn run(self: Arc<Self>, ctx: Arc<ServeCtx>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build();
        let mut st = self.lock();
        let Ok(rt) = rt else {
            st.live -= 1;
            self.cv.notify_all();
            return;
        };
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                let permit = rt.block_on(serve_conn(job, ctx.clone()));
                st = self.lock();
                // Given back under the lock, which this thread keeps until
                // it waits as idle: the accept loop's next `submit` then
                // finds it idle instead of spawning another thread, so
                // threads stay within `max_connections`.
                drop(permit);
                continue;
            }
            if st.closed {
                break;
            }
            st.idle += 1;
            let (g, wait) = self
                .cv
                .wait_timeout(st, IDLE_THREAD_EXIT)
                .unwrap_or_else(|e| e.into_inner());
            st = g;
            st.idle -= 1;
            if wait.timed_out() && st.queue.is_empty() {
                break;
            }
        }
        st.live -= 1;
        drop(st);
        self.cv.notify_all();
        drop(rt);
    }

    /// Ends idle threads and waits (until `deadline`) for all to end.
    fn close(&self, deadline: Instant) {
        let mut st = self.lock();
        st.closed = true;
        st.queue.clear();
        self.cv.notify_all();
        while st.live > 0 {
            let now = Instant::now();
            if now >= deadline {
                return;
            }
            st = self
                .cv
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

/// What every connection needs.
struct ServeCtx {
    builder: http1::Builder,
    cfg: ServerConfig,
    groups: Arc<dyn GroupLookup>,
    shutdown: watch::Receiver<bool>,
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
    let conns = Arc::new(Semaphore::new(cfg.max_connections));
    let listener_closed = Arc::new(AtomicBool::new(false));
    let threads = Arc::new(ConnThreads {
        state: Mutex::new(ThreadsState::default()),
        cv: Condvar::new(),
        name: cfg.thread_name.clone(),
    });
    let h = ServerHandle {
        shutdown: tx,
        conns: conns.clone(),
        max_connections: cfg.max_connections,
        listener_closed: listener_closed.clone(),
        threads: threads.clone(),
    };
    let builder = http1_builder(&cfg);
    let ctx = Arc::new(ServeCtx {
        builder,
        cfg,
        groups,
        shutdown: rx.clone(),
    });
    handle.spawn(accept_loop(listener, ctx, threads, conns, rx, listener_closed));
    Ok(h)
}

/// The HTTP/1.1 settings of every connection (and of the fuzzing entry).
fn http1_builder(cfg: &ServerConfig) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(cfg.idle_timeout)
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

async fn accept_loop(
    listener: tokio::net::TcpListener,
    ctx: Arc<ServeCtx>,
    threads: Arc<ConnThreads>,
    conns: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
    listener_closed: Arc<AtomicBool>,
) {
    loop {
        let permit = tokio::select! {
            p = conns.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = wait_shutdown(&mut shutdown) => break,
        };
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors or a connection reset before
                    // accept: back off briefly rather than spin.
                    log::warn!("peer server: accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
            _ = wait_shutdown(&mut shutdown) => break,
        };
        let _ = stream.set_nodelay(true);
        // Moves to the serving thread's own runtime (still non-blocking).
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        threads.submit(Job { stream, permit }, &ctx);
    }
    drop(listener);
    listener_closed.store(true, Ordering::Release);
}

/// Serves one connection on the current (connection thread's) runtime.
/// Returns the connection's permit, for the caller to give back.
async fn serve_conn(job: Job, ctx: Arc<ServeCtx>) -> OwnedSemaphorePermit {
    let Job { stream, permit } = job;
    let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
        return permit;
    };
    let mut shutdown = ctx.shutdown.clone();
    let svc_ctx = ctx.clone();
    let svc = service_fn(move |req| {
        let ctx = svc_ctx.clone();
        async move {
            let mut resp = route(req, &ctx.cfg, &*ctx.groups).await;
            // Tells our clients that this node implements PUT and DELETE.
            resp.headers_mut()
                .insert(PEER_HEADER, header::HeaderValue::from_static(PEER_HEADER_VALUE));
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = ctx.builder.serve_connection(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = wait_shutdown(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    permit
}

/// A response body of up to three chunks, so a large value is written from
/// the engine's own `Bytes` without being copied into an encoding buffer.
pub(crate) struct Chunks {
    parts: [Bytes; 3],
    next: usize,
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
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-content-type-options", "nosniff")
        .body(Chunks::one(Bytes::from(body)))
        .expect("valid response")
}

fn ok_empty() -> Response<Chunks> {
    Response::new(Chunks::one(Bytes::new()))
}

fn error_response(e: &Error) -> Response<Chunks> {
    let status = match e {
        Error::NotFound => StatusCode::NOT_FOUND,
        Error::Closed => StatusCode::SERVICE_UNAVAILABLE,
        Error::Timeout(_) | Error::InProgress => StatusCode::GATEWAY_TIMEOUT,
        Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        Error::LoaderFailed(_) | Error::PeerFailed(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, &e.to_string())
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
    /// No '/' after the group, or a bad escape.
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
        return Target::Malformed("expected {group}/{key}");
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

/// Runs an engine call. It may block (a getter) and that is fine: this
/// thread serves only this connection (see `ConnThreads`). A panic is
/// caught here; the engine catches getters' panics itself, so this is only a
/// backstop that keeps the connection's thread alive.
async fn blocking<T>(f: impl FnOnce() -> T) -> Result<T, Response<Chunks>> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| {
        log::error!("peer server: the engine panicked answering a peer");
        text(StatusCode::INTERNAL_SERVER_ERROR, "the engine panicked")
    })
}

async fn route(req: Request<Incoming>, cfg: &ServerConfig, groups: &dyn GroupLookup) -> Response<Chunks> {
    let Some(auth) = &cfg.auth else {
        return serve(req, cfg, groups).await;
    };
    // GET /metrics is left open for scrapers, which cannot sign: it names
    // groups and counts, no keys or values (README, "Metrics").
    if req.method() == Method::GET && req.uri().path() == "/metrics" {
        return serve(req, cfg, groups).await;
    }
    // The head first: a request that is not signed for this node reads no
    // body and never reaches the engine. Then the body, within the usual
    // limits, which must be the one signed.
    let unauthorized = |method: &Method, why: super::auth::Refusal| {
        log::debug!("peer server: refused a {method} request: {why}");
        text(StatusCode::UNAUTHORIZED, "unauthorized")
    };
    let head = match auth.check_request(req.method(), req.uri(), req.headers()) {
        Ok(h) => h,
        Err(why) => return unauthorized(req.method(), why),
    };
    let (parts, body) = req.into_parts();
    let body = if body.is_end_stream() {
        Bytes::new() // a GET or DELETE: no timer, no collecting
    } else {
        match read_request_body(body, cfg).await {
            Ok(b) => b,
            Err(resp) => return resp,
        }
    };
    if let Err(why) = auth.check_body(head, &body) {
        return unauthorized(&parts.method, why);
    }
    serve(Request::from_parts(parts, Full::new(body)), cfg, groups).await
}

/// Routes a request that is authorised (or needs no authorisation).
async fn serve<B>(req: Request<B>, cfg: &ServerConfig, groups: &dyn GroupLookup) -> Response<Chunks>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (group, key) = match parse_target(req.uri().path(), &cfg.base_path) {
        Target::Ok { group, key } => (group, key),
        Target::NotOurs if req.uri().path() == "/metrics" && req.method() == Method::GET => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")
                .body(Chunks::one(Bytes::from(groups.metrics())))
                .expect("valid response");
        }
        Target::NotOurs => return text(StatusCode::NOT_FOUND, "404 page not found"),
        Target::Malformed(why) => {
            log::debug!(
                "peer server: {} {}: bad request: {why}",
                req.method(),
                req.uri().path()
            );
            return text(StatusCode::BAD_REQUEST, &format!("bad request: {why}"));
        }
        Target::NoSuchGroup(g) => return text(StatusCode::NOT_FOUND, &format!("no such group: {g}")),
    };
    let Some(svc) = groups.lookup(&group) else {
        log::debug!("peer server: a peer asked for cache {group:?}, which this node does not have");
        return text(StatusCode::NOT_FOUND, &format!("no such group: {group}"));
    };
    match *req.method() {
        Method::GET => match blocking(move || svc.get_for_peer(&key)).await {
            Ok(Ok(v)) => Response::builder()
                .header(header::CONTENT_TYPE, PROTOBUF)
                .body(get_response_body(v))
                .expect("valid response"),
            Ok(Err(e)) => {
                if !matches!(e, Error::NotFound) {
                    log::warn!("peer server: answering a GET for cache {group:?}: {e}");
                }
                error_response(&e)
            }
            Err(resp) => resp,
        },
        Method::PUT => {
            let body = match read_request_body(req.into_body(), cfg).await {
                Ok(b) => b,
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
            match blocking(move || svc.set_from_peer(&key, value)).await {
                Ok(()) => ok_empty(),
                Err(resp) => resp,
            }
        }
        Method::DELETE => match blocking(move || svc.remove_from_peer(&key)).await {
            Ok(()) => ok_empty(),
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

async fn read_request_body<B>(body: B, cfg: &ServerConfig) -> Result<Bytes, Response<Chunks>>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = cfg.max_body_bytes;
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body larger than {max} bytes"),
        )
    };
    if body.size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    match tokio::time::timeout(cfg.body_timeout, Limited::new(body, max).collect()).await {
        Err(_) => Err(text(StatusCode::REQUEST_TIMEOUT, "timed out reading the body")),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(e)) => Err(text(StatusCode::BAD_REQUEST, &format!("reading body: {e}"))),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// For fuzz/ only, not an API: serves `raw` as everything one client sent
/// on a connection (then EOF), with the server's real HTTP/1.1 settings and
/// routing, `group` served under its name; returns every byte the server
/// wrote. Limits are small (64 KiB bodies, 16 KiB heads, 50 ms timeouts).
/// Panics if the server neither answers nor closes within 5 s.
#[doc(hidden)]
pub fn serve_raw_for_fuzzing(group: &Arc<Group>, raw: &[u8]) -> Vec<u8> {
    serve_raw(group, raw, None).0
}

/// For fuzz/ only: [`serve_raw_for_fuzzing`] with a server that requires
/// requests signed under `secret` for node [`FUZZ_NODE`] at the fixed
/// time [`FUZZ_NOW_MS`] (so that signed seeds stay valid). Also returns how
/// many requests got past authentication to a group lookup.
#[doc(hidden)]
pub fn serve_raw_signed_for_fuzzing(group: &Arc<Group>, raw: &[u8], secret: &[u8]) -> (Vec<u8>, usize) {
    fn fixed_clock() -> u64 {
        FUZZ_NOW_MS
    }
    let auth = Verifier::with_clock(secret, FUZZ_NODE, fixed_clock, 64);
    serve_raw(group, raw, Some(Arc::new(auth)))
}

/// The node the signed fuzzing server answers as.
#[doc(hidden)]
pub const FUZZ_NODE: &str = "127.0.0.1:7000";
/// The signed fuzzing server's clock, Unix milliseconds.
#[doc(hidden)]
pub const FUZZ_NOW_MS: u64 = 1_800_000_000_000;

fn serve_raw(group: &Arc<Group>, raw: &[u8], auth: Option<Arc<Verifier>>) -> (Vec<u8>, usize) {
    use std::sync::atomic::AtomicUsize;
    struct OneGroup(Arc<Group>, AtomicUsize);
    impl GroupLookup for OneGroup {
        fn lookup(&self, name: &str) -> Option<Arc<dyn PeerService>> {
            self.1.fetch_add(1, Ordering::Relaxed);
            (name == self.0.name()).then(|| self.0.clone() as Arc<dyn PeerService>)
        }
        fn metrics(&self) -> String {
            super::metrics::render(&mut vec![(self.0.name().to_string(), self.0.stats())])
        }
    }
    /// The client's bytes in, the server's out.
    struct MemIo {
        input: Bytes,
        output: Arc<Mutex<Vec<u8>>>,
    }
    impl hyper::rt::Read for MemIo {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            mut buf: hyper::rt::ReadBufCursor<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self.input.len().min(buf.remaining());
            let chunk = self.input.split_to(n);
            buf.put_slice(&chunk);
            Poll::Ready(Ok(()))
        }
    }
    impl hyper::rt::Write for MemIo {
        fn poll_write(
            self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.output.lock().unwrap().extend_from_slice(buf);
            Poll::Ready(Ok(buf.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    thread_local! {
        static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a current-thread runtime");
    }
    let cfg = Arc::new(ServerConfig {
        base_path: "/_groupcache/".to_string(),
        max_body_bytes: 64 << 10,
        max_header_bytes: 16 << 10,
        max_connections: 1,
        idle_timeout: Duration::from_millis(50),
        body_timeout: Duration::from_millis(50),
        thread_name: "fuzz".to_string(),
        auth,
    });
    let one = Arc::new(OneGroup(group.clone(), AtomicUsize::new(0)));
    let groups: Arc<dyn GroupLookup> = one.clone();
    let output = Arc::new(Mutex::new(Vec::new()));
    let io = MemIo {
        input: Bytes::copy_from_slice(raw),
        output: output.clone(),
    };
    let mut builder = http1_builder(&cfg);
    // The input ends in EOF: answer what was asked before closing (the
    // production setting closes at once on EOF mid-request).
    builder.half_close(true);
    let svc = service_fn(move |req| {
        let (cfg, groups) = (cfg.clone(), groups.clone());
        async move {
            let mut resp = route(req, &cfg, &*groups).await;
            resp.headers_mut()
                .insert(PEER_HEADER, header::HeaderValue::from_static(PEER_HEADER_VALUE));
            Ok::<_, Infallible>(resp)
        }
    });
    RT.with(|rt| {
        rt.block_on(async {
            let conn = builder.serve_connection(io, svc);
            if tokio::time::timeout(Duration::from_secs(5), conn).await.is_err() {
                panic!("the server neither answered nor closed within 5 s");
            }
        })
    });
    let out = std::mem::take(&mut *output.lock().unwrap());
    (out, one.1.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzz_entry_serves() {
        let g = Group::new("g", 1 << 20, None);
        g.set(b"k", b"value", 0).unwrap();
        let out = serve_raw_for_fuzzing(&g, b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\n\r\n");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        assert!(out.ends_with(b"\x0a\x05value"), "{text}");
        let out = serve_raw_for_fuzzing(&g, b"GET /_groupcache/g HTTP/1.1\r\n\r\n");
        assert!(out.starts_with(b"HTTP/1.1 400"));
        assert!(serve_raw_for_fuzzing(&g, b"").is_empty());
    }

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
        assert!(matches!(parse_target("/_groupcache/g", b), Target::Malformed(_)));
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
