//! A pool's settings ([`PoolOptions`], their defaults and bounds), the
//! checks `Pool::new` makes of them and of peer URLs, and [`PoolError`].

use super::*;

/// Upper bounds of `server_workers` and `max_connections`.
pub const MAX_SERVER_WORKERS: usize = 4096;
pub const MAX_CONNECTIONS: usize = 1 << 20;

/// Settings of a [`Pool`]. `PoolOptions::default()` gives the values below.
#[derive(Clone, Debug)]
pub struct PoolOptions {
    /// Whole-request deadline for a call to a peer (connect, send, answer,
    /// body). Past it the engine loads the key locally. Default 2 s: far
    /// above a loopback or LAN round trip, short enough that a hung peer
    /// costs a caller little. A getter at the owner that takes longer than
    /// this makes callers load locally too (a duplicate load), so raise it
    /// for slow getters.
    pub timeout: Duration,
    /// Deadline for opening a TCP connection to a peer (within `timeout`).
    /// Default 1 s.
    pub connect_timeout: Duration,
    /// Points per node on the consistent hash. Default 50, as Go's
    /// `HTTPPool`; every node of a cluster must use the same number.
    pub replicas: usize,
    /// Path prefix of the protocol, with leading and trailing '/'.
    /// Default "/_groupcache/", as Go's.
    pub base_path: String,
    /// Largest request body the server accepts (a PUT; 413 past it) and
    /// response body the client accepts (a GET). Default 64 MiB + 64 KiB: a
    /// 64 MiB value plus its protobuf framing and key.
    pub max_body_bytes: usize,
    /// Request bodies the server holds at once, all connections together;
    /// a body that does not fit gets 503. A Content-Length is reserved
    /// whole before the body is read, a chunked body as it arrives. A body
    /// larger than the budget (up to `max_body_bytes`) is taken when no
    /// other is in flight. Default 64 MiB.
    pub body_budget_bytes: usize,
    /// Largest request head (request line with the escaped key, plus
    /// headers) the server accepts; 431 past it. Default 128 KiB, room for
    /// keys of 40 KiB even when every byte is escaped.
    pub max_header_bytes: usize,
    /// Connections the server keeps open at once. When full, a new
    /// connection takes the place of the one that has waited longest
    /// without completing a request (idle, or stalled sending one); when
    /// all are being served, it gets a 503 and is closed. Default 0: half
    /// the soft RLIMIT_NOFILE at `Pool::new` (at least 16, at most 16,384),
    /// leaving the other half to the rest of the process. With several
    /// pools in one process, each takes that much: set it.
    pub max_connections: usize,
    /// How long a client has to send a request head: from the accept for
    /// the first request, from its first byte for later ones. A connection
    /// past it is closed. Default 10 s.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may idle between requests. Default
    /// 120 s, longer than the idle timeouts of our client (30 s) and Go's
    /// (90 s), so that clients close idle connections first.
    pub idle_timeout: Duration,
    /// How long the server waits for a whole request body (408 past it).
    /// Default 10 s.
    pub body_timeout: Duration,
    /// Most keys one batch request carries (`get_many` of keys another
    /// node owns; see the batch route in docs/peer-protocol.md). The
    /// client splits larger batches into requests of at most this many
    /// keys; the server answers a request with more a 400 (its keys then
    /// load locally), so give every node the same value. Default 1024.
    pub max_batch_keys: usize,
    /// Threads that run peers' requests that may block (a miss runs the
    /// getter; a large PUT copies its value) at once; more requests wait
    /// for a turn, at no thread's cost. Cache hits are answered without
    /// one. Default 64.
    pub server_workers: usize,
    /// Idle keep-alive connections kept per peer by the pooled client that
    /// serves callers inside a tokio runtime. Default 64. (Plain calling
    /// threads keep one connection per peer each; see `client`.)
    pub max_idle_per_peer: usize,
    /// Async worker threads of the pool's runtime (accepting, client I/O).
    /// Default 2.
    pub worker_threads: usize,
    /// Most blocking threads of the pool's runtime (host name lookups of
    /// peer URLs). Default 64.
    pub max_blocking_threads: usize,
    /// A shared secret: when set, every request to and from this node is
    /// signed (see `peers::auth`), bound to the node it is addressed to,
    /// and requests not signed for this node get 401. Every node of the
    /// cluster needs the same one, and each node's self URL must be its URL
    /// as the peer lists spell it; Go nodes cannot take part. Default none:
    /// the port serves cache contents to anyone who reaches it.
    pub secret: Option<String>,
    /// How long [`Pool::close`] keeps the node serving, with `GET /healthz`
    /// answering 503, before it stops accepting: time for readiness probes
    /// to fail and for the other nodes' membership (a headless Service's
    /// DNS, refreshed every few seconds) to drop this node, so that peers
    /// that still send it requests in that window are answered. `close`
    /// blocks for this long. Default 0: no drain (the 503 is then seen
    /// only by requests racing the shutdown).
    pub drain: Duration,
    /// Membership from DNS instead of `set_peers` (see `peers::dns`):
    /// `dns+http://NAME:PORT` (or a port range `FIRST-LAST`),
    /// `dns+srv+http://_service._proto.NAME`, or `https` forms. Looked up
    /// when the pool is made and every `peers_refresh`. Default none: the
    /// application calls `set_peers`.
    pub peers_from: Option<String>,
    /// How often `peers_from` is looked up again. Default 5 s; at least
    /// 100 ms.
    pub peers_refresh: Duration,
    /// The DNS server for `peers_from`, in place of /etc/resolv.conf's.
    /// Default none.
    pub nameserver: Option<SocketAddr>,
    /// TLS (see `peers::tls`): the node's certificate chain (PEM, leaf
    /// first) and private key. With both, the node serves https only, its
    /// URL and its peers' are https://, and it presents this certificate
    /// to peers that ask for one. Default none: plain http.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) (PEM) that peers' certificates must chain to:
    /// the client checks servers against it, and the server requires a
    /// client certificate signed by it (mutual TLS). Needs `tls_cert` and
    /// `tls_key`. Default none: servers are checked against the system's
    /// trust store and clients present no certificate.
    ///
    /// With it, a client that presents no certificate still finishes the
    /// handshake, and is answered `GET`/`HEAD /healthz` only (403 for
    /// everything else): kubelet's HTTPS readiness probes have none.
    pub tls_ca: Option<PathBuf>,
    /// The DNS name every peer's certificate is checked against, in place
    /// of the host of the peer's URL (the connection still goes to the
    /// URL's address): for peers whose URLs are IP addresses (pods found
    /// through DNS) and one certificate that names the cluster, e.g. the
    /// headless Service. Needs `tls_cert` and `tls_key`. Default none:
    /// the URL's host.
    pub tls_server_name: Option<String>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(1),
            replicas: Ring::DEFAULT_REPLICAS,
            base_path: DEFAULT_BASE_PATH.to_string(),
            max_body_bytes: (64 << 20) + (64 << 10),
            body_budget_bytes: 64 << 20,
            max_header_bytes: 128 << 10,
            max_connections: 0,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(10),
            max_batch_keys: crate::peers::proto::DEFAULT_MAX_BATCH_KEYS,
            server_workers: 64,
            max_idle_per_peer: 64,
            worker_threads: 2,
            max_blocking_threads: 64,
            secret: None,
            drain: Duration::ZERO,
            peers_from: None,
            peers_refresh: Duration::from_secs(5),
            nameserver: None,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            tls_server_name: None,
        }
    }
}

