//! The HTTP client side of the peer protocol: one [`HttpPeer`] per remote
//! node, implementing the engine's [`PeerGetter`].
//!
//! All peers of one pool share one hyper-util client (so one pool of
//! keep-alive connections, keyed by host) running on the pool's tokio
//! runtime. The engine's API is blocking; it calls peers from plain threads
//! (an application's `get`) and sometimes from inside a runtime (a
//! `spawn_blocking` thread):
//! - on a plain thread the request runs in `Handle::block_on` on the calling
//!   thread: the response wakes the caller directly, one thread hop fewer
//!   than handing the request to a worker and waiting for it;
//! - inside any runtime context (where `block_on` would panic if it were an
//!   async task), the request is spawned onto the pool's runtime and awaited
//!   on a std channel.
//!
//! Every `HttpPeer` holds the pool's runtime alive ([`RuntimeOwner`]), so a
//! request in flight when its pool closes finishes (or times out) instead of
//! finding its timers gone; the runtime shuts down when the pool and the
//! last peer in use are gone. After close, new requests fail at once.
//!
//! Errors: 404 is [`PeerError::NotFound`] (final: the owner's getter said the
//! key does not exist), except a "no such group" 404 (the peer does not know
//! the group, e.g. it has not registered it yet), which is a failure so the
//! caller falls back to a local load as Go's client would. Everything else
//! (connect error, timeout, another status, a body that is too large, not
//! protobuf or does not decode) is [`PeerError::Failed`].

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Body, Incoming};
use hyper::{header, Method, Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::Message;

use super::escape::escape_into;
use super::proto::{expire_from_wire, expire_to_wire, GetResponse, SetRequest};
use crate::engine::{PeerError, PeerGetter, PeerValue};

/// The `Content-Type` of protobuf bodies, as Go's groupcache sends it.
pub const PROTOBUF: &str = "application/x-protobuf";

/// How long an idle pooled connection is kept. Shorter than the server's
/// idle timeout (ours: 120 s by default; Go's: none) so that the client, not
/// the server, closes idle connections and a reused one is rarely stale.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error body goes into a message.
const ERROR_SNIPPET: usize = 512;

/// Client settings, from [`super::PoolOptions`].
#[derive(Clone, Debug)]
pub(crate) struct ClientConfig {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_idle_per_peer: usize,
}

/// Owns a pool's tokio runtime; shuts it down when the last owner goes.
pub(crate) struct RuntimeOwner {
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    grace: Duration,
}

impl RuntimeOwner {
    pub(crate) fn new(rt: tokio::runtime::Runtime, grace: Duration) -> Arc<RuntimeOwner> {
        Arc::new(RuntimeOwner { rt: Mutex::new(Some(rt)), grace })
    }
}

impl Drop for RuntimeOwner {
    fn drop(&mut self) {
        let Some(rt) = self.rt.get_mut().unwrap_or_else(|e| e.into_inner()).take() else { return };
        if tokio::runtime::Handle::try_current().is_ok() {
            // Inside some runtime (possibly this one's blocking pool):
            // waiting here could wait on ourselves or stall a worker. The
            // threads still end promptly on their own.
            rt.shutdown_background();
        } else {
            // Workers stop at once; this waits (up to `grace`) for getters
            // still running on blocking threads.
            rt.shutdown_timeout(self.grace);
        }
    }
}

/// What every peer of one pool shares.
pub(crate) struct ClientShared {
    client: Client<HttpConnector, Full<Bytes>>,
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
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(cfg.max_idle_per_peer)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(conn);
        Arc::new(ClientShared { client, handle, cfg, closed: AtomicBool::new(false) })
    }

    /// Makes every later request fail at once (the pool is closing).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Runs `fut` on the pool's runtime with the request timeout and waits
    /// for it on this (blocking) thread.
    fn run<T, F>(&self, what: &str, url: &str, fut: F) -> Result<T, PeerError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PeerError>> + Send + 'static,
    {
        let r = if self.closed.load(Ordering::Acquire) {
            Err(PeerError::Failed("the pool is closed".to_string()))
        } else if tokio::runtime::Handle::try_current().is_err() {
            // A plain thread: drive the request here. The runtime cannot
            // shut down meanwhile: the calling `HttpPeer` keeps it alive.
            self.handle.block_on(with_timeout(self.cfg.timeout, fut))
        } else {
            self.spawn_and_wait(fut)
        };
        r.map_err(|e| match e {
            PeerError::Failed(m) => PeerError::Failed(format!("{what} at {url}: {m}")),
            nf => nf,
        })
    }

    fn spawn_and_wait<T, F>(&self, fut: F) -> Result<T, PeerError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, PeerError>> + Send + 'static,
    {
        let timeout = self.cfg.timeout;
        let (tx, rx) = mpsc::sync_channel(1);
        // Dropping the JoinHandle detaches the task; if the runtime is shut
        // down the task is dropped unpolled, `tx` with it: Disconnected.
        drop(self.handle.spawn(async move {
            let _ = tx.send(with_timeout(timeout, fut).await);
        }));
        // The task enforces the timeout; this one is only a backstop in case
        // the runtime stalls.
        match rx.recv_timeout(timeout + Duration::from_secs(1)) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(PeerError::Failed(format!("timed out after {timeout:?}"))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(PeerError::Failed("the pool is closed".to_string())),
        }
    }
}

