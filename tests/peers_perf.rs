//! A quick measurement of the remote fetch path, mirroring
//! bench/go/peers: node A asks node B for distinct keys B owns, every get a
//! miss on both, so each op is one HTTP round trip plus one load at B.
//! Ignored by default; run with
//! `cargo test --release --test peers_perf -- --ignored --exact remote_fetch_rate --nocapture`.
//! Knobs: PEERS_PERF_PROCS=2 (node B in a child process, as Go's benchmark
//! runs it), PEERS_PERF_MS (per phase, default 2000), PEERS_PERF_CONC
//! (e.g. "1,16"), GC_WORKERS (runtime workers per pool). The real
//! benchmark is `make bench`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::{Pool, PoolOptions};

fn getter() -> Arc<dyn Getter> {
    Arc::new(|key: &[u8], sink: &mut Sink| -> Result<(), Error> {
        let v: Vec<u8> = (0..16)
            .map(|i| ((i * 31 + key.len()) % 251) as u8)
            .collect();
        sink.set(&v, 0)
    })
}

/// CPU time of this process (all threads), in seconds.
fn cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = s.rsplit_once(')').unwrap().1.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// Context switches (voluntary + involuntary) of this process's live threads.
fn ctx_switches() -> u64 {
    let mut n = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        if let Ok(st) = std::fs::read_to_string(t.path().join("status")) {
            for l in st.lines() {
                if l.contains("ctxt_switches") {
                    n += l.split_whitespace().last().unwrap().parse::<u64>().unwrap();
                }
            }
        }
    }
    n
}

fn phase(
    a: &Arc<Group>,
    conc: usize,
    dur: Duration,
    next: &Arc<AtomicU64>,
) -> (f64, f64, f64, f64) {
    let start = Instant::now();
    let cpu0 = cpu_secs();
    let cs0 = ctx_switches();
    let threads: Vec<_> = (0..conc)
        .map(|_| {
            let a = a.clone();
            let next = next.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                while start.elapsed() < dur {
                    let k = format!("k{}", next.fetch_add(1, Ordering::Relaxed));
                    let t = Instant::now();
                    a.get(k.as_bytes()).unwrap();
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let secs = start.elapsed().as_secs_f64();
    let cpu_us_per_op = (cpu_secs() - cpu0) * 1e6 / lat.len() as f64;
    println!(
        "  ctx switches/op: {:.2}",
        (ctx_switches() - cs0) as f64 / lat.len() as f64
    );
    lat.sort_unstable();
    let q = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] as f64 / 1000.0;
    (lat.len() as f64 / secs, q(0.5), q(0.99), cpu_us_per_op)
}

fn perf_opts() -> PoolOptions {
    let workers = std::env::var("GC_WORKERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    PoolOptions {
        worker_threads: workers,
        ..Default::default()
    }
}

/// Node B in its own process (PEERS_PERF_PROCS=2): serves until its stdin
/// closes. Not a test on its own.
#[test]
#[ignore]
fn owner_node() {
    if std::env::var_os("PEERS_PERF_OWNER").is_none() {
        return;
    }
    let b = Pool::new("127.0.0.1:0", None, perf_opts()).unwrap();
    let gb = Group::new("peerbench", 64 << 20, Some(getter()));
    b.register(gb.clone()).unwrap();
    b.set_peers(&[b.url().to_string()]).unwrap();
    println!("URL {}", b.url());
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

#[test]
#[ignore]
fn remote_fetch_rate() {
    use std::io::BufRead;
    let opts = perf_opts();
    // Node B: here, or in a child process (as the real benchmark runs it).
    let mut child = None;
    let mut local_b = None;
    let b_url = if std::env::var("PEERS_PERF_PROCS").as_deref() == Ok("2") {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "owner_node",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("PEERS_PERF_OWNER", "1")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        let url = loop {
            let mut line = String::new();
            assert!(out.read_line(&mut line).unwrap() > 0, "owner node exited");
            if let Some(u) = line.trim().split("URL ").nth(1) {
                break u.to_string();
            }
        };
        child = Some(c);
        url
    } else {
        let b = Pool::new("127.0.0.1:0", None, opts.clone()).unwrap();
        let gb = Group::new("peerbench", 64 << 20, Some(getter()));
        b.register(gb.clone()).unwrap();
        b.set_peers(&[b.url().to_string()]).unwrap();
        let url = b.url().to_string();
        local_b = Some((b, gb));
        url
    };
    let a = Pool::new("127.0.0.1:0", None, opts).unwrap();
    let ga = Group::new("peerbench", 64 << 20, Some(getter()));
    a.register(ga.clone()).unwrap();
    a.set_peers(&[b_url]).unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let dur = Duration::from_millis(
        std::env::var("PEERS_PERF_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000),
    );
    phase(&ga, 1, Duration::from_millis(200), &next); // warm up
    let concs: Vec<usize> = std::env::var("PEERS_PERF_CONC")
        .ok()
        .map(|s| s.split(',').filter_map(|c| c.parse().ok()).collect())
        .unwrap_or(vec![1, 16]);
    for conc in concs {
        let (rate, p50, p99, cpu) = phase(&ga, conc, dur, &next);
        println!("remote c{conc}: {rate:.0} fetches/s, p50 {p50:.1} µs, p99 {p99:.1} µs, CPU {cpu:.1} µs/op (this process)");
    }
    let s = ga.stats();
    assert_eq!(s.peer_errors, 0, "{s:?}");
    assert_eq!(s.local_loads, 0);
    drop(local_b);
    if let Some(mut c) = child {
        drop(c.stdin.take());
        let _ = c.wait();
    }
}