/// Why a pool operation failed. Maps to `cache_status` as named.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolError {
    /// A bad address, URL or option (CACHE_INVALID_ARGUMENT).
    InvalidArgument(String),
    /// A group of that name is already registered (CACHE_ALREADY_EXISTS).
    AlreadyExists(String),
    /// The address could not be bound, or the runtime not started (CACHE_IO).
    Io(String),
    /// The pool is closed (CACHE_CLOSED).
    Closed,
}

impl fmt::Display for PoolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolError::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            PoolError::AlreadyExists(n) => write!(f, "a group named {n:?} is already in this pool"),
            PoolError::Io(m) => write!(f, "i/o error: {m}"),
            PoolError::Closed => f.write_str("the pool is closed"),
        }
    }
}

impl std::error::Error for PoolError {}

/// Checks a peer or self URL: `http://host[:port][/path]`, or `https://`
/// on a node with TLS (`tls`), nothing else. A cluster does not mix them:
/// a TLS node's server speaks only https, and an https node reached over
/// http would be a downgrade.
pub(crate) fn check_url(url: &str, tls: bool) -> Result<(), PoolError> {
    let bad = |why: &str| PoolError::InvalidArgument(format!("peer URL {url:?}: {why}"));
    let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
    match (uri.scheme_str(), tls) {
        (Some("http"), false) | (Some("https"), true) => {}
        (Some("https"), false) => {
            return Err(bad(
                "https:// needs TLS on this node (tls_cert and tls_key); use http:// without it",
            ))
        }
        (Some("http"), true) => {
            return Err(bad(
                "this node has TLS (tls_cert): every peer URL must be https:// (a cluster does not \
                 mix http and https)",
            ))
        }
        _ => {
            return Err(bad(if tls {
                "must start with https://"
            } else {
                "must start with http://"
            }))
        }
    }
    let Some(auth) = uri.authority().filter(|a| !a.host().is_empty()) else {
        return Err(bad("no host"));
    };
    // The parser takes "host:99999" as a host without a port, which would
    // mean port 80: a port that is there must be a valid one.
    let after_host = auth
        .as_str()
        .rsplit_once('@')
        .map_or(auth.as_str(), |(_, hp)| hp)
        .strip_prefix(auth.host())
        .unwrap_or("");
    if let Some(port) = after_host.strip_prefix(':') {
        if !port.is_empty() && port.parse::<u16>().is_err() {
            return Err(bad("the port must be a number from 0 to 65535"));
        }
    }
    if uri.query().is_some() {
        return Err(bad("a query is not allowed"));
    }
    Ok(())
}

