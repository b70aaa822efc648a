//! The peer port under attack (issue 9, "Safe to deploy").
//!
//! A node at default settings runs in a child process (this test binary
//! re-run as `attack_node`) whose RLIMIT_NOFILE soft limit is set to 1,024
//! before the pool starts, the common default. This process (its own fd
//! limit) attacks it with
//! - 1,100 connections that send half a request head and stall, and
//! - 32 PUTs that announce a 64 MiB body and stall one byte short,
//!
//! then, with the attackers still connected, checks that
//! - a legitimate GET from a new connection is answered within 1 s (one of
//!   a cached key, answered on the runtime, and one of a new key, which
//!   runs the loader on a worker),
//! - the host application can still open files (64 at once),
//! - the node's RSS grew by less than 128 MiB (sampled every 50 ms),
//! - the node logged a bounded number of warnings (no line per attempt),
//!
//! and that within 60 s after the attackers close, the node's threads and
//! descriptors are back within 10 of where they started (polled, so it ends
//! early when met).
//!
//! `out_of_descriptors` runs a node whose connection limit is above its fd
//! limit, so that `accept` fails with EMFILE: it must back off, log a line
//! per interval, and still serve a new client.
//!
//! Ignored by default (1,200 sockets, ~10-25 s); `make test-attack` runs
//! them: `cargo test --release --test attack_peers -- --ignored --exact
//! under_attack out_of_descriptors --nocapture --test-threads=1`.
//! `under_attack` prints `ATTACK {...}` with the figures (RELIABILITY.md
//! records them); GC_ATTACK_STALLED and GC_ATTACK_PUTS change the attack's
//! size (to measure one half alone).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::{Pool, PoolOptions};

const NODE_ENV: &str = "GC_ATTACK_NODE";
const NODE_FD_LIMIT: u64 = 1024;
const STALLED: usize = 1100;
const PUTS: usize = 32;

/// The attack's size: the targets above, unless GC_ATTACK_STALLED or
/// GC_ATTACK_PUTS say otherwise (for measuring one half alone; the checks
/// then still apply).
fn knob(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
const PUT_BYTES: usize = 64 << 20;

// ------------------------------------------------------------------ the node

struct Loader;

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        let mut v = b"v:".to_vec();
        v.extend_from_slice(key);
        sink.set(&v, 0)
    }
}

/// Counts the library's warnings and errors (and keeps the first few).
struct CountingLog {
    count: AtomicU64,
    first: Mutex<Vec<String>>,
}

impl log::Log for CountingLog {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first.lock().unwrap();
        if first.len() < 5 {
            first.push(format!("{} {}", r.level(), r.args()));
        }
    }
    fn flush(&self) {}
}

static LOG: CountingLog = CountingLog {
    count: AtomicU64::new(0),
    first: Mutex::new(Vec::new()),
};

/// Not a test on its own: the node under attack, when `NODE_ENV` is set.
/// Commands on stdin, one answer line each on stdout:
/// `open N` → `opened K errno E` (opens N files at once, then closes them);
/// `logs` → `logs COUNT FIRST...`. Exits when stdin closes.
#[test]
#[ignore = "the child process of under_attack"]
fn attack_node() {
    // "FD_LIMIT:MAX_CONNECTIONS" (0: the default limit).
    let Ok(spec) = std::env::var(NODE_ENV) else {
        return;
    };
    let (fd_limit, max_connections) = spec
        .split_once(':')
        .map(|(f, m)| (f.parse::<u64>().unwrap(), m.parse::<usize>().unwrap()))
        .unwrap();
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a valid, initialised struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = fd_limit as libc::rlim_t;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    log::set_logger(&LOG).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    let g = Group::new("g", 64 << 20, Some(Arc::new(Loader) as Arc<dyn Getter>));
    let opts = PoolOptions {
        max_connections,
        ..PoolOptions::default()
    };
    let pool = Pool::new("127.0.0.1:0", None, opts).unwrap();
    pool.register(g.clone()).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", pool.local_addr()).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("open") => {
                let n: usize = words.next().and_then(|w| w.parse().ok()).unwrap_or(1);
                let mut files = Vec::new();
                let mut errno = 0;
                for _ in 0..n {
                    match std::fs::File::open("/dev/null") {
                        Ok(f) => files.push(f),
                        Err(e) => {
                            errno = e.raw_os_error().unwrap_or(-1);
                            break;
                        }
                    }
                }
                writeln!(out, "opened {} errno {errno}", files.len()).unwrap();
            }
            Some("logs") => {
                let first = LOG.first.lock().unwrap().join(" | ");
                writeln!(out, "logs {} {first}", LOG.count.load(Ordering::Relaxed)).unwrap();
            }
            _ => writeln!(out, "?").unwrap(),
        }
        out.flush().unwrap();
    }
    pool.close();
}

