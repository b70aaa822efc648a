//! What the integration tests share: a node (a pool serving group "g" with
//! a counting loader), clusters of nodes, ring ownership, named helper
//! threads and a small random generator. In submodules: [`process`] (a
//! test in a process of its own, thread and fd accounting, a node in a
//! child process) and [`faults`] (hostile peers, a fault-injecting proxy,
//! raw HTTP).

pub mod dns;
pub mod faults;
pub mod process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::{Pool, PoolError, PoolOptions};
use groupcache::ring::Ring;

// ---------------------------------------------------------------- nodes

/// The value a node's [`Loader`] produces for `key` at `version`:
/// deterministic, so a fallback load anywhere gives the same bytes as the
/// owner's.
pub fn value_for(version: u64, key: &[u8]) -> Vec<u8> {
    let mut v = format!("v{version}:").into_bytes();
    v.extend_from_slice(key);
    v
}

/// The 1 MiB value of a "big:..." key.
pub fn big_value(key: &[u8]) -> Vec<u8> {
    (0..1 << 20)
        .map(|i: usize| ((i * 31 + key.len()) % 251) as u8)
        .collect()
}

/// A getter that counts its calls per key, after an optional delay. Keys
/// "missing:..." do not exist, "fail:..." (and those in `fail_here`) fail,
/// "big:..." are 1 MiB ([`big_value`]), "ttl:..." live 300 ms; the others
/// are [`value_for`] the current `version` (bump it to see reloads).
pub struct Loader {
    loads: Mutex<HashMap<Vec<u8>, u64>>,
    pub version: AtomicU64,
    /// Keys this node's getter refuses (to tell an owner's failure from a
    /// fallback load).
    pub fail_here: Mutex<Vec<Vec<u8>>>,
    pub delay_ms: AtomicU64,
}

impl Loader {
    pub fn new() -> Loader {
        Loader {
            loads: Mutex::default(),
            version: AtomicU64::new(1),
            fail_here: Mutex::default(),
            delay_ms: AtomicU64::new(0),
        }
    }

    /// Calls for `key`.
    pub fn loads(&self, key: &[u8]) -> u64 {
        self.loads.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// Calls for any key.
    pub fn total(&self) -> u64 {
        self.loads.lock().unwrap().values().sum()
    }
}

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        *self.loads.lock().unwrap().entry(key.to_vec()).or_default() += 1;
        let d = self.delay_ms.load(Ordering::Relaxed);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        if key.starts_with(b"missing:") {
            return Err(Error::NotFound);
        }
        if key.starts_with(b"fail:") || self.fail_here.lock().unwrap().iter().any(|k| k == key) {
            return Err(Error::LoaderFailed("this node refuses".into()));
        }
        if key.starts_with(b"big:") {
            return sink.set(&big_value(key), 0);
        }
        let ttl = if key.starts_with(b"ttl:") { 300 } else { 0 };
        sink.set(&value_for(self.version.load(Ordering::SeqCst), key), ttl)
    }
}

/// A pool on 127.0.0.1 serving group "g" (64 MiB) with its own [`Loader`].
pub struct Node {
    pub pool: Arc<Pool>,
    pub group: Arc<Group>,
    pub loader: Arc<Loader>,
}

impl Node {
    pub fn new(opts: PoolOptions) -> Node {
        Node::at("127.0.0.1:0", opts).unwrap()
    }
    /// A node like [`Node::new`], bound to `listen`.
    pub fn at(listen: &str, opts: PoolOptions) -> Result<Node, PoolError> {
        let loader = Arc::new(Loader::new());
        let group = Group::new("g", 64 << 20, Some(loader.clone() as Arc<dyn Getter>));
        let pool = Pool::new(listen, None, opts)?;
        pool.register(group.clone()).unwrap();
        Ok(Node { pool, group, loader })
    }
    pub fn addr(&self) -> SocketAddr {
        self.pool.local_addr()
    }
    pub fn loads(&self, key: &[u8]) -> u64 {
        self.loader.loads(key)
    }
    pub fn total_loads(&self) -> u64 {
        self.loader.total()
    }
    /// Closes the pool and the group.
    pub fn shut(self) {
        self.pool.close();
        self.group.close();
    }
}

/// Pool options for tests: a peer timeout, a connect timeout of at most
/// 500 ms, one worker thread.
pub fn opts(timeout_ms: u64) -> PoolOptions {
    PoolOptions {
        timeout: Duration::from_millis(timeout_ms),
        connect_timeout: Duration::from_millis(timeout_ms.min(500)),
        worker_threads: 1,
        ..Default::default()
    }
}

/// Gives every pool the list of all of them; returns that list.
pub fn link<'a>(pools: impl IntoIterator<Item = &'a Pool>) -> Vec<String> {
    let pools: Vec<&Pool> = pools.into_iter().collect();
    let urls: Vec<String> = pools.iter().map(|p| p.url().to_string()).collect();
    for p in &pools {
        p.set_peers(&urls).unwrap();
    }
    urls
}

/// `n` linked nodes, and their URLs (node i is `urls[i]`).
pub fn cluster(n: usize, opts: PoolOptions) -> (Vec<Node>, Vec<String>) {
    let nodes: Vec<Node> = (0..n).map(|_| Node::new(opts.clone())).collect();
    let urls = link(nodes.iter().map(|n| &*n.pool));
    (nodes, urls)
}

/// The index in `urls` of the node the ring (50 points each, as every
/// pool's) gives `key` to.
pub fn owner_of(urls: &[String], key: &[u8]) -> usize {
    let mut r = Ring::new(50);
    r.add(urls.iter().cloned());
    let o = r.get(key).unwrap();
    urls.iter().position(|u| u == o).unwrap()
}

/// Every key asked at every node is loaded once in all, by its owner
/// (the node whose URL `expected_urls` gives it).
pub fn assert_loaded_once(nodes: &[Node], expected_urls: &[String], keys: &[Vec<u8>]) {
    for node in nodes {
        for k in keys {
            assert_eq!(node.group.get(k).unwrap(), value_for(1, k));
        }
    }
    for k in keys {
        let total: u64 = nodes.iter().map(|n| n.loads(k)).sum();
        assert_eq!(
            total,
            1,
            "key {:?} loaded {total} times",
            String::from_utf8_lossy(k)
        );
        let owner = &expected_urls[owner_of(expected_urls, k)];
        let by = nodes.iter().find(|n| n.pool.url() == owner).unwrap();
        assert_eq!(
            by.loads(k),
            1,
            "{:?} not loaded by its owner {owner}",
            String::from_utf8_lossy(k)
        );
    }
}

/// The first `n` keys "<prefix><i>" that node `owner` of `urls` owns.
pub fn keys_owned_by(urls: &[String], owner: usize, n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .filter(|k| owner_of(urls, k) == owner)
        .take(n)
        .collect()
}

// ---------------------------------------------------------------- threads

/// A thread named "rel-<name>" (counted by [`process::lib_threads`]).
pub fn spawn_named<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::Builder::new()
        .name(format!("rel-{name}"))
        .spawn(f)
        .unwrap()
}

// ---------------------------------------------------------------- random

/// xorshift64*: enough randomness for fault injection, no dependency.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