/// The most points per node on the consistent hash.
pub const MAX_REPLICAS: usize = 10_000;

/// The largest request head the server may be told to accept.
pub const MAX_HEADER_BYTES: usize = 64 << 20;

/// The most async worker threads a pool's runtime may have.
pub const MAX_WORKER_THREADS: usize = 1024;

/// Upper bound of `max_batch_keys`.
pub const MAX_BATCH_KEYS: usize = 1 << 20;

/// The longest timeout (about 49.7 days: what the C API's `uint32_t`
/// milliseconds can say).
pub const MAX_TIMEOUT: Duration = Duration::from_millis(u32::MAX as u64);

/// The shortest `peers_refresh`: more often would load the DNS server for
/// nothing.
pub const MIN_PEERS_REFRESH: Duration = Duration::from_millis(100);

/// Checks `o` before anything is bound or read; returns its `peers_from`,
/// parsed.
pub(super) fn check_options(o: &PoolOptions) -> Result<Option<PeerSource>, PoolError> {
    let bad = |m: &str| Err(PoolError::InvalidArgument(m.to_string()));
    if !(1..=MAX_REPLICAS).contains(&o.replicas) {
        return bad(&format!(
            "replicas must be 1 to {MAX_REPLICAS}, not {}",
            o.replicas
        ));
    }
    if !o.base_path.starts_with('/') || !o.base_path.ends_with('/') {
        return bad("base_path must start and end with '/'");
    }
    if o.base_path.parse::<Uri>().is_err() || o.base_path.contains(['?', '#', '%']) {
        return bad("base_path must be a plain URL path");
    }
    if o.timeout.is_zero()
        || o.connect_timeout.is_zero()
        || o.header_timeout.is_zero()
        || o.idle_timeout.is_zero()
        || o.body_timeout.is_zero()
    {
        return bad("timeouts must be positive");
    }
    for (name, d) in [
        ("timeout", o.timeout),
        ("connect_timeout", o.connect_timeout),
        ("header_timeout", o.header_timeout),
        ("idle_timeout", o.idle_timeout),
        ("body_timeout", o.body_timeout),
        ("drain", o.drain),
    ] {
        if d > MAX_TIMEOUT {
            return bad(&format!("{name} must be at most {MAX_TIMEOUT:?}, not {d:?}"));
        }
    }
    if o.worker_threads == 0 || o.max_blocking_threads == 0 || o.server_workers == 0 {
        return bad("worker_threads, max_blocking_threads and server_workers must be at least 1");
    }
    if o.server_workers > MAX_SERVER_WORKERS {
        return bad(&format!("server_workers must be at most {MAX_SERVER_WORKERS}"));
    }
    if !(8192..=MAX_HEADER_BYTES).contains(&o.max_header_bytes) {
        return bad(&format!(
            "max_header_bytes must be 8192 to {MAX_HEADER_BYTES}, not {}",
            o.max_header_bytes
        ));
    }
    if o.worker_threads > MAX_WORKER_THREADS {
        return bad(&format!(
            "worker_threads must be at most {MAX_WORKER_THREADS}, not {}",
            o.worker_threads
        ));
    }
    if o.secret.as_deref().is_some_and(str::is_empty) {
        return bad("secret must not be empty (None for no secret)");
    }
    if o.max_connections > MAX_CONNECTIONS {
        return bad(&format!(
            "max_connections must be at most {MAX_CONNECTIONS} (0: from the fd limit)"
        ));
    }
    if o.max_body_bytes < 1024 {
        return bad("max_body_bytes must be at least 1024");
    }
    if !(1..=MAX_BATCH_KEYS).contains(&o.max_batch_keys) {
        return bad(&format!(
            "max_batch_keys must be 1 to {MAX_BATCH_KEYS}, not {}",
            o.max_batch_keys
        ));
    }
    if o.body_budget_bytes == 0 {
        return bad("body_budget_bytes must be at least 1");
    }
    let source = match &o.peers_from {
        Some(spec) => Some(PeerSource::parse(spec).map_err(PoolError::InvalidArgument)?),
        None => None,
    };
    if o.peers_refresh < MIN_PEERS_REFRESH || o.peers_refresh > MAX_TIMEOUT {
        return bad(&format!(
            "peers_refresh must be {MIN_PEERS_REFRESH:?} to {MAX_TIMEOUT:?}, not {:?}",
            o.peers_refresh
        ));
    }
    if o.tls_cert.is_some() != o.tls_key.is_some() {
        return bad("tls_cert and tls_key go together: set both or neither");
    }
    if o.tls_ca.is_some() && o.tls_cert.is_none() {
        return bad("tls_ca needs tls_cert and tls_key (the node's own certificate)");
    }
    if let Some(name) = &o.tls_server_name {
        if o.tls_cert.is_none() {
            return bad("tls_server_name needs tls_cert and tls_key (TLS between nodes)");
        }
        crate::peers::tls::checked_server_name(name).map_err(PoolError::InvalidArgument)?;
    }
    for (name, p) in [
        ("tls_cert", &o.tls_cert),
        ("tls_key", &o.tls_key),
        ("tls_ca", &o.tls_ca),
    ] {
        if p.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            return bad(&format!("{name} must not be empty (None for no TLS)"));
        }
    }
    Ok(source)
}