// ------------------------------------------------------------- measurements

#[derive(Clone, Copy, Debug, Default)]
struct Proc {
    threads: u64,
    fds: u64,
    rss_kib: u64,
}

fn proc_of(pid: u32) -> Proc {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Proc {
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count() as u64)
            .unwrap_or(0),
        rss_kib: field("VmRSS:"),
    }
}

/// One GET on a new connection; its latency and status (0: no answer
/// within `wait`).
fn timed_get(addr: SocketAddr, key: &str, wait: Duration) -> (Duration, u16, Vec<u8>) {
    let t = Instant::now();
    let Ok(mut s) = TcpStream::connect_timeout(&addr, wait) else {
        return (t.elapsed(), 0, Vec::new());
    };
    let _ = s.set_read_timeout(Some(wait));
    let req = format!("GET /_groupcache/g/{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let _ = s.write_all(req.as_bytes());
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < wait {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    let status = String::from_utf8_lossy(&out)
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (t.elapsed(), status, out)
}

/// Raises this process's soft fd limit so the attackers fit.
fn raise_own_fd_limit(want: u64) {
    let mut cur = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on valid, initialised structs.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur), 0);
        if (cur.rlim_cur as u64) < want {
            let new = libc::rlimit {
                rlim_cur: (want as libc::rlim_t).min(cur.rlim_max),
                rlim_max: cur.rlim_max,
            };
            libc::setrlimit(libc::RLIMIT_NOFILE, &new);
        }
    }
}

/// Opens `n` connections that each send half a request head and stall,
/// from 8 threads, giving up on connecting at `deadline`.
fn stalled_connections(addr: SocketAddr, n: usize, deadline: Instant) -> Vec<TcpStream> {
    let threads = 8;
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for _ in (t..n).step_by(threads) {
                    if Instant::now() > deadline {
                        break;
                    }
                    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
                        continue;
                    };
                    let _ = s.write_all(b"GET /_groupcache/g/stalled HTTP/1.1\r\nHost:");
                    held.push(s);
                }
                held
            })
        })
        .collect();
    hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
}

/// A PUT that announces 64 MiB and sends one byte less; gives up writing
/// when the server stops reading for 5 s or closes. Returns the stream
/// (still open) and the body bytes sent.
fn stalled_put(addr: SocketAddr, i: usize, deadline: Instant) -> Option<(TcpStream, usize)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let head =
        format!("PUT /_groupcache/g/big-{i} HTTP/1.1\r\nHost: x\r\nContent-Length: {PUT_BYTES}\r\n\r\n");
    if s.write_all(head.as_bytes()).is_err() {
        return Some((s, 0));
    }
    let chunk = vec![b'x'; 256 << 10];
    let mut sent = 0;
    while sent < PUT_BYTES - 1 && Instant::now() < deadline {
        let n = chunk.len().min(PUT_BYTES - 1 - sent);
        match s.write(&chunk[..n]) {
            Ok(0) | Err(_) => break,
            Ok(k) => sent += k,
        }
    }
    Some((s, sent))
}

struct Child {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Child {
    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
        self.lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("the node did not answer {cmd:?}"))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the node in a child process with its soft fd limit set to
/// `fd_limit` and `max_connections` (0: the default).
fn spawn_node(fd_limit: u64, max_connections: usize) -> (Child, SocketAddr, u32) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "attack_node",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(NODE_ENV, format!("{fd_limit}:{max_connections}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            // libtest may print on the same line before our output.
            for word in ["ready ", "opened ", "logs "] {
                if let Some(i) = line.find(word) {
                    let _ = tx.send(line[i..].to_string());
                }
            }
        }
    });
    let pid = child.id();
    let node = Child { child, stdin, lines };
    let ready = node
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the node started");
    let addr: SocketAddr = ready.trim_start_matches("ready ").trim().parse().unwrap();
    (node, addr, pid)
}

