//! Reliability, part 3: stress. A three-node cluster (one process, real
//! HTTP over loopback), several threads per core for a bounded time, mixed
//! get / set / set-with-TTL / remove over a small key space with small
//! caches (so eviction runs all the time). Checked: every value returned is
//! one the loader or a set produced for that key (intact bytes), no get
//! fails, and each node's main_bytes + hot_bytes stays within max_bytes
//! at rest (and within max_bytes + one entry per inserting thread while
//! inserts run: the store inserts, then evicts).
//!
//! Run: cargo test --release --test integration reliability_stress::      (8 s)
//! Longer: GC_STRESS_SECS=300 cargo test --release --test integration reliability_stress::

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::Pool;

const KEYS: usize = 400;
const MAX_BYTES: u64 = 48 << 10;

fn key(i: usize) -> Vec<u8> {
    if i % 50 == 7 {
        format!("missing/{i}").into_bytes()
    } else {
        format!("k/{i}/é +%").into_bytes()
    }
}

/// Padding that depends on (tag, nonce): a value is checked byte by byte.
fn body(tag: &str, key: &[u8], nonce: u64, len: usize) -> Vec<u8> {
    let mut v = format!("{tag}|{}|{nonce}|", String::from_utf8_lossy(key)).into_bytes();
    let mut x = nonce.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn size_of(i: usize, nonce: u64) -> usize {
    16 + ((i as u64 * 131 + nonce * 17) % 3000) as usize
}

struct StressLoader {
    node: usize,
    loads: AtomicU64,
}

impl Getter for StressLoader {
    fn get(&self, k: &[u8], sink: &mut Sink) -> Result<(), Error> {
        let n = self.loads.fetch_add(1, Ordering::Relaxed);
        if k.starts_with(b"missing/") {
            return Err(Error::NotFound);
        }
        let i: usize = std::str::from_utf8(k)
            .unwrap()
            .split('/')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let nonce = (self.node as u64) << 48 | n;
        sink.set(&body("L", k, nonce, size_of(i, nonce)), 0)
    }
}

/// Checks a value returned for key `i`.
fn check(i: usize, v: &[u8], sets: &Mutex<HashSet<(usize, u64)>>) {
    let k = key(i);
    let text = String::from_utf8_lossy(v);
    let mut parts = text.splitn(4, '|');
    let tag = parts.next().unwrap_or("");
    let kk = parts.next().unwrap_or("");
    let nonce: u64 = parts
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("key {i}: malformed value {:?}", &text[..text.len().min(80)]));
    assert_eq!(kk.as_bytes(), &k[..], "key {i}: a value of another key");
    let want = body(tag, &k, nonce, size_of(i, nonce));
    assert!(
        v == &want[..],
        "key {i}: corrupted value (tag {tag}, nonce {nonce}, len {})",
        v.len()
    );
    match tag {
        "L" => {}
        "S" => assert!(
            sets.lock().unwrap().contains(&(i, nonce)),
            "key {i}: a set value never set"
        ),
        _ => panic!("key {i}: unknown tag {tag}"),
    }
}

