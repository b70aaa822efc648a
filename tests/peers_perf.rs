//! The peer benchmark of our side, a line-for-line mirror of
//! bench/go/peers/main.go (golang/groupcache), so that `bench/peers.sh` can
//! put the two next to each other: same phases, same key pattern, same
//! 16-byte values, same durations, same percentile arithmetic, and node B in
//! a child process in both (Go needs it: one HTTPPool per process).
//!
//! Node A lives in this process and is driven by calling `Group::get`
//! directly, as an application embedding the library would; node B is this
//! same test binary run as `owner_node`. Both nodes have the peer list
//! [A, B] (50 points each), and every key used is one the ring gives to B.
//!
//! Phases (each `PEERS_PERF_MS` long, default 3000 like Go's `-dur=3s`):
//! - remote_c1, remote_c16: distinct B-owned keys fetched through A by 1 and
//!   16 threads; each get misses on A and on B, so each op is one HTTP round
//!   trip A -> B plus one load at B.
//! - remote_c16_keepalive: Go's phase with a 64-idle-connection transport.
//!   Our client always keeps one connection per calling thread, so this is
//!   remote_c16 again with fresh keys (kept so both runs have the same shape).
//! - hot_under_load: 15 threads fetch distinct remote keys while one thread
//!   reads one B-owned key, sleeping 50 µs between gets.
//! - hot_key_c16: 16 threads on one B-owned key, cold at the start.
//!
//! Ignored by default; run with
//! `cargo test --release --test integration -- --ignored --exact peers_perf::remote_fetch_rate --nocapture`.
//! Prints a summary and, as its last line, `PEERS_JSON {...}` with the same
//! fields as Go's JSON (plus `impl`, `peer_errors`); `PEERS_PERF_JSON=path`
//! also writes that object to a file. GC_WORKERS sets the pools' runtime
//! workers (default: PoolOptions' 2). PEERS_PERF_TLS=DIR runs both nodes
//! over https with mutual TLS, with the certificates that
//! tests/tls/make-certs.sh made in DIR; PEERS_PERF_PHASES=a,b runs only
//! those phases (by name; the warm-ups always run).

use std::io::{BufRead, BufReader, Write};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::process::harness_name;
use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::{Pool, PoolOptions};
use groupcache::ring::Ring;

const GROUP: &str = "peerbench";
const VALUE_LEN: usize = 16;
/// Go's `NewGroup(groupName, 512<<20, ...)`.
const CACHE_BYTES: u64 = 512 << 20;

fn getter() -> Arc<dyn Getter> {
    Arc::new(|key: &[u8], sink: &mut Sink| -> Result<(), Error> {
        let v: Vec<u8> = (0..VALUE_LEN)
            .map(|i| ((i * 31 + key.len()) % 251) as u8)
            .collect();
        sink.set(&v, 0)
    })
}

fn opts() -> PoolOptions {
    let mut o = PoolOptions::default();
    if let Some(w) = std::env::var("GC_WORKERS").ok().and_then(|s| s.parse().ok()) {
        o.worker_threads = w;
    }
    if let Some(dir) = std::env::var_os("PEERS_PERF_TLS") {
        let dir = std::path::PathBuf::from(dir);
        o.tls_cert = Some(dir.join("node.pem"));
        o.tls_key = Some(dir.join("node.key"));
        o.tls_ca = Some(dir.join("ca.pem"));
    }
    o
}

/// Whether PEERS_PERF_PHASES (default: all) names `phase`.
fn wanted(phase: &str) -> bool {
    match std::env::var("PEERS_PERF_PHASES") {
        Ok(list) => list.split(',').any(|p| p.trim() == phase),
        Err(_) => true,
    }
}

// ---- a little JSON, to print the same object as Go's encoding/json ----

enum J {
    I(i64),
    F(f64),
    S(String),
    /// Already JSON (the owner's stats line).
    Raw(String),
    O(Vec<(String, J)>),
}

