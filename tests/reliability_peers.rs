//! Reliability, part 1: hostile clients against the peer server, and
//! broken peers against the client (RELIABILITY.md). Every test here takes
//! the SERIAL lock, because they count this process's threads and fds.
//!
//! Run: cargo test --release --test reliability_peers

#[path = "reliability/common.rs"]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use groupcache::peers::PoolOptions;

/// Not a test: the node the SIGKILL test runs in a child process.
#[test]
#[ignore = "not a test: the body of a child process the SIGKILL test starts"]
fn child_node() {
    child_node_main();
}

const CLOSE: &str = "Host: x\r\nConnection: close\r\n";

fn small_limits() -> PoolOptions {
    PoolOptions {
        max_body_bytes: 64 << 10,
        max_header_bytes: 16 << 10,
        header_timeout: Duration::from_millis(400),
        idle_timeout: Duration::from_millis(400),
        body_timeout: Duration::from_millis(400),
        max_connections: 16,
        ..opts(1000)
    }
}

fn get(key: &str) -> Vec<u8> {
    format!("GET /_groupcache/g/{key} HTTP/1.1\r\n{CLOSE}\r\n").into_bytes()
}

/// The server is healthy: a normal GET answers 200 with the right value.
fn assert_serves(node: &Node) {
    let out = raw_exchange(node.addr(), &get("health"), Duration::from_secs(3));
    assert_eq!(statuses(&out), vec![200], "{}", String::from_utf8_lossy(&out));
    assert!(out.ends_with(b"v:health"));
}

