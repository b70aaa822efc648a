//! [`Pool`]: one node of a groupcache cluster (Go's `HTTPPool`, without the
//! globals): it serves the peer protocol on its own address, knows the
//! cluster's membership, picks each key's owner by golang/groupcache's
//! consistent hash, and holds the groups it serves.
//!
//! Threads: each pool owns one small tokio runtime (`worker_threads`
//! workers, named `gcpool-<port>`). It accepts connections and serves each
//! as a task (an idle or slow connection costs no thread), answers cache
//! hits on those workers, and hands what may block (a miss, which calls the
//! getter) to at most `server_workers` threads (`gcwork-<port>`, made when
//! needed, ended after 10 s idle); misses of groups whose loads have been
//! fast run on a runtime worker, one at a time, watched by a thread
//! (`gcwatch-<port>`) that keeps the runtime serving if such a call turns
//! slow (see `server/inline.rs`). It also runs the client for callers
//! inside a runtime context (plain calling threads drive their own
//! requests). [`Pool::close`] (or dropping the pool) stops the server,
//! clears the membership, detaches the groups and shuts the runtime down,
//! so no thread outlives the pool, except while a getter is still running
//! for a peer (its thread ends when the getter returns; `close` waits a
//! second for it) or a request to a peer is still in flight (the runtime
//! ends when it does, within `timeout`).
//!
//! Groups are held weakly: a group dropped by its owner stops being served
//! (404 "no such group") and its name may be registered again. The groups
//! get a picker that refers to the pool's shared state, not to the `Pool`,
//! so dropping the `Pool` always closes it even while groups live on.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::time::Duration;

use hyper::Uri;

use super::client::{ClientConfig, ClientShared, HttpPeer, RuntimeOwner};
use super::dns::PeerSource;
use super::proto::DEFAULT_BASE_PATH;
use super::server::{self, GroupLookup, PeerService, ServerConfig, ServerHandle};
use super::tls::{Tls, TlsFiles};
use crate::engine::{fork, Group, PeerBatch, PeerError, PeerGetter, PeerPicker, PeerValue};
use crate::ring::Ring;

mod discovery;
mod options;
use discovery::DnsState;
pub use discovery::MAX_RING_POINTS;
use options::check_options;
pub(crate) use options::check_url;
pub use options::{
    PoolError, PoolOptions, MAX_BATCH_KEYS, MAX_CONNECTIONS, MAX_HEADER_BYTES, MAX_REPLICAS,
    MAX_SERVER_WORKERS, MAX_TIMEOUT, MAX_WORKER_THREADS, MIN_PEERS_REFRESH,
};

/// How long `close` waits for requests being served to finish.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long `Pool::new` waits for the first DNS round of `peers_from`.
const FIRST_ROUND_WAIT: Duration = Duration::from_secs(5);

// The pool's locks never stay poisoned: every critical section leaves its
// data consistent (a replaced `Arc`, a map entry).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The cluster as this node sees it; replaced whole by `set_peers`, so a
/// request in flight keeps the snapshot (and peer) it started with.
struct Members {
    urls: Vec<String>,
    ring: Ring,
    /// Indexed like `ring.nodes()`: `None` for this node.
    owners: Vec<Option<Arc<dyn PeerGetter>>>,
    /// Every other node once, for broadcasts and batches.
    others: Vec<Arc<HttpPeer>>,
    /// Distinct URLs in `urls` (the `peers` counter).
    distinct: usize,
}

impl Members {
    fn empty(replicas: usize) -> Members {
        Members {
            urls: Vec::new(),
            ring: Ring::new(replicas),
            owners: Vec::new(),
            others: Vec::new(),
            distinct: 0,
        }
    }
}

struct Registered {
    service: Weak<dyn PeerService>,
    /// The engine group, to install and clear its picker; `None` for test
    /// doubles registered with `register_service`.
    group: Option<Weak<Group>>,
}