impl J {
    fn obj() -> J {
        J::O(Vec::new())
    }
    fn set(&mut self, k: &str, v: J) {
        if let J::O(m) = self {
            m.retain(|(kk, _)| kk != k);
            m.push((k.to_string(), v));
        }
    }
    fn write(&self, out: &mut String) {
        match self {
            J::I(i) => out.push_str(&i.to_string()),
            J::F(f) if f.is_finite() => out.push_str(&format!("{f}")),
            J::F(_) => out.push_str("null"),
            J::Raw(s) => out.push_str(s),
            J::S(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            J::O(m) => {
                // encoding/json sorts map keys; do the same.
                let mut m: Vec<&(String, J)> = m.iter().collect();
                m.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (k, v)) in m.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    J::S(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
    fn render(&self) -> String {
        let mut s = String::new();
        self.write(&mut s);
        s
    }
}

// ---- CPU accounting, as bench/go/peers/cpu.go ----

#[derive(Clone, Copy, Default)]
struct CpuSample {
    busy: i64,
    own: i64,
    total: i64,
}

fn read_cpu(pids: &[u32]) -> CpuSample {
    let mut s = CpuSample::default();
    if let Ok(b) = std::fs::read_to_string("/proc/stat") {
        let line = b.lines().next().unwrap_or("");
        for (i, x) in line.split_whitespace().skip(1).enumerate() {
            let v: i64 = x.parse().unwrap_or(0);
            s.total += v;
            if i != 3 && i != 4 {
                s.busy += v; // not idle, not iowait
            }
        }
    }
    for pid in pids {
        let Ok(st) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = st.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        s.own += f[11].parse::<i64>().unwrap_or(0) + f[12].parse::<i64>().unwrap_or(0);
    }
    s
}

fn other_cpu_pct(a: CpuSample, b: CpuSample) -> f64 {
    let total = b.total - a.total;
    if total <= 0 {
        return 0.0;
    }
    let other = ((b.busy - a.busy) - (b.own - a.own)).max(0);
    ((other * 1000) as f64 / total as f64).trunc() / 10.0
}

fn own_cpu_pct(a: CpuSample, b: CpuSample) -> f64 {
    let total = b.total - a.total;
    if total <= 0 {
        return 0.0;
    }
    (((b.own - a.own) * 1000) as f64 / total as f64).trunc() / 10.0
}

// ---- summaries, as Go's pct / r1 / summarize ----

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = (p * (sorted.len() - 1) as f64) as usize;
    sorted[i].as_nanos() as f64 / 1e3
}

fn r1(f: f64) -> f64 {
    ((f * 10.0 + 0.5) as i64) as f64 / 10.0
}

fn summarize(mut lat: Vec<Duration>, wall: Duration) -> J {
    lat.sort_unstable();
    let mut r = J::obj();
    r.set("ops", J::I(lat.len() as i64));
    r.set(
        "ops_per_sec",
        J::I((lat.len() as f64 / wall.as_secs_f64()) as i64),
    );
    r.set("p50_us", J::F(r1(pct(&lat, 0.50))));
    r.set("p99_us", J::F(r1(pct(&lat, 0.99))));
    r.set("p999_us", J::F(r1(pct(&lat, 0.999))));
    r
}

// ---- keys ----

struct KeySource {
    next: AtomicUsize,
    keys: Vec<String>,
}

impl KeySource {
    fn take(&self) -> Option<&str> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        self.keys.get(i).map(|s| s.as_str())
    }
}

/// `n` distinct keys "<prefix>-%012d" that `ring` gives to `owner`.
fn owned_keys(ring: &Ring, owner: &str, prefix: &str, n: usize) -> Arc<KeySource> {
    let mut keys = Vec::with_capacity(n);
    let mut i = 0u64;
    while keys.len() < n {
        let k = format!("{prefix}-{i:012}");
        if ring.get(k.as_bytes()) == Some(owner) {
            keys.push(k);
        }
        i += 1;
    }
    Arc::new(KeySource {
        next: AtomicUsize::new(0),
        keys,
    })
}

fn get_checked(g: &Group, key: &str, errs: &AtomicI64) {
    match g.get(key.as_bytes()) {
        Ok(v) if v.len() == VALUE_LEN => {}
        _ => {
            errs.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// `conc` threads fetching distinct keys through `g` for `dur`.
fn remote_load(
    g: &Arc<Group>,
    ks: &Arc<KeySource>,
    conc: usize,
    dur: Duration,
    errs: &Arc<AtomicI64>,
) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let deadline = start + dur;
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let (g, ks, errs) = (g.clone(), ks.clone(), errs.clone());
            std::thread::spawn(move || {
                let mut l = Vec::with_capacity(1 << 16);
                while Instant::now() < deadline {
                    let Some(key) = ks.take() else { break };
                    let t0 = Instant::now();
                    get_checked(&g, key, &errs);
                    l.push(t0.elapsed());
                }
                l
            })
        })
        .collect();
    let lats: Vec<Vec<Duration>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let wall = start.elapsed();
    (lats.concat(), wall)
}

/// Node B in a child process: serves until stdin closes; "stats" on stdin
/// prints the owner's counters as one JSON line. Not a test on its own.
#[test]
#[ignore = "not a test: the owner node remote_fetch_rate runs in a child process"]
fn owner_node() {
    let a_url = std::env::var("PEERS_PERF_OWNER")
        .expect("PEERS_PERF_OWNER is not set: owner_node runs only as remote_fetch_rate's child");
    let b = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let g = Group::new(GROUP, CACHE_BYTES, Some(getter()));
    b.set_peers(&[a_url, b.url().to_string()]).unwrap();
    b.register(g.clone()).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "ready {}", b.url()).unwrap();
    out.flush().unwrap();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        if line.trim() == "stats" {
            let s = g.stats();
            writeln!(
                out,
                "stats {{\"server_requests\":{},\"loads\":{},\"local_loads\":{}}}",
                s.server_requests, s.loads, s.local_loads
            )
            .unwrap();
            out.flush().unwrap();
        }
    }
    b.close();
}