#[test]
fn three_nodes_mixed_load() {
    let secs: u64 = std::env::var("GC_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
    let threads = (4 * cores).max(8);
    let mut pools = Vec::new();
    let mut groups = Vec::new();
    for node in 0..3 {
        let l = Arc::new(StressLoader {
            node,
            loads: AtomicU64::new(0),
        });
        let g = Group::new("g", MAX_BYTES, Some(l as Arc<dyn Getter>));
        let p = Pool::new("127.0.0.1:0", None, opts(5000)).unwrap();
        p.register(g.clone()).unwrap();
        pools.push(p);
        groups.push(g);
    }
    link(pools.iter().map(|p| &**p));
    let sets: Arc<Mutex<HashSet<(usize, u64)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new([(); 6].map(|_| AtomicU64::new(0))); // get, hit-or-load, set, ttl set, remove, missing
    let nonce = Arc::new(AtomicU64::new(1));
    let mut hs = Vec::new();
    for t in 0..threads {
        let (groups, sets, stop, ops, nonce) = (
            groups.clone(),
            sets.clone(),
            stop.clone(),
            ops.clone(),
            nonce.clone(),
        );
        hs.push(spawn_named("stress", move || {
            let mut r = Rng::new(t as u64 + 1);
            while !stop.load(Ordering::Relaxed) {
                let i = r.below(KEYS as u64) as usize;
                let k = key(i);
                let g = &groups[r.below(3) as usize];
                let dice = r.below(100);
                if dice < 75 {
                    match g.get(&k) {
                        Ok(v) => check(i, &v, &sets),
                        Err(Error::NotFound) if k.starts_with(b"missing/") => {
                            ops[5].fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => panic!("get key {i}: {e}"),
                    }
                    ops[0].fetch_add(1, Ordering::Relaxed);
                } else if dice < 90 {
                    let n = (1u64 << 60) | nonce.fetch_add(1, Ordering::Relaxed);
                    sets.lock().unwrap().insert((i, n));
                    let ttl = if dice < 84 { 0 } else { 20 + r.below(300) as i64 };
                    g.set(&k, &body("S", &k, n, size_of(i, n)), ttl)
                        .unwrap_or_else(|e| panic!("set key {i}: {e}"));
                    ops[if ttl > 0 { 3 } else { 2 }].fetch_add(1, Ordering::Relaxed);
                } else {
                    g.remove(&k).unwrap_or_else(|e| panic!("remove key {i}: {e}"));
                    ops[4].fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Memory: sampled all along.
    let start = Instant::now();
    let mut samples = 0u64;
    let mut peak = 0u64;
    let slack = threads as u64 * (3016 + 32);
    while start.elapsed() < Duration::from_secs(secs) {
        for (n, g) in groups.iter().enumerate() {
            let s = g.stats();
            let used = s.main_bytes + s.hot_bytes;
            peak = peak.max(used);
            // An insert evicts after it inserted (as groupcache does, but
            // without one global lock): while threads insert, the total may
            // pass max_bytes by at most one entry per inserting thread.
            assert!(
                used <= MAX_BYTES + slack,
                "node {n}: {used} bytes cached, max_bytes {MAX_BYTES} + {slack}: {s:?}"
            );
            samples += 1;
        }
        if hs.iter().any(|h| h.is_finished()) {
            break; // a thread panicked: join reports it
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    stop.store(true, Ordering::Relaxed);
    for h in hs {
        h.join().unwrap();
    }
    // At rest, strictly within max_bytes.
    for (n, g) in groups.iter().enumerate() {
        let s = g.stats();
        assert!(s.main_bytes + s.hot_bytes <= MAX_BYTES, "node {n} at rest: {s:?}");
    }
    let o: Vec<u64> = ops.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let stats: Vec<_> = groups.iter().map(|g| g.stats()).collect();
    let evictions: u64 = stats.iter().map(|s| s.main_evictions + s.hot_evictions).sum();
    let peer_errors: u64 = stats.iter().map(|s| s.peer_errors).sum();
    let peer_loads: u64 = stats.iter().map(|s| s.peer_loads).sum();
    eprintln!(
        "stress: {threads} threads, {:?}: {} gets ({} not found), {} sets, {} TTL sets, {} removes; \
         {peer_loads} peer loads, {peer_errors} peer errors, {evictions} evictions; \
         {samples} memory samples, peak {peak} of max_bytes {MAX_BYTES}",
        start.elapsed(),
        o[0],
        o[5],
        o[2],
        o[3],
        o[4]
    );
    assert!(o[0] > 1000 && o[2] > 100 && o[4] > 100, "{o:?}");
    assert!(evictions > 0, "the caches were meant to be full");
    assert_eq!(peer_errors, 0, "{stats:?}");
    for p in &pools {
        p.close();
    }
}