fn log_count(answer: &str) -> u64 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
#[ignore = "an attack of 1,200 sockets on a child node (~5-20 s): make test-attack"]
fn under_attack() {
    raise_own_fd_limit(8192);
    let (mut node, addr, pid) = spawn_node(NODE_FD_LIMIT, 0);

    // Warm up: the runtime's threads exist, "hot" is cached.
    let (_, st, _) = timed_get(addr, "hot", Duration::from_secs(5));
    assert_eq!(st, 200, "the node serves before the attack");
    std::thread::sleep(Duration::from_millis(500));
    let base = proc_of(pid);
    eprintln!("baseline: {base:?}");

    // RSS sampled throughout.
    let peak_rss = Arc::new(AtomicU64::new(base.rss_kib));
    let peak_threads = Arc::new(AtomicU64::new(base.threads));
    let peak_fds = Arc::new(AtomicU64::new(base.fds));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (rss, th, fd, on) = (
            peak_rss.clone(),
            peak_threads.clone(),
            peak_fds.clone(),
            sampling.clone(),
        );
        std::thread::spawn(move || {
            while on.load(Ordering::Relaxed) {
                let p = proc_of(pid);
                rss.fetch_max(p.rss_kib, Ordering::Relaxed);
                th.fetch_max(p.threads, Ordering::Relaxed);
                fd.fetch_max(p.fds, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    let attack_start = Instant::now();
    let setup_deadline = attack_start + Duration::from_secs(8);
    let (n_stalled, n_puts) = (knob("GC_ATTACK_STALLED", STALLED), knob("GC_ATTACK_PUTS", PUTS));
    let stalled = stalled_connections(addr, n_stalled, setup_deadline);
    let put_deadline = Instant::now() + Duration::from_secs(20);
    let puts: Vec<(TcpStream, usize)> = (0..n_puts)
        .map(|i| std::thread::spawn(move || stalled_put(addr, i, put_deadline)))
        .collect::<Vec<_>>()
        .into_iter()
        .filter_map(|h| h.join().unwrap())
        .collect();
    let setup = attack_start.elapsed();
    let put_bytes: usize = puts.iter().map(|(_, n)| n).sum();
    let full_puts = puts.iter().filter(|(_, n)| *n == PUT_BYTES - 1).count();
    let during = proc_of(pid);
    eprintln!(
        "attack set up in {setup:?}: {} stalled connections, {} PUTs connected ({full_puts} sent \
         their 64 MiB - 1, {put_bytes} body bytes in all); node now {during:?}",
        stalled.len(),
        puts.len()
    );

    // The legitimate client: a cached key, then one the loader makes.
    let wait = Duration::from_secs(5);
    let (hot_lat, hot_st, _) = timed_get(addr, "hot", wait);
    let (new_lat, new_st, new_body) = timed_get(addr, "fresh-key", wait);
    eprintln!("legitimate GETs: cached {hot_st} in {hot_lat:?}, loaded {new_st} in {new_lat:?}");
    // The host application opens files.
    let opened = node.ask("open 64");
    let logs_during = node.ask("logs");
    let under = proc_of(pid);
    eprintln!("host: {opened}; {logs_during}; node {under:?}");

    // The attackers leave.
    drop(stalled);
    drop(puts);
    let left = Instant::now();
    let mut drained = None;
    let mut last = proc_of(pid);
    while left.elapsed() < Duration::from_secs(60) {
        last = proc_of(pid);
        if last.threads <= base.threads + 10 && last.fds <= base.fds + 10 {
            drained = Some(left.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    sampling.store(false, Ordering::Relaxed);
    sampler.join().unwrap();
    // RSS a moment after the drain, to see whether memory came back.
    std::thread::sleep(Duration::from_secs(2));
    let after = proc_of(pid);
    let logs_after = node.ask("logs");
    // The sampler's peaks, and the two looks taken during the attack.
    let (peak_rss, peak_threads, peak_fds) = (
        peak_rss
            .load(Ordering::Relaxed)
            .max(during.rss_kib)
            .max(under.rss_kib),
        peak_threads
            .load(Ordering::Relaxed)
            .max(during.threads)
            .max(under.threads),
        peak_fds.load(Ordering::Relaxed).max(during.fds).max(under.fds),
    );
    let opened_n: u64 = opened
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let log_lines = log_count(&logs_after);
    println!(
        "ATTACK {{\"stalled\":{},\"puts\":{},\"put_body_bytes\":{put_bytes},\"setup_ms\":{},\
         \"base\":{{\"threads\":{},\"fds\":{},\"rss_kib\":{}}},\
         \"peak\":{{\"threads\":{peak_threads},\"fds\":{peak_fds},\"rss_kib\":{peak_rss}}},\
         \"get_cached\":{{\"status\":{hot_st},\"ms\":{:.1}}},\"get_loaded\":{{\"status\":{new_st},\"ms\":{:.1}}},\
         \"host_opened\":{opened_n},\"log_lines\":{log_lines},\
         \"drained_s\":{},\"after_drain\":{{\"threads\":{},\"fds\":{}}},\
         \"after_2s\":{{\"threads\":{},\"fds\":{},\"rss_kib\":{}}}}}",
        n_stalled,
        n_puts,
        setup.as_millis(),
        base.threads,
        base.fds,
        base.rss_kib,
        hot_lat.as_secs_f64() * 1e3,
        new_lat.as_secs_f64() * 1e3,
        drained.map_or("null".to_string(), |d| format!("{:.2}", d.as_secs_f64())),
        last.threads,
        last.fds,
        after.threads,
        after.fds,
        after.rss_kib,
    );
    eprintln!("logs after: {logs_after}");

    let mut failures = Vec::new();
    // The attack was real: the node held many attackers when the GETs came.
    if n_stalled == STALLED && during.fds < base.fds + 200 {
        failures.push(format!(
            "the node held only {} more fds than at rest: the attack did not take",
            during.fds - base.fds.min(during.fds)
        ));
    }
    if hot_st != 200 || hot_lat > Duration::from_secs(1) {
        failures.push(format!("cached GET: status {hot_st} after {hot_lat:?}"));
    }
    if new_st != 200 || new_lat > Duration::from_secs(1) || !new_body.ends_with(b"v:fresh-key") {
        failures.push(format!("loaded GET: status {new_st} after {new_lat:?}"));
    }
    if opened_n != 64 {
        failures.push(format!("the host could not open files: {opened}"));
    }
    let grew_mib = peak_rss.saturating_sub(base.rss_kib) / 1024;
    if grew_mib >= 128 {
        failures.push(format!("RSS grew by {grew_mib} MiB"));
    }
    if log_lines > 20 {
        failures.push(format!("{log_lines} warnings logged: {logs_after}"));
    }
    if drained.is_none() {
        failures.push(format!(
            "60 s after the attackers left: {} threads, {} fds (at rest: {}, {})",
            last.threads, last.fds, base.threads, base.fds
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A node misconfigured with more connections than descriptors: accepting
/// fails with EMFILE. The accept loop must back off and log a line per
/// interval, not per attempt, and still make room for a new client by
/// closing the longest-waiting connection.
#[test]
#[ignore = "400 sockets on a child node limited to 128 fds (~3 s): make test-attack"]
fn out_of_descriptors() {
    raise_own_fd_limit(8192);
    let (mut node, addr, pid) = spawn_node(128, 10_000);
    let (_, st, _) = timed_get(addr, "hot", Duration::from_secs(5));
    assert_eq!(st, 200);
    let base = proc_of(pid);
    let stalled = stalled_connections(addr, 400, Instant::now() + Duration::from_secs(8));
    // Let the accept loop run into the limit for a while.
    std::thread::sleep(Duration::from_millis(1500));
    let during = proc_of(pid);
    let (lat, st, body) = timed_get(addr, "fresh", Duration::from_secs(5));
    let logs = node.ask("logs");
    eprintln!(
        "{} stalled connections; node {base:?} -> {during:?}; GET {st} in {lat:?}; {logs}",
        stalled.len()
    );
    drop(stalled);
    assert!(during.fds >= 120, "the node ran out of descriptors: {during:?}");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(lat < Duration::from_secs(1), "{lat:?}");
    let n = log_count(&logs);
    assert!((1..=5).contains(&n), "{n} warnings: {logs}");
    assert!(logs.contains("Too many open files"), "{logs}");
}