#[test]
#[ignore = "a measurement, not a test: run by bench/peers.sh"]
fn remote_fetch_rate() {
    let dur = Duration::from_millis(
        std::env::var("PEERS_PERF_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3000),
    );
    // Node A binds first so that B can be told its URL, as in Go.
    let a = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let self_a = a.url().to_string();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            &harness_name(module_path!(), "owner_node"),
            "--nocapture",
            "--test-threads=1",
        ])
        .env("PEERS_PERF_OWNER", &self_a)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut child_in = child.stdin.take().unwrap();
    let mut child_out = BufReader::new(child.stdout.take().unwrap());
    let mut read_prefixed = |prefix: &str| -> String {
        loop {
            let mut line = String::new();
            assert!(child_out.read_line(&mut line).unwrap() > 0, "owner node exited");
            // libtest may print on the same line before our output.
            if let Some((_, rest)) = line.split_once(prefix) {
                return rest.trim().to_string();
            }
        }
    };
    let self_b = read_prefixed("ready ");

    let ga = Group::new(GROUP, CACHE_BYTES, Some(getter()));
    a.set_peers(&[self_a.clone(), self_b.clone()]).unwrap();
    a.register(ga.clone()).unwrap();
    let mut ring = Ring::new(Ring::DEFAULT_REPLICAS);
    ring.add([self_a.clone(), self_b.clone()]);

    let mut out = J::obj();
    out.set("impl", J::S("rust".into()));
    out.set("value_bytes", J::I(VALUE_LEN as i64));
    out.set("phase_seconds", J::F(dur.as_secs_f64()));
    out.set("tls", J::I(opts().tls_cert.is_some() as i64));
    let pids = [std::process::id(), child.id()];
    let cpu0 = read_cpu(&pids);
    let errs = Arc::new(AtomicI64::new(0));
    let peer_loads = || ga.stats().peer_loads as i64;

    // Warm-up: connections, code paths.
    remote_load(
        &ga,
        &owned_keys(&ring, &self_b, "warm", 5000),
        4,
        Duration::from_millis(300),
        &errs,
    );

    let max_keys = |conc: usize| (dur.as_secs_f64() * 100_000.0) as usize + conc * 1000 + 100_000;
    let measured = |name: &str, prefix: &str, conc: usize, out: &mut J| {
        if !wanted(name) {
            return;
        }
        let ks = owned_keys(&ring, &self_b, prefix, max_keys(conc));
        let pl0 = peer_loads();
        let c0 = read_cpu(&pids);
        let (lat, wall) = remote_load(&ga, &ks, conc, dur, &errs);
        let n = lat.len();
        let mut res = summarize(lat, wall);
        let c1 = read_cpu(&pids);
        res.set("other_cpu_pct", J::F(other_cpu_pct(c0, c1)));
        res.set("own_cpu_pct", J::F(own_cpu_pct(c0, c1)));
        res.set("peer_loads", J::I(peer_loads() - pl0));
        if n >= ks.keys.len() {
            res.set("keys_exhausted", J::I(1));
        }
        out.set(name, res);
    };
    measured("remote_c1", "c1", 1, &mut out);
    measured("remote_c16", "c16", 16, &mut out);
    // Go's keep-alive phase: warm-up at 16, then the same measurement.
    remote_load(
        &ga,
        &owned_keys(&ring, &self_b, "warm2", 5000),
        16,
        Duration::from_millis(200),
        &errs,
    );
    measured("remote_c16_keepalive", "k16", 16, &mut out);

    // One hot key read by one thread (paced: a 50 µs sleep between gets)
    // while 15 others do remote fetches.
    if wanted("hot_under_load") {
        let hot = owned_keys(&ring, &self_b, "hotA", 1).keys[0].clone();
        let ks = owned_keys(&ring, &self_b, "bg", max_keys(16));
        let pl0 = peer_loads();
        let hot_reader = {
            let (ga, errs) = (ga.clone(), errs.clone());
            std::thread::spawn(move || {
                let mut l = Vec::new();
                let start = Instant::now();
                let deadline = start + dur;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    if ga.get(hot.as_bytes()).is_err() {
                        errs.fetch_add(1, Ordering::Relaxed);
                    }
                    l.push(t0.elapsed());
                    std::thread::sleep(Duration::from_micros(50));
                }
                (l, start.elapsed())
            })
        };
        let (bg_lat, bg_wall) = remote_load(&ga, &ks, 15, dur, &errs);
        let (hot_lat, hot_wall) = hot_reader.join().unwrap();
        let total = peer_loads() - pl0;
        let bg_n = bg_lat.len() as i64;
        let mut res = summarize(hot_lat, hot_wall);
        res.set("hot_peer_loads", J::I(total - bg_n));
        res.set("background", summarize(bg_lat, bg_wall));
        out.set("hot_under_load", res);
    }

    // Sixteen threads on one hot key, cold at the start.
    if wanted("hot_key_c16") {
        let hot: Arc<str> = owned_keys(&ring, &self_b, "hotB", 1).keys[0].as_str().into();
        let pl0 = peer_loads();
        let start = Instant::now();
        let deadline = start + dur;
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (ga, errs, hot) = (ga.clone(), errs.clone(), hot.clone());
                std::thread::spawn(move || {
                    let mut l = Vec::with_capacity(1 << 20);
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        if ga.get(hot.as_bytes()).is_err() {
                            errs.fetch_add(1, Ordering::Relaxed);
                        }
                        l.push(t0.elapsed());
                    }
                    l
                })
            })
            .collect();
        let lats: Vec<Vec<Duration>> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let wall = start.elapsed();
        let mut res = summarize(lats.concat(), wall);
        res.set("peer_loads", J::I(peer_loads() - pl0));
        out.set("hot_key_c16", res);
    }

    // The owner's counters, then let it go.
    writeln!(child_in, "stats").unwrap();
    child_in.flush().unwrap();
    let stats = read_prefixed("stats ");
    out.set("owner_stats", J::Raw(stats));
    out.set(
        "other_processes_cpu_pct",
        J::F(other_cpu_pct(cpu0, read_cpu(&pids))),
    );
    out.set("errors", J::I(errs.load(Ordering::Relaxed)));
    out.set("peer_errors", J::I(ga.stats().peer_errors as i64));
    drop(child_in);
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut child_out, &mut rest);
    let _ = child.wait();
    a.close();

    let json = out.render();
    print_summary(&json);
    println!("PEERS_JSON {json}");
    if let Ok(p) = std::env::var("PEERS_PERF_JSON") {
        std::fs::write(p, format!("{json}\n")).unwrap();
    }
    assert_eq!(errs.load(Ordering::Relaxed), 0, "errors during the run: {json}");
}

/// One human-readable line per phase (the JSON is the record).
fn print_summary(json: &str) {
    for phase in [
        "remote_c1",
        "remote_c16",
        "remote_c16_keepalive",
        "hot_under_load",
        "hot_key_c16",
    ] {
        if let Some(i) = json.find(&format!("\"{phase}\":")) {
            let s = &json[i..];
            let end = s.find('}').map(|e| e + 1).unwrap_or(s.len());
            println!("{}", &s[..end]);
        }
    }
}