#[test]
fn hostile_requests_get_a_status_never_a_panic() {
    let _g = serial();
    let base = Baseline::take();
    let node = Node::new(small_limits());
    let a = node.addr();
    let w = Duration::from_secs(3);
    let long_key = "k".repeat(9000); // over the engine's 8 KiB key limit
    let many_headers: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let huge_head = format!(
        "GET /_groupcache/g/k HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 << 10)
    );
    let cases: Vec<(&str, Vec<u8>, &[u16])> = vec![
        ("no key", format!("GET /_groupcache/g HTTP/1.1\r\n{CLOSE}\r\n").into(), &[400]),
        ("bad escape", format!("GET /_groupcache/g/%zz HTTP/1.1\r\n{CLOSE}\r\n").into(), &[400]),
        ("short escape", format!("GET /_groupcache/g/a% HTTP/1.1\r\n{CLOSE}\r\n").into(), &[400]),
        ("bad escape in group", format!("GET /_groupcache/%g/k HTTP/1.1\r\n{CLOSE}\r\n").into(), &[400]),
        ("non-UTF-8 group", format!("GET /_groupcache/%ff/k HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404]),
        ("unknown group", format!("GET /_groupcache/nope/k HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404]),
        ("empty group", format!("GET /_groupcache//k HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404]),
        ("outside base path", format!("GET /x HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404]),
        ("base path only", format!("GET /_groupcache/ HTTP/1.1\r\n{CLOSE}\r\n").into(), &[400]),
        ("dot segments", format!("GET /_groupcache/../g/k HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404]),
        ("key too long", get(&long_key), &[400]),
        ("asterisk form", format!("OPTIONS * HTTP/1.1\r\n{CLOSE}\r\n").into(), &[404, 400]),
        ("absolute form", format!("GET http://h/_groupcache/g/abs HTTP/1.1\r\n{CLOSE}\r\n").into(), &[200]),
        ("unknown method", format!("BREW /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 0\r\n\r\n").into(), &[405]),
        ("GET with a body", format!("GET /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 5\r\n\r\nhello").into(), &[200]),
        ("DELETE with a body", format!("DELETE /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 3\r\n\r\nabc").into(), &[200]),
        ("PUT not protobuf", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 3\r\n\r\n\x0a\x7f\x7f").into(), &[400]),
        ("PUT other group", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 3\r\n\r\n\x0a\x01h").into(), &[400]),
        ("PUT announced too large", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 99999999999\r\n\r\n").into(), &[413]),
        ("PUT chunked too large", {
            let mut r = format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Transfer-Encoding: chunked\r\n\r\n").into_bytes();
            for _ in 0..20 { r.extend_from_slice(format!("1000\r\n{}\r\n", "x".repeat(4096)).as_bytes()); }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }, &[413]),
        ("bad chunk size", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Transfer-Encoding: chunked\r\n\r\nzz\r\n").into(), &[400]),
        ("too many headers", format!("GET /_groupcache/g/k HTTP/1.1\r\n{many_headers}\r\n").into(), &[431]),
        ("head too large", huge_head.into_bytes(), &[431]),
        ("two content-lengths", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 1\r\nContent-Length: 2\r\n\r\nab").into(), &[400]),
        ("CL and chunked", format!("PUT /_groupcache/g/k HTTP/1.1\r\n{CLOSE}Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").into(), &[400, 200]),
        ("binary garbage", (0..=255u8).cycle().take(3000).collect(), &[400]),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(), &[0]),
        ("HTTP/0.9", b"GET /_groupcache/g/k\r\n\r\n".to_vec(), &[400, 505]),
        ("bare LF", b"GET /_groupcache/g/lf HTTP/1.1\nHost: x\nConnection: close\n\n".to_vec(), &[200, 400]),
        ("NUL in path", b"GET /_groupcache/g/a\0b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(), &[400]),
        ("escaped NUL key", get("a%00b"), &[200]),
        ("missing key", get("missing:x"), &[404]),
    ];
    let mut failures = Vec::new();
    for (what, req, want) in &cases {
        let out = raw_exchange(a, req, w);
        let got = statuses(&out);
        // One answer (or, for garbage the parser drops, a close), never a
        // hang past `w` or a dead server.
        // 0: closed without an answer (hyper does so for an HTTP/2 preface).
        let ok = if want == &[0] {
            got.is_empty()
        } else {
            got.len() == 1 && want.contains(&got[0])
        };
        if !ok {
            failures.push(format!(
                "{what}: got {got:?}, want one of {want:?}: {:?}",
                String::from_utf8_lossy(&out[..out.len().min(200)])
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_serves(&node);
    // 100 pipelined requests in one write, answered in order.
    let mut pipe = Vec::new();
    for i in 0..100 {
        pipe.extend_from_slice(format!("GET /_groupcache/g/p{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    pipe.extend_from_slice(&get("last"));
    let out = raw_exchange(a, &pipe, w);
    assert_eq!(statuses(&out).len(), 101);
    assert!(out.ends_with(b"v:last"));
    // Keep-alive survives a 4xx: a bad request, then a good one, one connection.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(w)).unwrap();
    s.write_all(b"GET /_groupcache/g HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    s.write_all(&get("after-400")).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(statuses(&out), vec![400, 200]);
    drop(s);
    assert!(node.group.stats().server_requests > 100);
    node.shut();
    base.assert_settled("hostile requests", Duration::from_secs(5));
}

#[test]
fn slow_clients_time_out() {
    let _g = serial();
    let base = Baseline::take();
    let node = Node::new(small_limits()); // idle and body timeouts: 400 ms
    let a = node.addr();
    // Slowloris: half a head, then silence.
    {
        let t = Instant::now();
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"GET /_groupcache/g/k HTTP/1.1\r\nHost:").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let took = t.elapsed();
        assert!(took < Duration::from_secs(2), "slow head held {took:?}");
    }
    // An idle connection that never sends a byte is closed too.
    {
        let t = Instant::now();
        let mut s = TcpStream::connect(a).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "idle connection held {:?}",
            t.elapsed()
        );
    }
    // A slow body: 408 within the body timeout.
    {
        let t = Instant::now();
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"PUT /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n\x0a\x01")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert_eq!(statuses(&out), vec![408], "{}", String::from_utf8_lossy(&out));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "slow body held {:?}",
            t.elapsed()
        );
    }
    // A trickling body (a byte every 50 ms) is cut at the body timeout as a
    // whole, not per byte.
    {
        let t = Instant::now();
        let mut s = TcpStream::connect(a).unwrap();
        s.write_all(b"PUT /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while t.elapsed() < Duration::from_secs(3) {
            if s.write_all(b"x").is_err() {
                break;
            }
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(_) => {}
            }
        }
        assert_eq!(statuses(&out), vec![408], "{}", String::from_utf8_lossy(&out));
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "trickling body held {:?}",
            t.elapsed()
        );
    }
    assert_serves(&node);
    node.shut();
    base.assert_settled("slow clients", Duration::from_secs(5));
}

#[test]
fn connections_are_bounded() {
    let _g = serial();
    let base = Baseline::take();
    let opts = PoolOptions {
        max_connections: 8,
        ..small_limits()
    };
    let node = Node::new(opts);
    let a = node.addr();
    let port = a.port();
    // Warm: the runtime's threads have named themselves, a worker exists.
    assert_serves(&node);
    let threads_before = lib_threads();
    // 120 connections that send nothing: the server keeps at most 8 (each
    // newcomer takes the place of the longest-waiting one) and they cost no
    // thread. Before the server served connections as tasks, each took a
    // thread (and 975b7f3 fixed that taking more threads than permits).
    let held: Vec<TcpStream> = (0..120).map(|_| TcpStream::connect(a).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(150));
    assert!(
        lib_threads() <= threads_before,
        "{} threads for idle connections (was {threads_before})",
        lib_threads()
    );
    let open = established_from(port);
    assert!(open <= 8, "{open} server-side connections for max_connections 8");
    // A real request gets through at once: it takes an idle one's place.
    let t = Instant::now();
    let out = raw_exchange(a, &get("through"), Duration::from_secs(10));
    assert_eq!(statuses(&out), vec![200]);
    assert!(t.elapsed() < Duration::from_millis(300), "{:?}", t.elapsed());
    drop(held);
    // Many short connections in a row: served, no thread per connection.
    for i in 0..200 {
        let out = raw_exchange(a, &get(&format!("c{i}")), Duration::from_secs(3));
        assert_eq!(statuses(&out), vec![200]);
    }
    let work = threads_named(&[&format!("gcwork-{port}")]);
    assert!(work <= 2, "{work} worker threads for requests one at a time");
    node.shut();
    base.assert_settled("connection flood", Duration::from_secs(5));
}

/// Server-side sockets of `port` that are not closed (ESTABLISHED or
/// CLOSE_WAIT), from /proc/net/tcp.
fn established_from(port: u16) -> usize {
    let hex = format!(":{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&hex) && (f[3] == "01" || f[3] == "08")
        })
        .count()
}

/// Gets `keys` on `node` from `threads` threads; every answer must be the
/// right value within `bound`. Returns the slowest get.
fn get_all(node: &Arc<Node>, keys: &[Vec<u8>], threads: usize, bound: Duration) -> Duration {
    let keys = Arc::new(keys.to_vec());
    let hs: Vec<_> = (0..threads)
        .map(|t| {
            let (node, keys) = (node.clone(), keys.clone());
            spawn_named("getter", move || {
                let mut worst = Duration::ZERO;
                for k in keys.iter().skip(t).step_by(threads) {
                    let s = Instant::now();
                    let v = node.group.get(k).unwrap_or_else(|e| panic!("get {k:?}: {e}"));
                    let took = s.elapsed();
                    assert_eq!(&v[..], &value_for(k)[..]);
                    assert!(
                        took <= bound,
                        "get {:?} took {took:?}",
                        String::from_utf8_lossy(k)
                    );
                    worst = worst.max(took);
                }
                worst
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).max().unwrap()
}

/// A node whose only peer is `peer_url`; keys owned by the peer.
fn node_with_peer(peer_url: &str, timeout_ms: u64, n: usize, prefix: &str) -> (Arc<Node>, Vec<Vec<u8>>) {
    let node = Node::new(opts(timeout_ms));
    let urls = vec![node.pool.url().to_string(), peer_url.to_string()];
    node.pool.set_peers(&urls).unwrap();
    (Arc::new(node), keys_owned_by(&urls, 1, n, prefix))
}

fn unwrap_node(n: Arc<Node>) -> Node {
    Arc::try_unwrap(n).ok().expect("node still shared")
}

#[test]
fn broken_peers_mean_local_loads_within_the_timeout() {
    let _g = serial();
    let base = Baseline::take();
    let timeout = 500;
    let bound = Duration::from_millis(timeout + 400);
    let peers: Vec<(&str, BadPeer)> = vec![
        ("silent", BadPeer::silent()),
        ("closes at once", BadPeer::start(|s| drop(s))),
        ("not HTTP", BadPeer::replying(b"SSH-2.0-OpenSSH_9.2\r\n", false)),
        ("truncated body, closed", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n\x0a\x05ab", false)),
        ("truncated body, held open", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 100\r\n\r\n\x0a\x05ab", true)),
        ("protobuf garbage", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4\r\n\r\n\x0a\x09ab", false)),
        ("wrong type", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>", false)),
        ("huge announced body", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 99999999999\r\n\r\n", true)),
        ("bad chunking", BadPeer::replying(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", true)),
        ("head never ends", BadPeer::replying(b"HTTP/1.1 200 OK\r\nX-A: b\r\n", true)),
        ("500", BadPeer::replying(b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops", false)),
        ("no such group", BadPeer::replying(b"HTTP/1.1 404 Not Found\r\nContent-Length: 16\r\n\r\nno such group: g", false)),
        ("1xx forever", BadPeer::replying(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\n", true)),
    ];
    for (what, peer) in peers {
        let (node, keys) = node_with_peer(&peer.url, timeout, 6, what);
        let worst = get_all(&node, &keys, 3, bound);
        let s = node.group.stats();
        assert_eq!(s.peer_errors, 6, "{what}: {s:?}");
        assert_eq!(s.local_loads, 6, "{what}: {s:?}");
        assert_eq!(node.loader.calls.load(Ordering::SeqCst), 6, "{what}");
        // Cached now: no more peer traffic, no more loads.
        get_all(&node, &keys, 1, Duration::from_millis(50));
        assert_eq!(node.group.stats().peer_errors, 6, "{what}");
        eprintln!(
            "{what}: worst get {worst:?}, peer saw {} connections",
            peer.accepted.load(Ordering::SeqCst)
        );
        unwrap_node(node).shut();
        peer.stop();
    }
    base.assert_settled("broken peers", Duration::from_secs(5));
}

#[test]
fn a_peer_killed_mid_load_is_survived() {
    let _g = serial();
    let base_fds = fd_count();
    // The child's getter takes 300 ms, so loads are in flight when it dies.
    let mut child = ChildNode::spawn(300);
    let (node, keys) = node_with_peer(&child.url, 1500, 60, "kill-");
    let n2 = node.clone();
    let k2 = keys.clone();
    let worker = spawn_named("killload", move || {
        get_all(&n2, &k2, 6, Duration::from_millis(1500 + 600))
    });
    std::thread::sleep(Duration::from_millis(700));
    child.kill9();
    let killed_at = Instant::now();
    let worst = worker.join().unwrap();
    let s = node.group.stats();
    eprintln!(
        "after SIGKILL: {s:?}, worst get {worst:?}, done {:?} after the kill",
        killed_at.elapsed()
    );
    assert!(
        s.peer_loads >= 6,
        "some keys came from the child before it died: {s:?}"
    );
    assert!(s.peer_errors >= 1, "the kill was noticed: {s:?}");
    assert_eq!(s.peer_loads + s.peer_errors, 60, "{s:?}");
    assert_eq!(s.local_loads, s.peer_errors, "{s:?}");
    // Later gets of the dead peer's keys: refused connections, fast.
    let more = keys_owned_by(&[node.pool.url().to_string(), child.url.clone()], 1, 20, "after-");
    let worst = get_all(&node, &more, 2, Duration::from_millis(600));
    assert!(worst < Duration::from_millis(300), "{worst:?}");
    drop(child);
    unwrap_node(node).shut();
    // The child's stdout reader thread ends with the pipe.
    let end = Instant::now() + Duration::from_secs(5);
    while fd_count() > base_fds && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(fd_count() <= base_fds, "fds {base_fds} -> {}", fd_count());
}

/// The client side through a proxy that delays, cuts and black-holes
/// connections: every get is right and within timeout + a local load, and
/// the counters add up.
#[test]
fn lossy_slow_links_still_give_right_values() {
    let _g = serial();
    let base = Baseline::take();
    let owner = Node::new(opts(2000));
    let faults = Faults {
        delay_ms: (0, 30),
        p_cut: 0.10,
        p_stall: 0.05,
        p_refuse: 0.05,
    };
    let proxy = Proxy::start(owner.addr(), faults, 42);
    let timeout = 400;
    let (node, keys) = node_with_peer(&proxy.url, timeout, 300, "lossy-");
    // The owner is reached only through the proxy; its own loader is the
    // authority, the caller's a fallback: both give value_for(key).
    let worst = get_all(&node, &keys, 6, Duration::from_millis(timeout + 500));
    let s = node.group.stats();
    let o = owner.group.stats();
    eprintln!(
        "through the proxy: {s:?}\nowner: {o:?}\nproxy: {:?}\nworst get {worst:?}",
        proxy.counts
    );
    assert_eq!(s.peer_loads + s.peer_errors, 300, "{s:?}");
    assert_eq!(s.local_loads, s.peer_errors, "{s:?}");
    assert!(s.peer_errors > 0, "faults were injected: {s:?}");
    assert!(s.peer_loads > 150, "most got through: {s:?}");
    unwrap_node(node).shut();
    proxy.stop();
    owner.shut();
    base.assert_settled("lossy links", Duration::from_secs(6));
}

/// The same through tc netem on the loopback of a network namespace (real
/// loss and delay, with TCP retransmits), run there by
/// tests/reliability/netem.sh.
#[test]
#[ignore = "needs tc netem (root, the sch_netem kernel module): run by tests/reliability/netem.sh"]
fn netem_loopback() {
    assert!(
        std::env::var("GC_NETEM").is_ok(),
        "run by tests/reliability/netem.sh, inside a network namespace whose loopback has netem"
    );
    let _g = serial();
    let base = Baseline::take();
    let owner = Node::new(opts(2000));
    let timeout = 1000;
    let (node, keys) = node_with_peer(owner.pool.url(), timeout, 300, "netem-");
    let worst = get_all(&node, &keys, 6, Duration::from_millis(timeout + 600));
    let s = node.group.stats();
    eprintln!("netem: {s:?}, worst {worst:?}");
    assert_eq!(s.peer_loads + s.peer_errors, 300, "{s:?}");
    assert_eq!(s.local_loads, s.peer_errors, "{s:?}");
    unwrap_node(node).shut();
    owner.shut();
    base.assert_settled("netem", Duration::from_secs(6));
}