/// State shared by the `Pool`, the pickers given to groups and the server.
struct Shared {
    /// This state itself, for the tasks it spawns (which must not keep
    /// it alive).
    me: Weak<Shared>,
    self_url: String,
    addr: SocketAddr,
    opts: PoolOptions,
    /// Set when `close` starts (before the drain); `closed` after it.
    closing: AtomicBool,
    closed: AtomicBool,
    members: RwLock<Arc<Members>>,
    groups: RwLock<HashMap<String, Registered>>,
    /// Replaced in a forked child (see [`Shared::after_fork`]).
    client: RwLock<Arc<ClientShared>>,
    /// The process generation (`engine::fork`) that the client side, the
    /// runtime and the server belong to.
    generation: AtomicU64,
    /// The listening socket's descriptor, closed in a forked child (then
    /// -1, so that a grandchild does not close the number again: by then
    /// it may be another file's).
    listener_fd: AtomicI32,
    /// Serialises `after_fork`.
    fork_refresh: Mutex<()>,
    /// Set by `after_fork`: this process is a child of the one that made
    /// the pool, which serves nothing and treats its own URL as a peer.
    in_child: AtomicBool,
    /// Taken at close; peers in use hold their own reference.
    runtime: Mutex<Option<Arc<RuntimeOwner>>>,
    server: Mutex<Option<ServerHandle>>,
    /// Where the membership comes from, with `peers_from`.
    source: Option<Arc<PeerSource>>,
    /// What the DNS rounds found last, to log changes of state only.
    /// Taken before `members` when both are.
    dns_state: Mutex<DnsState>,
    /// Times the membership changed (`set_peers` or a DNS round that
    /// found a different list).
    membership_changes: AtomicU64,
}

impl Shared {
    /// Whether this process is a fork of the one the pool was made in, and
    /// the client side was not rebuilt yet.
    #[inline]
    fn forked(&self) -> bool {
        fork::is_stale(self.generation.load(Ordering::Acquire))
    }

    /// In a child of `fork()`: the runtime's threads and the server do not
    /// exist here, and every connection and the listening socket are
    /// shared with the parent. This gives the pool a runtime and client of
    /// its own (fresh connections), abandons the parent's (never dropped:
    /// dropping would act on objects the parent still uses), and makes it
    /// a client-only node: it serves nothing (the parent keeps the port),
    /// and its own URL becomes a remote peer, so keys the parent owns are
    /// fetched from the parent, as any other node would.
    #[cold]
    fn after_fork(&self) {
        let serial = lock(&self.fork_refresh);
        if !self.forked() {
            return;
        }
        let now = fork::generation();
        // Abandoned, not dropped: the parent's runtime, client and server.
        if let Some(server) = lock(&self.server).take() {
            std::mem::forget(server);
        }
        let old_rt = lock(&self.runtime).take();
        std::mem::forget(old_rt);
        std::mem::forget(read(&self.client).clone());
        // The parent's TLS state (its locks may have been held by another
        // thread at the fork) is left behind too: the files are read again.
        let fresh = if self.closed.load(Ordering::Acquire) {
            None
        } else {
            match tls_files(&self.opts).map(Tls::load).transpose() {
                Ok(tls) => build_client(&self.opts, tls, &format!("gcfork-{}", self.addr.port())).ok(),
                Err(e) => {
                    log::warn!(
                        "pool {}: in a forked child, the TLS files do not load ({e}): peers are not asked",
                        self.self_url
                    );
                    None
                }
            }
        };
        match fresh {
            Some((runtime, client)) => {
                *write(&self.client) = client;
                *lock(&self.runtime) = Some(runtime);
            }
            None => {
                // No runtime: requests to peers fail at once and keys load
                // here (the engine's rule for a failing peer).
                read(&self.client).close();
            }
        }
        self.in_child.store(true, Ordering::Release);
        let urls = read(&self.members).urls.clone();
        let runtime = lock(&self.runtime).clone();
        let members = match runtime {
            Some(rt) => self.build_members(&urls, &rt, None, true),
            None => Members::empty(self.opts.replicas),
        };
        *write(&self.members) = Arc::new(members);
        // Last: other threads skip `after_fork` from here on, and must find
        // the child's membership.
        self.generation.store(now, Ordering::Release);
        // The parent's refresh task does not run here (its runtime's
        // threads do not exist): the child looks DNS up itself, to route
        // keys by the cluster as it is now, not as it was at the fork.
        if let Some(rt) = lock(&self.runtime).clone() {
            self.spawn_refresh(rt.handle(), None);
        }
        // Logged with no lock held: the log callback may wait for Python's
        // GIL, whose holder may be forking (and taking our locks).
        drop(serial);
        log::info!(
            "pool {}: in a forked child (pid {}): serving nothing here, sending to peers on new connections",
            self.self_url,
            std::process::id()
        );
    }