async fn with_timeout<T>(timeout: Duration, fut: impl Future<Output = Result<T, PeerError>>) -> Result<T, PeerError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(PeerError::Failed(format!("timed out after {timeout:?}"))),
    }
}

/// One remote node.
pub struct HttpPeer {
    url: String,
    /// `url` without a trailing '/', then the base path: "http://h:p/_groupcache/".
    prefix: String,
    shared: Arc<ClientShared>,
    _runtime: Arc<RuntimeOwner>,
}

impl std::fmt::Debug for HttpPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpPeer").field("url", &self.url).finish()
    }
}

impl HttpPeer {
    pub(crate) fn new(url: &str, base_path: &str, shared: Arc<ClientShared>, runtime: Arc<RuntimeOwner>) -> HttpPeer {
        let prefix = format!("{}{}", url.trim_end_matches('/'), base_path);
        HttpPeer { url: url.to_string(), prefix, shared, _runtime: runtime }
    }

    fn uri(&self, group: &str, key: &[u8]) -> Result<Uri, PeerError> {
        let mut s = String::with_capacity(self.prefix.len() + group.len() + key.len() * 3 + 1);
        s.push_str(&self.prefix);
        escape_into(group.as_bytes(), &mut s);
        s.push('/');
        escape_into(key, &mut s);
        Uri::try_from(s).map_err(|e| PeerError::Failed(format!("bad peer URL {}: {e}", self.url)))
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes) -> Request<Full<Bytes>> {
        let mut b = Request::builder().method(method).uri(uri);
        if !body.is_empty() {
            b = b.header(header::CONTENT_TYPE, PROTOBUF);
        }
        b.body(Full::new(body)).expect("method, URI and header are valid")
    }
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

/// Up to `limit` bytes of a body, for an error message; never fails.
async fn snippet(mut body: Incoming, limit: usize) -> String {
    let mut buf = Vec::new();
    while buf.len() < limit {
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
    if text.is_empty() {
        PeerError::Failed(format!("server returned {status}"))
    } else {
        PeerError::Failed(format!("server returned {status}: {text}"))
    }
}

/// Reads a whole body, at most `max` bytes.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, PeerError> {
    if body.size_hint().lower() > max as u64 {
        return Err(PeerError::Failed(format!("response body larger than {max} bytes")));
    }
    match Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => Err(PeerError::Failed(format!("reading response body: {}", describe(&*e)))),
    }
}

fn is_protobuf(resp: &Response<Incoming>) -> bool {
    resp.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_start().to_ascii_lowercase().starts_with(PROTOBUF))
        .unwrap_or(false)
}

impl PeerGetter for HttpPeer {
    fn get(&self, group: &str, key: &[u8]) -> Result<PeerValue, PeerError> {
        let req = self.request(Method::GET, self.uri(group, key)?, Bytes::new());
        let client = self.shared.client.clone();
        let max = self.shared.cfg.max_body_bytes;
        self.shared.run("GET", &self.url, async move {
            let resp = client.request(req).await.map_err(|e| PeerError::Failed(describe(&e)))?;
            let status = resp.status();
            if status == StatusCode::OK {
                // A 200 without the protobuf type is not a groupcache
                // server (a proxy's page, a misrouted port): garbage that
                // might otherwise decode as an empty value.
                if !is_protobuf(&resp) {
                    return Err(PeerError::Failed("200 without Content-Type application/x-protobuf".into()));
                }
                let body = read_body(resp.into_body(), max).await?;
                let m = GetResponse::decode(body)
                    .map_err(|e| PeerError::Failed(format!("decoding response body: {e}")))?;
                return Ok(PeerValue { value: m.value, expire_unix_nanos: expire_from_wire(m.expire) });
            }
            let text = snippet(resp.into_body(), ERROR_SNIPPET).await;
            if status == StatusCode::NOT_FOUND && !text.starts_with("no such group") {
                return Err(PeerError::NotFound);
            }
            Err(status_error(status, &text))
        })
    }

    fn set(&self, group: &str, key: &[u8], value: &PeerValue) -> Result<(), PeerError> {
        let body = SetRequest {
            group: Bytes::copy_from_slice(group.as_bytes()),
            key: Bytes::copy_from_slice(key),
            value: value.value.clone(),
            expire: expire_to_wire(value.expire_unix_nanos),
            hot_cache: false,
        }
        .encode_to_vec();
        let req = self.request(Method::PUT, self.uri(group, key)?, Bytes::from(body));
        self.shared.run("PUT", &self.url, ok_status(self.shared.client.clone(), req))
    }

    fn remove(&self, group: &str, key: &[u8]) -> Result<(), PeerError> {
        let req = self.request(Method::DELETE, self.uri(group, key)?, Bytes::new());
        self.shared.run("DELETE", &self.url, ok_status(self.shared.client.clone(), req))
    }

    fn url(&self) -> &str {
        &self.url
    }
}

/// Sends `req`; 200 is success, anything else a failure.
async fn ok_status(
    client: Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> Result<(), PeerError> {
    let resp = client.request(req).await.map_err(|e| PeerError::Failed(describe(&e)))?;
    let status = resp.status();
    if status == StatusCode::OK {
        // Drain the (empty) body so the connection goes back to the pool.
        let _ = resp.into_body().collect().await;
        return Ok(());
    }
    let text = snippet(resp.into_body(), ERROR_SNIPPET).await;
    Err(status_error(status, &text))
}
