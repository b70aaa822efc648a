//! Shared helpers of the reliability tests (tests/reliability_*.rs include
//! this file with `#[path]`): nodes, process accounting (threads, fds), a
//! fault-injecting loopback proxy, hostile peers, a child-process node.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::{Pool, PoolOptions};
use groupcache::ring::Ring;

/// Tests of one binary that count threads and fds run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- accounting

pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

/// Threads of this process whose name starts with one of `prefixes`.
pub fn threads_named(prefixes: &[&str]) -> usize {
    let Ok(d) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    d.filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
        .filter(|c| prefixes.iter().any(|p| c.starts_with(p)))
        .count()
}

/// The library's threads (pool runtimes, server workers) and ours
/// (helpers are named "rel-...").
pub fn lib_threads() -> usize {
    threads_named(&["gcpool-", "gcwork-", "gcwatch-", "tokio-", "rel-"])
}

pub fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Snapshot of fds and library threads; `settled` waits (up to `within`)
/// until both are back to at most the snapshot plus `slack_fds`.
pub struct Baseline {
    pub fds: usize,
    pub threads: usize,
}

impl Baseline {
    pub fn take() -> Baseline {
        Baseline {
            fds: fd_count(),
            threads: lib_threads(),
        }
    }

    /// Panics with a description if fds or threads stay above the baseline.
    pub fn assert_settled(&self, what: &str, within: Duration) {
        let end = Instant::now() + within;
        loop {
            let (f, t) = (fd_count(), lib_threads());
            if f <= self.fds && t <= self.threads {
                return;
            }
            if Instant::now() > end {
                let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
                    .map(|d| {
                        d.filter_map(|e| e.ok())
                            .filter_map(|e| std::fs::read_link(e.path()).ok())
                            .map(|p| p.display().to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                panic!(
                    "{what}: leak: fds {} -> {f}, library threads {} -> {t}; fds now: {fds:?}",
                    self.fds, self.threads
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

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
    pub fn from_time() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
        Rng::new(t ^ (std::process::id() as u64) << 32)
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

// ---------------------------------------------------------------- nodes

/// The value every node's loader produces for `key`: deterministic, so a
/// fallback load anywhere gives the same bytes as the owner's.
pub fn value_for(key: &[u8]) -> Vec<u8> {
    let mut v = b"v:".to_vec();
    v.extend_from_slice(key);
    v
}

/// A loader: "v:" + key, after `delay`; counts its calls.
pub struct Loader {
    pub calls: AtomicU64,
    pub delay_ms: AtomicU64,
}

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let d = self.delay_ms.load(Ordering::Relaxed);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        if key.starts_with(b"missing:") {
            return Err(Error::NotFound);
        }
        sink.set(&value_for(key), 0)
    }
}

pub struct Node {
    pub pool: Arc<Pool>,
    pub group: Arc<Group>,
    pub loader: Arc<Loader>,
}

impl Node {
    pub fn new(opts: PoolOptions) -> Node {
        Node::with_getter(opts, 64 << 20)
    }
    pub fn with_getter(opts: PoolOptions, max_bytes: u64) -> Node {
        let loader = Arc::new(Loader {
            calls: AtomicU64::new(0),
            delay_ms: AtomicU64::new(0),
        });
        let group = Group::new("g", max_bytes, Some(loader.clone() as Arc<dyn Getter>));
        let pool = Pool::new("127.0.0.1:0", None, opts).unwrap();
        pool.register(group.clone()).unwrap();
        Node { pool, group, loader }
    }
    pub fn addr(&self) -> SocketAddr {
        self.pool.local_addr()
    }
    /// Closes the pool and drops everything.
    pub fn shut(self) {
        self.pool.close();
        self.group.close();
    }
}

pub fn opts(timeout_ms: u64) -> PoolOptions {
    PoolOptions {
        timeout: Duration::from_millis(timeout_ms),
        connect_timeout: Duration::from_millis(timeout_ms.min(500)),
        worker_threads: 1,
        ..Default::default()
    }
}

pub fn owner_of(urls: &[String], key: &[u8]) -> usize {
    let mut r = Ring::new(50);
    r.add(urls.iter().cloned());
    let o = r.get(key).unwrap();
    urls.iter().position(|u| u == o).unwrap()
}

pub fn keys_owned_by(urls: &[String], owner: usize, n: usize, prefix: &str) -> Vec<Vec<u8>> {
    (0..)
        .map(|i| format!("{prefix}{i}").into_bytes())
        .filter(|k| owner_of(urls, k) == owner)
        .take(n)
        .collect()
}

// ---------------------------------------------------------------- raw HTTP

/// Sends `req` on a new connection and reads until the server closes or
/// `wait` passes. Returns every byte received.
pub fn raw_exchange(addr: SocketAddr, req: &[u8], wait: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    // The server may close before reading everything (e.g. an oversized
    // head): a failed write is then fine, the answer is what counts.
    let _ = s.write_all(req);
    let mut out = Vec::new();
    let end = Instant::now() + wait;
    let mut buf = [0u8; 16384];
    while Instant::now() < end {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// Status codes of every response found in `bytes`, in order.
pub fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = Vec::new();
    let mut rest: &str = &text;
    while let Some(i) = rest.find("HTTP/1.1 ") {
        let after = &rest[i + 9..];
        if let Some(code) = after.get(..3).and_then(|c| c.parse().ok()) {
            out.push(code);
        }
        rest = after;
    }
    out
}

// ---------------------------------------------------------------- bad peers

/// A listener serving each connection with `serve` on its own thread, until
/// `stop`. Connections are kept in a list so `stop` can shut them.
pub struct BadPeer {
    pub url: String,
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    accept: Option<std::thread::JoinHandle<()>>,
    pub accepted: Arc<AtomicU64>,
}

impl BadPeer {
    pub fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> BadPeer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        l.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let accepted = Arc::new(AtomicU64::new(0));
        let serve = Arc::new(serve);
        let (st, cs, acc) = (stop.clone(), conns.clone(), accepted.clone());
        let accept = spawn_named("badpeer", move || {
            let mut workers = Vec::new();
            while !st.load(Ordering::Acquire) {
                match l.accept() {
                    Ok((s, _)) => {
                        acc.fetch_add(1, Ordering::SeqCst);
                        s.set_nonblocking(false).unwrap();
                        cs.lock().unwrap().push(s.try_clone().unwrap());
                        let serve = serve.clone();
                        let closer = s.try_clone().unwrap();
                        workers.push(spawn_named("badconn", move || {
                            serve(s);
                            // The list above holds a clone: close for real.
                            let _ = closer.shutdown(Shutdown::Both);
                        }));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            for s in cs.lock().unwrap().drain(..) {
                let _ = s.shutdown(Shutdown::Both);
            }
            for w in workers {
                let _ = w.join();
            }
        });
        BadPeer {
            url,
            stop,
            conns,
            accept: Some(accept),
            accepted,
        }
    }

    /// Accepts and never answers (reads and discards until closed).
    pub fn silent() -> BadPeer {
        BadPeer::start(|mut s| {
            let mut buf = [0u8; 4096];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        })
    }

    /// Reads a request head, writes `reply`, then closes (or holds the
    /// connection open, if `hold`).
    pub fn replying(reply: &'static [u8], hold: bool) -> BadPeer {
        BadPeer::start(move |mut s| {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let _ = s.write_all(reply);
            if hold {
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        })
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        self.stop.store(true, Ordering::Release);
        for s in self.conns.lock().unwrap().iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

impl Drop for BadPeer {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

// ---------------------------------------------------------------- proxy

/// What the proxy does to each connection.
#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// Added before forwarding each chunk, uniformly in [min, max] ms.
    pub delay_ms: (u64, u64),
    /// Per chunk of an answer: forwards a random prefix of it, then closes
    /// both sides (a lost link).
    pub p_cut: f64,
    /// Per chunk of an answer: forwards nothing more on that connection (a
    /// black hole), until the proxy stops.
    pub p_stall: f64,
    /// Per connection: refuses at once (closed without forwarding).
    pub p_refuse: f64,
}

#[derive(Default, Debug)]
pub struct ProxyCounts {
    pub conns: AtomicU64,
    pub cut: AtomicU64,
    pub stalled: AtomicU64,
    pub refused: AtomicU64,
}

/// A loopback TCP proxy in front of `target` that injects [`Faults`].
pub struct Proxy {
    pub url: String,
    pub counts: Arc<ProxyCounts>,
    inner: BadPeer,
}

impl Proxy {
    pub fn start(target: SocketAddr, faults: Faults, seed: u64) -> Proxy {
        let counts = Arc::new(ProxyCounts::default());
        let rng = Arc::new(Mutex::new(Rng::new(seed)));
        let c = counts.clone();
        let inner = BadPeer::start(move |client| {
            c.conns.fetch_add(1, Ordering::SeqCst);
            let (refuse, mut r) = {
                let mut g = rng.lock().unwrap();
                let r = Rng::new(g.next());
                (g.chance(faults.p_refuse), r)
            };
            if refuse {
                c.refused.fetch_add(1, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                return;
            }
            let Ok(server) = TcpStream::connect(target) else {
                return;
            };
            let _ = server.set_nodelay(true);
            let _ = client.set_nodelay(true);
            let (c2s_from, c2s_to) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            let mut r2 = Rng::new(r.next());
            let up = spawn_named("proxy-up", move || {
                pump(c2s_from, c2s_to, faults.delay_ms, &mut r2, None)
            });
            pump(server, client, faults.delay_ms, &mut r, Some((faults, c.clone())));
            let _ = up.join();
        });
        Proxy {
            url: inner.url.clone(),
            counts,
            inner,
        }
    }

    pub fn stop(self) {
        self.inner.stop();
    }
}

/// Copies `from` to `to` with delays. With `faults` (the answers'
/// direction), each chunk may be cut (a random prefix forwarded, then both
/// sides closed: a lost link) or start a black hole (nothing forwarded any
/// more, until the proxy stops).
fn pump(
    mut from: TcpStream,
    mut to: TcpStream,
    delay: (u64, u64),
    rng: &mut Rng,
    faults: Option<(Faults, Arc<ProxyCounts>)>,
) {
    let mut buf = [0u8; 8192];
    let mut hole = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hole {
            continue;
        }
        let d = delay.0 + rng.below(delay.1.saturating_sub(delay.0) + 1);
        if d > 0 {
            std::thread::sleep(Duration::from_millis(d));
        }
        if let Some((f, c)) = &faults {
            if rng.chance(f.p_stall) {
                c.stalled.fetch_add(1, Ordering::SeqCst);
                hole = true;
                continue;
            }
            if rng.chance(f.p_cut) {
                c.cut.fetch_add(1, Ordering::SeqCst);
                let keep = rng.below(n as u64) as usize;
                let _ = to.write_all(&buf[..keep]);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
                return;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}

// ---------------------------------------------------------------- child node

/// Env var that turns the `child_node` test of a binary into a node.
pub const CHILD_ENV: &str = "GC_RELIABILITY_CHILD";

/// A node in a child process (this test binary re-run as `child_node`),
/// killable with SIGKILL.
pub struct ChildNode {
    pub child: Child,
    pub url: String,
}

impl ChildNode {
    pub fn spawn(delay_ms: u64) -> ChildNode {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .args([
                "--ignored",
                "--exact",
                "child_node",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, delay_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut lines = BufReader::new(out).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("child node exited before printing its URL")
                .unwrap();
            // libtest prints "test child_node ... " before it, same line.
            if let Some(i) = line.find("NODE ") {
                break line[i + 5..].trim().to_string();
            }
        };
        // Keep draining its stdout so it never blocks on a full pipe.
        spawn_named("child-out", move || for _ in lines {});
        ChildNode { child, url }
    }

    pub fn kill9(&mut self) {
        unsafe {
            libc_kill(self.child.id() as i32, 9);
        }
        let _ = self.child.wait();
    }
}

impl Drop for ChildNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// Body of the `child_node` test: with `CHILD_ENV` set (by
/// `ChildNode::spawn`), serves group "g" (loader delay from the variable)
/// until killed.
pub fn child_node_main() {
    let delay = std::env::var(CHILD_ENV).unwrap_or_else(|_| {
        panic!("{CHILD_ENV} is not set: child_node runs only as ChildNode::spawn's child")
    });
    let node = Node::new(opts(2000));
    node.loader
        .delay_ms
        .store(delay.parse().unwrap_or(0), Ordering::SeqCst);
    println!("NODE {}", node.pool.url());
    std::io::stdout().flush().unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Per-key counts, for checks.
pub type Counts = Mutex<HashMap<Vec<u8>, u64>>;