    /// The membership for `urls`. `reuse`: the current one, whose peer
    /// objects are kept for nodes that stay. `self_is_remote`: in a forked
    /// child, this node's URL is the parent's, a peer like the others.
    fn build_members(
        &self,
        urls: &[String],
        runtime: &Arc<RuntimeOwner>,
        reuse: Option<&Members>,
        self_is_remote: bool,
    ) -> Members {
        // Keep the peer objects of nodes that stay (they are cheap, but this
        // keeps `Arc` identity stable for the engine).
        let mut existing: HashMap<&str, Arc<HttpPeer>> = reuse
            .map(|m| m.others.iter().map(|p| (p.url(), p.clone())).collect())
            .unwrap_or_default();
        let client = read(&self.client).clone();
        let mut ring = Ring::new(self.opts.replicas);
        ring.add(urls.iter().cloned());
        let mut others: Vec<Arc<HttpPeer>> = Vec::new();
        let mut made: HashMap<String, Arc<HttpPeer>> = HashMap::new();
        let mut owners = Vec::with_capacity(urls.len());
        for u in ring.nodes() {
            if *u == self.self_url && !self_is_remote {
                owners.push(None);
                continue;
            }
            let peer = match made.get(u.as_str()) {
                Some(p) => p.clone(),
                None => {
                    let p = existing.remove(u.as_str()).unwrap_or_else(|| {
                        Arc::new(HttpPeer::new(
                            u,
                            &self.opts.base_path,
                            client.clone(),
                            runtime.clone(),
                        ))
                    });
                    made.insert(u.clone(), p.clone());
                    others.push(p.clone());
                    p
                }
            };
            owners.push(Some(peer as Arc<dyn PeerGetter>));
        }
        let distinct = others.len() + usize::from(owners.iter().any(Option::is_none));
        Members {
            urls: urls.to_vec(),
            ring,
            owners,
            others,
            distinct,
        }
    }

    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        if self.closed.load(Ordering::Acquire) {
            return None;
        }
        if self.forked() {
            self.after_fork();
        }
        let m = read(&self.members);
        let i = m.ring.get_index(key)?;
        m.owners[i].clone()
    }

    fn membership(&self) -> (u64, u64) {
        let peers = read(&self.members).distinct as u64;
        (peers, self.membership_changes.load(Ordering::Relaxed))
    }

    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        if self.closed.load(Ordering::Acquire) {
            return Vec::new();
        }
        if self.forked() {
            self.after_fork();
        }
        let m = read(&self.members);
        m.others
            .iter()
            .map(|p| p.clone() as Arc<dyn PeerGetter>)
            .collect()
    }

    /// `PeerPicker::get_many_from`: the batches to peers of this pool's
    /// membership go out together from the caller's thread (see
    /// `client::get_many_all`); a peer that has left it meanwhile is asked
    /// through its own `get_many`, after the others.
    fn get_many_from(
        &self,
        group: &str,
        batches: &[PeerBatch<'_>],
    ) -> Vec<Vec<Result<PeerValue, PeerError>>> {
        let members = read(&self.members).clone();
        let mut ours: Vec<(&HttpPeer, &[&[u8]])> = Vec::with_capacity(batches.len());
        let mut ours_at = Vec::with_capacity(batches.len());
        let mut gone = Vec::new();
        for (b, (peer, keys)) in batches.iter().enumerate() {
            let addr = Arc::as_ptr(peer) as *const ();
            match members
                .others
                .iter()
                .find(|h| Arc::as_ptr(h) as *const () == addr)
            {
                Some(h) => {
                    ours.push((&**h, &keys[..]));
                    ours_at.push(b);
                }
                None => gone.push(b),
            }
        }
        let mut out: Vec<Vec<Result<PeerValue, PeerError>>> = batches.iter().map(|_| Vec::new()).collect();
        for (b, rs) in ours_at.into_iter().zip(super::client::get_many_all(group, &ours)) {
            out[b] = rs;
        }
        for b in gone {
            out[b] = batches[b].0.get_many(group, &batches[b].1);
        }
        out
    }
}

impl fork::ForkLocks for Shared {
    fn lock_for_fork(&self, guards: &mut fork::Guards) {
        // Never held together, except `fork_refresh` (taken first) with
        // the others, and `dns_state` before `members`.
        // SAFETY: (all) the registry holds `self` alive until the guards
        // are dropped.
        unsafe {
            guards.keep(lock(&self.fork_refresh));
            guards.keep(lock(&self.dns_state));
            guards.keep(write(&self.members));
            guards.keep(write(&self.groups));
            guards.keep(write(&self.client));
            guards.keep(lock(&self.runtime));
            guards.keep(lock(&self.server));
        }
    }

    fn in_child(&self) {
        // The parent keeps serving on the port; the child's copy of the
        // listening socket would keep it bound after the parent is gone
        // (connections would queue where nobody accepts). close() is
        // async-signal-safe; the descriptor number stays owned by the
        // abandoned listener object, which is never dropped here.
        let fd = self.listener_fd.swap(-1, Ordering::AcqRel);
        if fd >= 0 && !self.closed.load(Ordering::Acquire) {
            // SAFETY: our own listener's descriptor, inherited by this
            // child; nothing in the child uses it (the server's threads do
            // not exist here and `after_fork` abandons its objects).
            unsafe { libc::close(fd) };
        }
    }
}

/// The TLS files of `options`, if it has TLS.
fn tls_files(options: &PoolOptions) -> Option<TlsFiles> {
    Some(TlsFiles {
        cert: options.tls_cert.clone()?,
        key: options.tls_key.clone()?,
        ca: options.tls_ca.clone(),
        server_name: options.tls_server_name.clone(),
    })
}

/// A runtime and a client for a pool, named `name`.
fn build_client(
    options: &PoolOptions,
    tls: Option<Arc<Tls>>,
    name: &str,
) -> Result<(Arc<RuntimeOwner>, Arc<ClientShared>), PoolError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.worker_threads)
        .max_blocking_threads(options.max_blocking_threads)
        .thread_name(name)
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| PoolError::Io(format!("starting the runtime: {e}")))?;
    let client = ClientShared::new(runtime.handle().clone(), client_config(options, tls));
    Ok((RuntimeOwner::new(runtime, CLOSE_GRACE), client))
}

fn client_config(options: &PoolOptions, tls: Option<Arc<Tls>>) -> ClientConfig {
    ClientConfig {
        timeout: options.timeout,
        connect_timeout: options.connect_timeout,
        max_body_bytes: options.max_body_bytes,
        max_idle_per_peer: options.max_idle_per_peer,
        max_batch_keys: options.max_batch_keys,
        secret: options.secret.as_ref().map(|s| Arc::from(s.as_bytes())),
        tls,
    }
}

/// The lookup the server uses; holds the shared state weakly so the server
/// task never keeps a closed pool's state alive.
struct Lookup(Weak<Shared>);

impl GroupLookup for Lookup {
    fn lookup(&self, name: &str) -> Option<Arc<dyn PeerService>> {
        let shared = self.0.upgrade()?;
        let groups = read(&shared.groups);
        groups.get(name)?.service.upgrade()
    }

    fn metrics(&self) -> String {
        let Some(shared) = self.0.upgrade() else {
            return String::new();
        };
        let mut stats: Vec<(String, crate::engine::Stats)> = {
            let groups = read(&shared.groups);
            groups
                .iter()
                .filter_map(|(name, r)| Some((name.clone(), r.group.as_ref()?.upgrade()?.stats())))
                .collect()
        };
        let mut text = super::metrics::render(&mut stats);
        let (peers, changes) = shared.membership();
        text.push_str(&super::metrics::render_membership(peers, changes));
        text
    }
}

/// The picker installed in registered groups.
struct Picker(Arc<Shared>);

impl PeerPicker for Picker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        self.0.pick_peer(key)
    }
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        self.0.all_peers()
    }
    fn membership(&self) -> (u64, u64) {
        self.0.membership()
    }
    fn get_many_from(
        &self,
        group: &str,
        batches: &[PeerBatch<'_>],
    ) -> Vec<Vec<Result<PeerValue, PeerError>>> {
        self.0.get_many_from(group, batches)
    }
}

/// One node of a cluster. See the module documentation.
pub struct Pool {
    shared: Arc<Shared>,
    picker: Arc<Picker>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("url", &self.shared.self_url)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Pool {
    /// Binds `listen_addr` at once ("127.0.0.1:0" picks a free port) and
    /// starts serving. `self_url` is this node's URL as it appears in the
    /// peer list; `None`: `"http://<bound address>"`.
    pub fn new(
        listen_addr: &str,
        self_url: Option<&str>,
        options: PoolOptions,
    ) -> Result<Arc<Pool>, PoolError> {
        let source = check_options(&options)?.map(Arc::new);
        let tls_files = tls_files(&options);
        if let Some(u) = self_url {
            check_url(u, tls_files.is_some())?;
        }
        // A cluster does not mix http and https: the URLs DNS gives must be
        // of this node's kind.
        if let Some(source) = &source {
            let want = if tls_files.is_some() { "https" } else { "http" };
            if source.scheme != want {
                return Err(PoolError::InvalidArgument(format!(
                    "peers_from {:?} gives {}:// peers, but this node {}: use dns+{want}:// (or the \
                     srv form)",
                    source.spec,
                    source.scheme,
                    if want == "https" {
                        "serves https (tls_cert and tls_key are set)"
                    } else {
                        "serves plain http (no tls_cert and tls_key)"
                    }
                )));
            }
        }
        // Read once, here: a file that does not load is the caller's mistake.
        let tls = match tls_files {
            Some(f) => Some(Tls::load(f).map_err(PoolError::InvalidArgument)?),
            None => None,
        };
        let listener = std::net::TcpListener::bind(listen_addr).map_err(|e| {
            // An address that does not parse is the caller's mistake; one
            // that cannot be bound (taken, not ours) is the system's answer.
            if e.kind() == std::io::ErrorKind::InvalidInput {
                PoolError::InvalidArgument(format!("listen address {listen_addr:?}: {e}"))
            } else {
                PoolError::Io(format!("binding {listen_addr:?}: {e}"))
            }
        })?;
        let addr = listener.local_addr().map_err(|e| PoolError::Io(e.to_string()))?;
        let self_url = self_url
            .map(str::to_string)
            .unwrap_or_else(|| format!("{}://{addr}", if tls.is_some() { "https" } else { "http" }));

        let generation = fork::generation();
        let (runtime, client) = build_client(&options, tls.clone(), &format!("gcpool-{}", addr.port()))?;
        let listener_fd = {
            use std::os::fd::AsRawFd;
            listener.as_raw_fd()
        };
        let max_connections = match options.max_connections {
            0 => server::auto_max_connections(),
            n => n,
        };
        let server_cfg = ServerConfig {
            base_path: options.base_path.clone(),
            max_body_bytes: options.max_body_bytes,
            max_header_bytes: options.max_header_bytes,
            max_connections,
            header_timeout: options.header_timeout,
            idle_timeout: options.idle_timeout,
            body_timeout: options.body_timeout,
            body_budget_bytes: options.body_budget_bytes,
            max_batch_keys: options.max_batch_keys,
            server_workers: options.server_workers,
            worker_name: format!("gcwork-{}", addr.port()),
            inline: options.worker_threads > 1,
            watchdog_name: format!("gcwatch-{}", addr.port()),
            // Bound to this node as the peer lists name it: its self URL.
            auth: options.secret.as_ref().map(|s| {
                let node = super::auth::node_of(&self_url).expect("a checked or derived URL");
                Arc::new(super::auth::Verifier::new(s.as_bytes(), &node))
            }),
            tls,
        };
        let handle = runtime.handle().clone();
        let shared = Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            self_url,
            addr,
            members: RwLock::new(Arc::new(Members::empty(options.replicas))),
            opts: options,
            closing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            groups: RwLock::new(HashMap::new()),
            client: RwLock::new(client),
            generation: AtomicU64::new(generation),
            listener_fd: AtomicI32::new(listener_fd),
            fork_refresh: Mutex::new(()),
            in_child: AtomicBool::new(false),
            runtime: Mutex::new(Some(runtime)),
            server: Mutex::new(None),
            source,
            dns_state: Mutex::new(DnsState::default()),
            membership_changes: AtomicU64::new(0),
        });
        let weak: Weak<dyn fork::ForkLocks> = Arc::downgrade(&shared) as _;
        fork::register(weak);
        let lookup: Arc<dyn GroupLookup> = Arc::new(Lookup(Arc::downgrade(&shared)));
        let server = match server::start(&handle, listener, server_cfg, lookup) {
            Ok(s) => s,
            Err(e) => {
                drop(shared);
                return Err(PoolError::Io(format!("serving: {e}")));
            }
        };
        *lock(&shared.server) = Some(server);
        log::info!("pool {}: serving the peer protocol on {addr}", shared.self_url);
        log::debug!("pool {}: at most {max_connections} connections", shared.self_url);
        if shared.source.is_some() {
            // The node starts with its cluster when DNS answers in time;
            // otherwise with none, and the task keeps trying.
            let (tx, rx) = mpsc::channel();
            shared.spawn_refresh(&handle, Some(tx));
            let _ = rx.recv_timeout(FIRST_ROUND_WAIT);
        }
        let picker = Arc::new(Picker(shared.clone()));
        Ok(Arc::new(Pool { shared, picker }))
    }

    /// This node's URL.
    pub fn url(&self) -> &str {
        &self.shared.self_url
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The options the pool was made with.
    pub fn options(&self) -> &PoolOptions {
        &self.shared.opts
    }

    /// True once [`Pool::close`] ran.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Sets the whole cluster, this node included (Go's `HTTPPool.Set`).
    /// URLs are compared and hashed exactly as given, so every node must
    /// spell them the same way; a node missing from its own list owns no
    /// keys. May be called at any time: requests in flight finish with the
    /// membership they started with.
    pub fn set_peers(&self, urls: &[String]) -> Result<(), PoolError> {
        if self.is_closed() {
            return Err(PoolError::Closed);
        }
        if let Some(source) = &self.shared.source {
            return Err(PoolError::InvalidArgument(format!(
                "this pool takes its peers from DNS ({}, by peers_from or GROUPCACHE_PEERS_FROM): \
                 set_peers cannot be used with it",
                source.spec
            )));
        }
        let tls = self.shared.opts.tls_cert.is_some();
        for u in urls {
            check_url(u, tls)?;
        }
        let s = &self.shared;
        if s.forked() {
            s.after_fork();
        }
        let Some(runtime) = lock(&s.runtime).clone() else {
            return Err(PoolError::Closed);
        };
        let old = read(&s.members).clone();
        let m = Arc::new(s.build_members(urls, &runtime, Some(&old), s.in_child.load(Ordering::Acquire)));
        if m.urls != old.urls {
            s.membership_changes.fetch_add(1, Ordering::Relaxed);
        }
        *write(&s.members) = m;
        Ok(())
    }

    /// The membership: the list last given to [`Pool::set_peers`], or the
    /// last good answer of `peers_from` (sorted).
    pub fn peers(&self) -> Vec<String> {
        read(&self.shared.members).urls.clone()
    }

    /// (peers, membership changes): distinct nodes in the membership, this
    /// one included when listed, and how often the membership changed.
    pub fn membership(&self) -> (u64, u64) {
        self.shared.membership()
    }

    /// The `peers_from` source, if the pool has one.
    pub fn peer_source(&self) -> Option<&PeerSource> {
        self.shared.source.as_deref()
    }

    /// Serves `group` to peers under its name and installs this pool as its
    /// peer picker. The pool holds the group weakly (see module docs).
    pub fn register(&self, group: Arc<Group>) -> Result<(), PoolError> {
        let name = group.name().to_string();
        let service: Arc<dyn PeerService> = group.clone();
        self.insert(&name, Arc::downgrade(&service), Some(Arc::downgrade(&group)))?;
        group.set_peer_picker(Some(self.picker.clone() as Arc<dyn PeerPicker>));
        // A close racing with this registration may have missed the group.
        if self.is_closed() {
            group.set_peer_picker(None);
            return Err(PoolError::Closed);
        }
        Ok(())
    }

    /// Serves a test double under `name` (no picker is installed).
    #[cfg(test)]
    pub(crate) fn register_service(
        &self,
        name: &str,
        service: &Arc<dyn PeerService>,
    ) -> Result<(), PoolError> {
        self.insert(name, Arc::downgrade(service), None)
    }

    fn insert(
        &self,
        name: &str,
        service: Weak<dyn PeerService>,
        group: Option<Weak<Group>>,
    ) -> Result<(), PoolError> {
        if self.is_closed() {
            return Err(PoolError::Closed);
        }
        if name.contains('/') || name.is_empty() {
            return Err(PoolError::InvalidArgument(format!(
                "group name {name:?}: must be non-empty, without '/'"
            )));
        }
        let mut groups = write(&self.shared.groups);
        if let Some(r) = groups.get(name) {
            if r.service.strong_count() > 0 {
                return Err(PoolError::AlreadyExists(name.to_string()));
            }
        }
        groups.insert(name.to_string(), Registered { service, group });
        Ok(())
    }

    /// Stops serving the group named `name` and clears its picker. Returns
    /// whether a live group was registered under that name.
    pub fn unregister(&self, name: &str) -> bool {
        let removed = write(&self.shared.groups).remove(name);
        let Some(r) = removed else { return false };
        let live = r.service.strong_count() > 0;
        if let Some(g) = r.group.and_then(|g| g.upgrade()) {
            g.set_peer_picker(None);
        }
        live
    }

    /// Like [`Pool::unregister`], but only if `group` itself (not another
    /// group that reused its name) is the one registered.
    pub fn unregister_group(&self, group: &Group) -> bool {
        let name = group.name();
        {
            let mut groups = write(&self.shared.groups);
            let same = groups
                .get(name)
                .and_then(|r| r.group.as_ref())
                .is_some_and(|w| std::ptr::eq(w.as_ptr(), group as *const Group));
            if !same {
                return false;
            }
            groups.remove(name);
        }
        group.set_peer_picker(None);
        true
    }

    /// Stops serving, forgets the membership, detaches every registered
    /// group (they keep working as local caches) and shuts the runtime down.
    /// First, with a `drain` option, the node goes on serving as before for
    /// that long while `GET /healthz` answers 503 (and `close` blocks).
    /// Requests being served get up to a second to finish; a request this
    /// node has in flight to a peer finishes (within `timeout`) and the
    /// runtime's threads end with it; later requests fail at once, so the
    /// engine loads locally. Idempotent (a second call returns at once,
    /// even while the first drains); also done on drop.
    pub fn close(&self) {
        let s = &self.shared;
        if s.closing.swap(true, Ordering::AcqRel) {
            return;
        }
        if s.forked() {
            // Abandons the parent's runtime, client and server (see
            // `after_fork`); closing them here would wait on threads that
            // do not exist in this process. The child serves nothing:
            // nothing to drain either.
            s.closed.store(true, Ordering::Release);
            s.after_fork();
        }
        let drain = s.opts.drain;
        let draining = !drain.is_zero()
            && !s.closed.load(Ordering::Acquire)
            && lock(&s.server).as_ref().map(ServerHandle::drain).is_some();
        if draining {
            log::info!(
                "pool {}: closing: draining for {drain:?} (GET /healthz answers 503)",
                s.self_url
            );
            std::thread::sleep(drain);
        } else {
            log::info!("pool {}: closing", s.self_url);
        }
        s.closed.store(true, Ordering::Release);
        read(&s.client).close();
        // Taken out first: the lock is not held while connections drain.
        let server = lock(&s.server).take();
        if let Some(server) = server {
            server.shutdown(CLOSE_GRACE);
        }
        *write(&s.members) = Arc::new(Members::empty(s.opts.replicas));
        let groups: Vec<Registered> = write(&s.groups).drain().map(|(_, r)| r).collect();
        for r in groups {
            if let Some(g) = r.group.and_then(|g| g.upgrade()) {
                g.set_peer_picker(None);
            }
        }
        // The runtime stops when the last peer in use lets go of it too;
        // with no request in flight, that is now.
        let rt = lock(&s.runtime).take();
        drop(rt);
    }
}

impl PeerPicker for Pool {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        self.shared.pick_peer(key)
    }
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        self.shared.all_peers()
    }
    fn membership(&self) -> (u64, u64) {
        self.shared.membership()
    }
    fn get_many_from(
        &self,
        group: &str,
        batches: &[PeerBatch<'_>],
    ) -> Vec<Vec<Result<PeerValue, PeerError>>> {
        self.shared.get_many_from(group, batches)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close();
    }
}
