//! Pool + server + client over real loopback HTTP, with a test double in
//! place of the engine's group (the end-to-end tests with real groups are in
//! tests/peers_*.rs).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::server::{self, PeerService};
use super::*;
use crate::engine::{Error, PeerError, PeerGetter, PeerPicker, PeerValue};

/// Records what peers asked for; answers from a map.
#[derive(Default)]
struct Fake {
    values: Mutex<HashMap<Vec<u8>, PeerValue>>,
    gets: Mutex<Vec<Vec<u8>>>,
    removes: Mutex<Vec<Vec<u8>>>,
    delay: Mutex<Option<Duration>>,
    /// The thread each get_for_peer ran on.
    threads: Mutex<Vec<String>>,
    /// The keys of each get_many_for_peer call (one per batch request with
    /// misses), and the thread it ran on.
    batches: Mutex<Vec<(Vec<Vec<u8>>, String)>>,
    /// Where each get_many_for_peer call waits first, when set.
    meet: Mutex<Option<Arc<Meet>>>,
}

/// A reusable meeting point of `n` threads that gives up (false) after two
/// seconds instead of hanging when fewer come.
struct Meet {
    n: usize,
    /// (arrived, round)
    state: Mutex<(usize, u64)>,
    cv: std::sync::Condvar,
}

impl Meet {
    fn new(n: usize) -> Arc<Meet> {
        Arc::new(Meet {
            n,
            state: Mutex::new((0, 0)),
            cv: std::sync::Condvar::new(),
        })
    }

    fn wait(&self) -> bool {
        let mut st = self.state.lock().unwrap();
        let round = st.1;
        st.0 += 1;
        if st.0 == self.n {
            *st = (0, round + 1);
            self.cv.notify_all();
            return true;
        }
        let (st, timeout) = self
            .cv
            .wait_timeout_while(st, Duration::from_secs(2), |st| st.1 == round)
            .unwrap();
        drop(st);
        !timeout.timed_out()
    }
}

impl Fake {
    fn answer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        if key.starts_with(b"fail") {
            return Err(Error::LoaderFailed("boom".into()));
        }
        if let Some(v) = self.values.lock().unwrap().get(key) {
            return Ok(v.clone());
        }
        if key.starts_with(b"missing") {
            return Err(Error::NotFound);
        }
        if key.starts_with(b"big") {
            return Ok(PeerValue {
                value: Bytes::from(vec![key[key.len() - 1]; 3000]),
                expire_unix_nanos: Some(1_900_000_000_000_000_000),
            });
        }
        let mut v = b"v:".to_vec();
        v.extend_from_slice(key);
        Ok(PeerValue {
            value: Bytes::from(v),
            expire_unix_nanos: None,
        })
    }
}

impl PeerService for Fake {
    /// Stored values only (no delay): what the server answers without a
    /// worker.
    fn get_cached_for_peer(&self, key: &[u8], _max_len: usize) -> Result<Option<PeerValue>, Error> {
        Ok(self.values.lock().unwrap().get(key).cloned())
    }
    fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        self.gets.lock().unwrap().push(key.to_vec());
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.threads.lock().unwrap().push(name);
        let delay = *self.delay.lock().unwrap(); // not held while sleeping
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        self.answer(key)
    }
    fn get_many_for_peer(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        let name = std::thread::current().name().unwrap_or("").to_string();
        self.batches
            .lock()
            .unwrap()
            .push((keys.iter().map(|k| k.to_vec()).collect(), name));
        let meet = self.meet.lock().unwrap().clone();
        if let Some(m) = meet {
            assert!(m.wait(), "the batches did not arrive at once");
        }
        let delay = *self.delay.lock().unwrap();
        if let Some(d) = delay {
            std::thread::sleep(d);
        }
        keys.iter().map(|k| self.answer(k)).collect()
    }
    fn set_from_peer(&self, key: &[u8], value: PeerValue) -> Result<(), Error> {
        self.values.lock().unwrap().insert(key.to_vec(), value);
        Ok(())
    }
    fn remove_from_peer(&self, key: &[u8]) -> Result<(), Error> {
        self.removes.lock().unwrap().push(key.to_vec());
        self.values.lock().unwrap().remove(key);
        Ok(())
    }
}

fn opts() -> PoolOptions {
    PoolOptions {
        timeout: Duration::from_millis(500),
        worker_threads: 1,
        ..Default::default()
    }
}

/// A serving pool with a Fake under "g", and a client-only pool whose only
/// peer is the server, so every key is picked to go there.
struct Pair {
    server: Arc<Pool>,
    client: Arc<Pool>,
    fake: Arc<Fake>,
    _svc: Arc<dyn PeerService>,
}

fn pair() -> Pair {
    let server = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    Pair {
        server,
        client,
        fake,
        _svc: svc,
    }
}

impl Pair {
    fn peer(&self) -> Arc<dyn PeerGetter> {
        self.client.pick_peer(b"any").expect("the server owns every key")
    }
}

fn tricky_keys() -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = [
        &b""[..],
        b"plain",
        b"a/b",
        b"/leading/and/trailing/",
        b"//",
        b"a b",
        b"a+b",
        b"+",
        b" ",
        b"100%",
        b"%2F",
        b"%zz",
        b"?q=1&x#frag",
        "été ☃ 日本".as_bytes(),
        b"\x00\x01\xff\xfe",
        b"..",
        b".",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    keys.push((0..=255u8).collect());
    keys
}

#[test]
fn get_round_trips_tricky_keys() {
    let p = pair();
    let peer = p.peer();
    assert_eq!(peer.url(), p.server.url());
    for key in tricky_keys() {
        let v = peer.get("g", &key).unwrap();
        let mut want = b"v:".to_vec();
        want.extend_from_slice(&key);
        assert_eq!(v.value, want, "key {key:?}");
        assert_eq!(v.expire_unix_nanos, None);
        assert_eq!(p.fake.gets.lock().unwrap().last().unwrap(), &key);
    }
}

#[test]
fn set_get_remove_with_ttl() {
    let p = pair();
    let peer = p.peer();
    for key in tricky_keys() {
        let v = PeerValue {
            value: Bytes::from_static(b"stored"),
            expire_unix_nanos: Some(1_900_000_000_000_000_000),
        };
        peer.set("g", &key, &v).unwrap();
        assert_eq!(peer.get("g", &key).unwrap(), v, "key {key:?}");
        peer.remove("g", &key).unwrap();
        assert_eq!(p.fake.removes.lock().unwrap().last().unwrap(), &key);
        assert!(p.fake.values.lock().unwrap().get(&key).is_none());
    }
}

#[test]
fn large_values_both_ways() {
    let p = pair();
    let peer = p.peer();
    let big: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i * 31 % 251) as u8).collect();
    let v = PeerValue {
        value: Bytes::from(big),
        expire_unix_nanos: None,
    };
    peer.set("g", b"big", &v).unwrap();
    assert_eq!(peer.get("g", b"big").unwrap(), v);
}

#[test]
fn not_found_is_final_failures_are_not() {
    let p = pair();
    let peer = p.peer();
    assert_eq!(peer.get("g", b"missing-1"), Err(PeerError::NotFound));
    match peer.get("g", b"fail-1") {
        // The loader's own message stays on the owner (its log): it may
        // hold SQL, paths or secrets.
        Err(PeerError::Failed(m)) => assert!(
            m.contains("500 Internal Server Error: loader failed") && !m.contains("boom"),
            "{m}"
        ),
        r => panic!("{r:?}"),
    }
    // An unknown group is the peer's problem, not a missing key.
    match peer.get("nope", b"k") {
        Err(PeerError::Failed(m)) => assert!(m.contains("no such group"), "{m}"),
        r => panic!("{r:?}"),
    }
    assert!(matches!(peer.remove("nope", b"k"), Err(PeerError::Failed(_))));
}

#[test]
fn slow_owner_times_out() {
    let p = pair();
    *p.fake.delay.lock().unwrap() = Some(Duration::from_millis(1500));
    let t = Instant::now();
    let r = p.peer().get("g", b"k");
    assert!(
        matches!(&r, Err(PeerError::Failed(m)) if m.contains("timed out")),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_millis(1200), "{:?}", t.elapsed());
}

/// Listens and accepts but never answers.
fn silent_peer() -> (String, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    (url, h)
}

/// Answers every connection with `reply`, then closes.
fn garbage_peer(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut buf);
            let _ = s.write_all(reply);
        }
    });
    url
}

#[test]
fn silent_peer_fails_within_timeout() {
    let (url, h) = silent_peer();
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c.set_peers(&[url]).unwrap();
    let peer = c.pick_peer(b"k").unwrap();
    let t = Instant::now();
    let r = peer.get("g", b"k");
    let took = t.elapsed();
    assert!(
        matches!(&r, Err(PeerError::Failed(m)) if m.contains("timed out")),
        "{r:?}"
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_millis(1200),
        "{took:?}"
    );
    drop(c);
    h.join().unwrap();
}

#[test]
fn garbage_answers_fail() {
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    for reply in [
        &b"this is not HTTP at all\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 3\r\n\r\n\x0a\x05h",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 10\r\n\r\nshort",
    ] {
        c.set_peers(&[garbage_peer(reply)]).unwrap();
        let r = c.pick_peer(b"k").unwrap().get("g", b"k");
        assert!(matches!(r, Err(PeerError::Failed(_))), "{reply:?}: {r:?}");
    }
}

#[test]
fn refused_connection_fails_fast() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    drop(l);
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c.set_peers(&[url]).unwrap();
    let t = Instant::now();
    assert!(matches!(
        c.pick_peer(b"k").unwrap().get("g", b"k"),
        Err(PeerError::Failed(_))
    ));
    assert!(t.elapsed() < Duration::from_millis(400));
}

/// Sends one raw HTTP/1.1 request and returns (status, body).
fn raw(addr: std::net::SocketAddr, req: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => out[i + 4..].to_vec(),
        None => Vec::new(),
    };
    (status, body)
}

#[test]
fn go_client_escaping_is_understood() {
    // url.QueryEscape("a b+c/é") as golang/groupcache's client sends it.
    let p = pair();
    let (status, body) = raw(
        p.server.local_addr(),
        b"GET /_groupcache/g/a+b%2Bc%2F%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let m = <proto::GetResponse as prost::Message>::decode(&body[..]).unwrap();
    assert_eq!(&m.value[..], "v:a b+c/é".as_bytes());
}

#[test]
fn server_rejects_bad_requests() {
    let p = pair();
    let a = p.server.local_addr();
    let close = "Host: x\r\nConnection: close\r\n";
    assert_eq!(
        raw(
            a,
            format!("GET /_groupcache/g HTTP/1.1\r\n{close}\r\n").as_bytes()
        )
        .0,
        400
    );
    assert_eq!(
        raw(
            a,
            format!("GET /_groupcache/g/%4 HTTP/1.1\r\n{close}\r\n").as_bytes()
        )
        .0,
        400
    );
    assert_eq!(
        raw(
            a,
            format!("GET /elsewhere/g/k HTTP/1.1\r\n{close}\r\n").as_bytes()
        )
        .0,
        404
    );
    assert_eq!(
        raw(
            a,
            format!("POST /_groupcache/g/k HTTP/1.1\r\n{close}Content-Length: 0\r\n\r\n").as_bytes()
        )
        .0,
        405
    );
    let (st, body) = raw(
        a,
        format!("GET /_groupcache/zz/k HTTP/1.1\r\n{close}\r\n").as_bytes(),
    );
    assert_eq!(
        (st, String::from_utf8_lossy(&body).trim()),
        (404, "no such group: zz")
    );
    // A PUT body that is not a SetRequest.
    assert_eq!(
        raw(
            a,
            format!("PUT /_groupcache/g/k HTTP/1.1\r\n{close}Content-Length: 3\r\n\r\n\x0a\x7f\x7f")
                .as_bytes()
        )
        .0,
        400
    );
    // Too large a body, announced.
    let huge = opts().max_body_bytes + 1;
    assert_eq!(
        raw(
            a,
            format!("PUT /_groupcache/g/k HTTP/1.1\r\n{close}Content-Length: {huge}\r\n\r\n").as_bytes()
        )
        .0,
        413
    );
    // Too large a head.
    let long = "a".repeat(200 << 10);
    assert_eq!(
        raw(
            a,
            format!("GET /_groupcache/g/{long} HTTP/1.1\r\n{close}\r\n").as_bytes()
        )
        .0,
        431
    );
}

#[test]
fn keep_alive_reuses_connections() {
    let p = pair();
    let peer = p.peer();
    for i in 0..200 {
        peer.get("g", format!("k{i}").as_bytes()).unwrap();
    }
    // Sequential requests need one connection; count the server's sockets.
    let port = p.server.local_addr().port();
    let n = established_to(port);
    assert!(n <= 2, "{n} connections for 200 sequential requests");
}

/// ESTABLISHED TCP connections whose local port is `port` (server side).
fn established_to(port: u16) -> usize {
    let hex = format!(":{port:04X} ");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && format!("{} ", f[1]).ends_with(&hex) && f[3] == "01"
        })
        .count()
}

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|n| n.trim_end() == prefix)
        .count()
}

#[test]
fn close_stops_serving_and_threads() {
    let p = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let addr = p.local_addr();
    let name = format!("gcpool-{}", addr.port());
    // A new thread names itself once it runs: give it a moment.
    let t = Instant::now();
    while threads_named(&name) == 0 && t.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(threads_named(&name) >= 1);
    p.set_peers(&["http://127.0.0.1:1".to_string()]).unwrap();
    assert!(p.pick_peer(b"k").is_some());
    p.close();
    p.close();
    assert!(p.is_closed());
    assert!(p.pick_peer(b"k").is_none());
    assert!(p.all_peers().is_empty());
    assert_eq!(p.set_peers(&[]), Err(PoolError::Closed));
    assert!(TcpStream::connect(addr).is_err(), "still accepting");
    assert_eq!(threads_named(&name), 0);
    assert_eq!(threads_named(&format!("gcwork-{}", addr.port())), 0);
    // Dropping without close does the same.
    let q = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let name = format!("gcpool-{}", q.local_addr().port());
    drop(q);
    assert_eq!(threads_named(&name), 0);
}

#[test]
fn close_while_requests_are_served() {
    let p = pair();
    *p.fake.delay.lock().unwrap() = Some(Duration::from_millis(200));
    let peer = p.peer();
    let h = std::thread::spawn(move || peer.get("g", b"k"));
    std::thread::sleep(Duration::from_millis(50));
    let t = Instant::now();
    p.server.close();
    assert!(t.elapsed() < Duration::from_secs(2));
    // The request in flight was allowed to finish.
    assert!(h.join().unwrap().is_ok());
}

#[test]
fn peer_after_its_pool_closed_fails_cleanly() {
    let p = pair();
    let peer = p.peer();
    p.client.close();
    assert!(matches!(peer.get("g", b"k"), Err(PeerError::Failed(m)) if m.contains("closed")));
}

#[test]
fn ownership_follows_the_ring() {
    let pools: Vec<Arc<Pool>> = (0..3)
        .map(|_| Pool::new("127.0.0.1:0", None, opts()).unwrap())
        .collect();
    let urls: Vec<String> = pools.iter().map(|p| p.url().to_string()).collect();
    for p in &pools {
        p.set_peers(&urls).unwrap();
        assert_eq!(p.peers(), urls);
        assert_eq!(p.all_peers().len(), 2);
    }
    let mut ring = crate::ring::Ring::new(50);
    ring.add(urls.iter().cloned());
    for i in 0..2000 {
        let key = format!("key-{i}");
        let owner = ring.get(key.as_bytes()).unwrap();
        for p in &pools {
            match p.pick_peer(key.as_bytes()) {
                None => assert_eq!(p.url(), owner),
                Some(peer) => {
                    assert_ne!(p.url(), owner);
                    assert_eq!(peer.url(), owner);
                }
            }
        }
    }
    // A node missing from its own list owns nothing.
    pools[0].set_peers(&urls[1..]).unwrap();
    for i in 0..200 {
        assert!(pools[0].pick_peer(format!("key-{i}").as_bytes()).is_some());
    }
    pools[0].set_peers(&[]).unwrap();
    assert!(pools[0].pick_peer(b"k").is_none());
}

#[test]
fn membership_changes_under_load() {
    let p = pair();
    let other = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let fake2 = Arc::new(Fake::default());
    let svc2: Arc<dyn PeerService> = fake2.clone();
    other.register_service("g", &svc2).unwrap();
    let lists = [
        vec![p.server.url().to_string()],
        vec![p.server.url().to_string(), other.url().to_string()],
    ];
    let client = p.client.clone();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let client = client.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let key = format!("w{w}-{n}");
                    let peer = client.pick_peer(key.as_bytes()).unwrap();
                    assert_eq!(
                        peer.get("g", key.as_bytes()).unwrap().value,
                        format!("v:{key}").into_bytes()
                    );
                    n += 1;
                }
                n
            })
        })
        .collect();
    for i in 0..50 {
        client.set_peers(&lists[i % 2]).unwrap();
        std::thread::sleep(Duration::from_millis(4));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let total: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(total > 0);
}

#[test]
fn registry_rules() {
    let p = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let a: Arc<dyn PeerService> = Arc::new(Fake::default());
    let b: Arc<dyn PeerService> = Arc::new(Fake::default());
    p.register_service("g", &a).unwrap();
    assert_eq!(
        p.register_service("g", &b),
        Err(PoolError::AlreadyExists("g".into()))
    );
    assert!(matches!(
        p.register_service("a/b", &b),
        Err(PoolError::InvalidArgument(_))
    ));
    // A dropped group frees its name.
    drop(a);
    p.register_service("g", &b).unwrap();
    assert!(p.unregister("g"));
    assert!(!p.unregister("g"));
    p.close();
    assert_eq!(p.register_service("h", &b), Err(PoolError::Closed));
}

#[test]
fn bad_arguments() {
    let bad = |o: PoolOptions| {
        matches!(
            Pool::new("127.0.0.1:0", None, o),
            Err(PoolError::InvalidArgument(_))
        )
    };
    assert!(bad(PoolOptions {
        replicas: 0,
        ..opts()
    }));
    assert!(bad(PoolOptions {
        base_path: "nope".into(),
        ..opts()
    }));
    assert!(bad(PoolOptions {
        timeout: Duration::ZERO,
        ..opts()
    }));
    // Every numeric option within its range, the error naming it.
    let named = |o: PoolOptions, name: &str| match Pool::new("127.0.0.1:0", None, o) {
        Err(PoolError::InvalidArgument(m)) => assert!(m.contains(name), "{m}"),
        r => panic!("{name}: {r:?}"),
    };
    named(
        PoolOptions {
            replicas: pool::MAX_REPLICAS + 1,
            ..opts()
        },
        "replicas",
    );
    named(
        PoolOptions {
            replicas: usize::MAX,
            ..opts()
        },
        "replicas",
    );
    let too_long = pool::MAX_TIMEOUT + Duration::from_millis(1);
    named(
        PoolOptions {
            timeout: too_long,
            ..opts()
        },
        "timeout",
    );
    named(
        PoolOptions {
            connect_timeout: Duration::MAX,
            ..opts()
        },
        "connect_timeout",
    );
    named(
        PoolOptions {
            idle_timeout: Duration::MAX,
            ..opts()
        },
        "idle_timeout",
    );
    named(
        PoolOptions {
            body_timeout: too_long,
            ..opts()
        },
        "body_timeout",
    );
    named(
        PoolOptions {
            max_header_bytes: usize::MAX,
            ..opts()
        },
        "max_header_bytes",
    );
    named(
        PoolOptions {
            worker_threads: 1 << 20,
            ..opts()
        },
        "worker_threads",
    );
    named(
        PoolOptions {
            secret: Some(String::new()),
            ..opts()
        },
        "secret",
    );
    // The limits themselves are fine.
    Pool::new(
        "127.0.0.1:0",
        None,
        PoolOptions {
            replicas: pool::MAX_REPLICAS,
            timeout: pool::MAX_TIMEOUT,
            idle_timeout: pool::MAX_TIMEOUT,
            max_header_bytes: pool::MAX_HEADER_BYTES,
            ..opts()
        },
    )
    .unwrap();
    let r = Pool::new("not an address", None, opts());
    assert!(matches!(r, Err(PoolError::InvalidArgument(_))), "{r:?}");
    assert!(matches!(
        Pool::new("127.0.0.1:0", Some("ftp://x"), opts()),
        Err(PoolError::InvalidArgument(_))
    ));
    let p = Pool::new("127.0.0.1:0", Some("http://me.example:1"), opts()).unwrap();
    assert_eq!(p.url(), "http://me.example:1");
    for u in [
        "",
        "127.0.0.1:80",
        "https://a:1",
        "http://a:1/?x",
        "http://",
        "http://a:65536",
        "http://a:99999",
        "http://[::1]:70000",
        "http://u@a:99999",
    ] {
        assert!(
            matches!(p.set_peers(&[u.to_string()]), Err(PoolError::InvalidArgument(_))),
            "{u}"
        );
    }
    // Valid ports, with and without user info or brackets, still pass.
    for u in [
        "http://a:65535",
        "http://a:0",
        "http://[::1]:80",
        "http://[::1]",
        "http://u@a:8",
        "http://a:",
    ] {
        assert!(p.set_peers(&[u.to_string()]).is_ok(), "{u}");
    }
    // Binding a port in use is an I/O error.
    let taken = p.local_addr().to_string();
    assert!(matches!(Pool::new(&taken, None, opts()), Err(PoolError::Io(_))));
}

#[test]
fn custom_base_path() {
    let o = PoolOptions {
        base_path: "/cache/v1/".into(),
        ..opts()
    };
    let server = Pool::new("127.0.0.1:0", None, o.clone()).unwrap();
    let svc: Arc<dyn PeerService> = Arc::new(Fake::default());
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, o).unwrap();
    // A trailing '/' on the peer URL does not double the slash.
    client.set_peers(&[format!("{}/", server.url())]).unwrap();
    assert_eq!(
        &client.pick_peer(b"k").unwrap().get("g", b"k").unwrap().value[..],
        b"v:k"
    );
}

#[test]
fn slow_getters_run_in_parallel_and_threads_end_with_the_pool() {
    let p = pair();
    *p.fake.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let t = Instant::now();
    let hs: Vec<_> = (0..4)
        .map(|i| {
            let peer = p.peer();
            std::thread::spawn(move || peer.get("g", format!("k{i}").as_bytes()))
        })
        .collect();
    for h in hs {
        let r = h.join().unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    // Four misses, four workers: not one after another.
    assert!(t.elapsed() < Duration::from_millis(550), "{:?}", t.elapsed());
    let name = format!("gcwork-{}", p.server.local_addr().port());
    assert_eq!(threads_named(&name), 4);
    p.server.close();
    assert_eq!(threads_named(&name), 0);
}

/// A server pool with `o` serving a Fake under "g".
fn server_with(o: PoolOptions) -> (Arc<Pool>, Arc<Fake>, Arc<dyn PeerService>) {
    let server = Pool::new("127.0.0.1:0", None, o).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    (server, fake, svc)
}

#[test]
fn misses_queue_for_workers_while_hits_are_answered() {
    let (server, fake, _svc) = server_with(PoolOptions {
        server_workers: 2,
        ..opts()
    });
    fake.values.lock().unwrap().insert(
        b"cached".to_vec(),
        PeerValue {
            value: Bytes::from_static(b"hit"),
            expire_unix_nanos: None,
        },
    );
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(300));
    let name = format!("gcwork-{}", server.local_addr().port());
    let a = server.local_addr();
    let t = Instant::now();
    let misses: Vec<_> = (0..4)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!("GET /_groupcache/g/m{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    // Both workers are in the getter: a cached key is still answered at once.
    let h = Instant::now();
    let (st, body) = raw(
        a,
        b"GET /_groupcache/g/cached HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    assert!(body.ends_with(b"hit"));
    assert!(
        h.elapsed() < Duration::from_millis(150),
        "hit took {:?}",
        h.elapsed()
    );
    for m in misses {
        assert_eq!(m.join().unwrap().0, 200);
    }
    // Two at a time: two rounds of 300 ms.
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(580), "{took:?}");
    assert!(took < Duration::from_millis(1100), "{took:?}");
    assert_eq!(threads_named(&name), 2, "at most 2 workers");
    assert_eq!(
        fake.gets.lock().unwrap().len(),
        4,
        "the hit did not reach get_for_peer"
    );
}

#[test]
fn a_fast_group_turning_slow_does_not_stall_hits() {
    // Two runtime workers: misses of a fast group run on one of them.
    let (server, fake, _svc) = server_with(PoolOptions {
        worker_threads: 2,
        ..opts()
    });
    fake.values.lock().unwrap().insert(
        b"cached".to_vec(),
        PeerValue {
            value: Bytes::from_static(b"hit"),
            expire_unix_nanos: None,
        },
    );
    let a = server.local_addr();
    let get = |key: &str| {
        raw(
            a,
            format!("GET /_groupcache/g/{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    for i in 0..20 {
        assert_eq!(get(&format!("fast{i}")).0, 200);
    }
    // Now the getter blocks: the next miss runs inline and holds a runtime
    // worker for 600 ms; the other one keeps answering.
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(600));
    let slow = std::thread::spawn(move || {
        raw(
            a,
            b"GET /_groupcache/g/slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    });
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let t = Instant::now();
        let (st, body) = get("cached");
        assert_eq!(st, 200);
        assert!(body.ends_with(b"hit"));
        assert!(
            t.elapsed() < Duration::from_millis(200),
            "a hit took {:?}",
            t.elapsed()
        );
    }
    assert_eq!(slow.join().unwrap().0, 200);
    let ran_on = fake.threads.lock().unwrap().last().cloned().unwrap();
    assert_eq!(ran_on, format!("gcpool-{}", a.port()), "the slow call ran inline");
    // The slow call sent the group to the workers: misses run in parallel.
    let t = Instant::now();
    let hs: Vec<_> = (0..3)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!("GET /_groupcache/g/after{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap().0, 200);
    }
    assert!(t.elapsed() < Duration::from_millis(1100), "{:?}", t.elapsed());
    assert!(threads_named(&format!("gcwork-{}", a.port())) >= 3);
}

/// Reads until EOF or `wait`; true if the server closed the connection.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn a_full_server_makes_room_by_closing_the_longest_waiting() {
    let (server, _fake, _svc) = server_with(PoolOptions {
        max_connections: 4,
        ..opts()
    });
    let a = server.local_addr();
    // Four clients that stall mid-head, oldest first.
    let mut stalled: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /_groupcache/g/k HTTP/1.1\r\nHost:").unwrap();
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    let t = Instant::now();
    let (st, _) = raw(
        a,
        b"GET /_groupcache/g/new HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    // The oldest made room; the newest is still open.
    assert!(closed_within(&mut stalled[0], Duration::from_secs(2)));
    assert!(!closed_within(&mut stalled[3], Duration::from_millis(200)));
}

#[test]
fn a_server_busy_serving_every_connection_refuses_with_503() {
    let (server, fake, _svc) = server_with(PoolOptions {
        max_connections: 2,
        ..opts()
    });
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(400));
    let a = server.local_addr();
    let busy: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!("GET /_groupcache/g/b{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(150));
    let t = Instant::now();
    let (st, body) = raw(a, b"GET /_groupcache/g/third HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!((st, &body[..]), (503, &b"server busy\n"[..]));
    assert!(t.elapsed() < Duration::from_millis(200), "{:?}", t.elapsed());
    for b in busy {
        assert_eq!(b.join().unwrap().0, 200);
    }
}

#[test]
fn head_and_idle_deadlines_are_separate() {
    let (server, _fake, _svc) = server_with(PoolOptions {
        header_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(1500),
        ..opts()
    });
    let a = server.local_addr();
    // Silent from the start: the head deadline runs from the accept.
    let mut silent = TcpStream::connect(a).unwrap();
    let t = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(3)));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(900),
        "{took:?}"
    );
    // A head that starts but never ends: the same.
    let mut slow = TcpStream::connect(a).unwrap();
    slow.write_all(b"GET /_groupcache/g/k HTTP/1.1\r\n").unwrap();
    assert!(closed_within(&mut slow, Duration::from_secs(3)));
    // After a request, a keep-alive connection may idle past the head
    // deadline, up to the idle one.
    let mut ka = TcpStream::connect(a).unwrap();
    let req = b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\n\r\n";
    ka.write_all(req).unwrap();
    ka.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 4096];
    assert!(ka.read(&mut buf).unwrap() > 0);
    std::thread::sleep(Duration::from_millis(700));
    ka.write_all(req).unwrap();
    let n = ka.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t = Instant::now();
    assert!(closed_within(&mut ka, Duration::from_secs(4)));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_millis(2500),
        "{took:?}"
    );
}

fn set_request_of_len(key: &[u8], value_len: usize) -> Vec<u8> {
    set_request(key, &vec![b'v'; value_len])
}

#[test]
fn remote_puts_and_deletes_obey_the_key_limit() {
    let server = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let g = crate::engine::Group::new("g", 1 << 20, None);
    server.register(g.clone()).unwrap();
    let a = server.local_addr();
    let put = |key: &[u8]| {
        let body = set_request_of_len(key, 10);
        let mut req = format!(
            "PUT /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        raw(a, &req)
    };
    let long = vec![b'k'; 64 << 10];
    let (st, body) = put(&long);
    assert_eq!(st, 400, "{}", String::from_utf8_lossy(&body));
    assert!(String::from_utf8_lossy(&body).contains("limit"));
    assert_eq!(g.stats().main_items, 0, "nothing stored");
    assert_eq!(put(&long[..crate::engine::MAX_KEY_LEN]).0, 200);
    assert_eq!(g.stats().main_items, 1);
    let path_key = "k".repeat(crate::engine::MAX_KEY_LEN + 1);
    let del = format!("DELETE /_groupcache/g/{path_key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(raw(a, del.as_bytes()).0, 400);
}

#[test]
fn request_bodies_share_a_budget() {
    let (server, fake, _svc) = server_with(PoolOptions {
        body_budget_bytes: 100 << 10,
        max_body_bytes: 1 << 20,
        ..opts()
    });
    let a = server.local_addr();
    let put_head = |key: &str, len: usize| {
        format!("PUT /_groupcache/g/{key} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n")
    };
    // One body of 80 KiB in flight (all but its last byte sent)...
    let first = set_request_of_len(b"first", 80 << 10);
    let mut s1 = TcpStream::connect(a).unwrap();
    s1.write_all(put_head("first", first.len()).as_bytes()).unwrap();
    s1.write_all(&first[..first.len() - 1]).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // ...leaves no room for another.
    let second = set_request_of_len(b"second", 80 << 10);
    let mut req = put_head("second", second.len()).into_bytes();
    req.extend_from_slice(&second);
    let (st, body) = raw(a, &req);
    assert_eq!(st, 503, "{}", String::from_utf8_lossy(&body));
    // Chunked bodies are charged as they arrive.
    let mut chunked = b"PUT /_groupcache/g/c HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..10 {
        chunked.extend_from_slice(format!("1000\r\n{}\r\n", "x".repeat(4096)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(raw(a, &chunked).0, 503);
    // The first completes; then a body larger than the whole budget goes
    // through, alone.
    s1.write_all(&first[first.len() - 1..]).unwrap();
    let mut out = Vec::new();
    s1.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s1.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let big = set_request_of_len(b"big", 300 << 10);
    let mut req = put_head("big", big.len()).into_bytes();
    req.extend_from_slice(&big);
    assert_eq!(raw(a, &req).0, 200);
    assert_eq!(fake.values.lock().unwrap()[&b"big"[..]].value.len(), 300 << 10);
}

#[test]
fn callers_inside_a_runtime_use_the_pools_client() {
    let p = pair();
    let peer = p.peer();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            let v = peer.get("g", b"from a runtime")?;
            peer.set("g", b"x", &v)?;
            peer.remove("g", b"x")?;
            Ok::<_, PeerError>(v)
        })
        .await
        .unwrap()
    });
    assert_eq!(&r.unwrap().value[..], b"v:from a runtime");
    assert_eq!(p.fake.removes.lock().unwrap().last().unwrap(), b"x");
}

#[test]
fn stale_keep_alive_connections_are_retried() {
    // The server closes idle connections after 100 ms; the client keeps
    // them for 30 s, so its next request finds a closed connection.
    let server = Pool::new(
        "127.0.0.1:0",
        None,
        PoolOptions {
            idle_timeout: Duration::from_millis(100),
            ..opts()
        },
    )
    .unwrap();
    let svc: Arc<dyn PeerService> = Arc::new(Fake::default());
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    let peer = client.pick_peer(b"k").unwrap();
    for i in 0..3 {
        assert_eq!(&peer.get("g", b"k").unwrap().value[..], b"v:k", "round {i}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn requests_carry_host_and_origin_form() {
    // What a Go server insists on: a Host header (400 without one).
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        *seen2.lock().unwrap() = String::from_utf8_lossy(&buf[..n]).into_owned();
        let body = b"\x0a\x02ok";
        let _ = s.write_all(
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        let _ = s.write_all(body);
        std::thread::sleep(Duration::from_millis(100));
    });
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c.set_peers(&[format!("http://{addr}")]).unwrap();
    assert_eq!(
        &c.pick_peer(b"k").unwrap().get("g g", b"a/b").unwrap().value[..],
        b"ok"
    );
    let req = seen.lock().unwrap().to_ascii_lowercase();
    assert!(
        req.starts_with("get /_groupcache/g%20g/a%2fb http/1.1\r\n"),
        "{req}"
    );
    assert!(req.contains(&format!("\r\nhost: {addr}\r\n")), "{req}");
}

/// Serves like golang/groupcache: every method as a GET, no marker header.
/// Records the request lines it saw.
fn go_like_peer() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // One request at a time: the head ends with an empty
                    // line (these requests have no body but the PUT's,
                    // which is small and arrives with it).
                    let Ok(n) = s.read(&mut chunk) else { return };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).into_owned();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < i + 4 + len {
                            break;
                        }
                        buf.drain(..i + 4 + len);
                        let line = head.lines().next().unwrap().to_string();
                        let bad = line.split(' ').nth(1) == Some("/_groupcache/");
                        seen.lock().unwrap().push(line);
                        let reply: &[u8] = if bad {
                            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nbad request\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4\r\n\r\n\x0a\x02go"
                        };
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (url, seen)
}

#[test]
fn get_only_peers_get_no_put_or_delete() {
    let (url, seen) = go_like_peer();
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c.set_peers(&[url]).unwrap();
    let peer = c.pick_peer(b"k").unwrap();
    // Before any GET: a probe finds out.
    assert_eq!(peer.remove("g", b"k"), Ok(()));
    let v = PeerValue {
        value: Bytes::from_static(b"v"),
        expire_unix_nanos: None,
    };
    assert_eq!(peer.set("g", b"k", &v), Ok(()));
    assert_eq!(&peer.get("g", b"k").unwrap().value[..], b"go");
    assert_eq!(peer.remove("g", b"k2"), Ok(()));
    let lines = seen.lock().unwrap().clone();
    assert_eq!(
        lines,
        ["GET /_groupcache/ HTTP/1.1", "GET /_groupcache/g/k HTTP/1.1"],
        "{lines:?}"
    );
}

#[test]
fn our_peers_are_recognised_by_their_header() {
    let p = pair();
    let peer = p.peer();
    // A GET first: no probe needed afterwards (the fake counts GETs).
    peer.get("g", b"a").unwrap();
    peer.remove("g", b"a").unwrap();
    assert_eq!(p.fake.gets.lock().unwrap().len(), 1);
    assert_eq!(p.fake.removes.lock().unwrap().len(), 1);
}

// ---- a shared secret (see `auth`) ------------------------------------------

fn secret_opts() -> PoolOptions {
    PoolOptions {
        secret: Some("s3cret".into()),
        ..opts()
    }
}

/// A node of ours as a sniffer on the wire sees it: records every request
/// it receives, head and body, and answers as our server would (200 with
/// our header; a GetResponse to a GET).
fn sniffed_peer() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < i + 4 + len {
                            break;
                        }
                        let req: Vec<u8> = buf.drain(..i + 4 + len).collect();
                        let reply: &[u8] = if head.starts_with("get ") {
                            b"HTTP/1.1 200 OK\r\nx-groupcache-peer: set, remove\r\nContent-Type: application/x-protobuf\r\nContent-Length: 5\r\n\r\n\x0a\x03rec"
                        } else {
                            b"HTTP/1.1 200 OK\r\nx-groupcache-peer: set, remove\r\nContent-Length: 0\r\n\r\n"
                        };
                        seen.lock().unwrap().push(req);
                        if s.write_all(reply).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (url, seen)
}

/// A node with the secret serving a Fake under "g", which answers as the
/// node at `self_url`; and a node with the same secret whose only peer is
/// a sniffed one at `sniffed`.
struct Signed {
    server: Arc<Pool>,
    fake: Arc<Fake>,
    _svc: Arc<dyn PeerService>,
    client: Arc<Pool>,
    captured: Arc<Mutex<Vec<Vec<u8>>>>,
}

fn signed_setup(server_self_url: Option<&str>) -> (Signed, String) {
    let (sniffed, captured) = sniffed_peer();
    let server = Pool::new(
        "127.0.0.1:0",
        Some(server_self_url.unwrap_or(&sniffed)),
        secret_opts(),
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    client.set_peers(std::slice::from_ref(&sniffed)).unwrap();
    let s = Signed {
        server,
        fake,
        _svc: svc,
        client,
        captured,
    };
    (s, sniffed)
}

impl Signed {
    /// What the client sent the sniffed node for `call`: its last request.
    fn capture(&self, call: impl FnOnce(&dyn PeerGetter)) -> Vec<u8> {
        call(&*self.client.pick_peer(b"k").unwrap());
        self.captured.lock().unwrap().last().unwrap().clone()
    }

    /// Sends a captured request to the real server, on a connection of its
    /// own that closes after the answer.
    fn replay(&self, req: &[u8]) -> (u16, Vec<u8>) {
        let i = req.windows(2).position(|w| w == b"\r\n").unwrap();
        let mut r = req[..i + 2].to_vec();
        r.extend_from_slice(b"Connection: close\r\n");
        r.extend_from_slice(&req[i + 2..]);
        raw(self.server.local_addr(), &r)
    }
}

fn set_request(key: &[u8], value: &[u8]) -> Vec<u8> {
    prost::Message::encode_to_vec(&proto::SetRequest {
        group: Bytes::from_static(b"g"),
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
        expire: 0,
        hot_cache: false,
    })
}

/// `req` with its body replaced (and Content-Length to match).
fn with_body(req: &[u8], body: &[u8]) -> Vec<u8> {
    let i = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(req[..i].to_vec()).unwrap();
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("content-length:"))
        .flat_map(|l| [l, "\r\n"])
        .collect::<String>()
        .into_bytes();
    out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

/// `req` with `suffix` appended to its request target.
fn with_query(req: &[u8], suffix: &str) -> Vec<u8> {
    let i = req.windows(9).position(|w| w == b" HTTP/1.1").unwrap();
    [&req[..i], suffix.as_bytes(), &req[i..]].concat()
}

fn value(v: &[u8]) -> PeerValue {
    PeerValue {
        value: Bytes::copy_from_slice(v),
        expire_unix_nanos: None,
    }
}

#[test]
fn signed_nodes_round_trip_tricky_keys() {
    let server = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    let peer = client.pick_peer(b"any").unwrap();
    for key in tricky_keys() {
        let v = peer.get("g", &key).unwrap();
        assert_eq!(v.value, [&b"v:"[..], &key].concat(), "key {key:?}");
        peer.set("g", &key, &value(b"set")).unwrap();
        assert_eq!(&fake.values.lock().unwrap()[&key].value[..], b"set");
        peer.remove("g", &key).unwrap();
        assert!(!fake.values.lock().unwrap().contains_key(&key));
    }
    // The same value set twice in a row: two signatures, both accepted.
    peer.set("g", b"twice", &value(b"x")).unwrap();
    peer.set("g", b"twice", &value(b"x")).unwrap();
    // From inside a runtime, through the pool's pooled client (absolute
    // URIs on its side, origin form on the wire): the same signatures.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let r = rt.block_on(async move {
        tokio::task::spawn_blocking(move || {
            for key in tricky_keys() {
                peer.get("g", &key)?;
                peer.set("g", &key, &value(b"rt"))?;
                peer.remove("g", &key)?;
            }
            Ok::<_, PeerError>(())
        })
        .await
        .unwrap()
    });
    assert_eq!(r, Ok(()));
    assert_eq!(fake.removes.lock().unwrap().len(), 2 * tricky_keys().len());
}

#[test]
fn a_replayed_put_or_delete_is_refused_even_with_another_body() {
    let (s, _) = signed_setup(None);
    let put = s.capture(|p| p.set("g", b"k", &value(b"good")).unwrap());
    assert!(put.starts_with(b"PUT /_groupcache/g/k "));
    // A captured PUT with the attacker's key and value: refused.
    let (status, body) = s.replay(&with_body(&put, &set_request(b"k", b"evil")));
    assert_eq!((status, &body[..]), (401, &b"unauthorized\n"[..]));
    let (status, _) = s.replay(&with_body(&put, &set_request(b"other", b"evil")));
    assert_eq!(status, 401);
    assert!(s.fake.values.lock().unwrap().is_empty(), "nothing was written");
    // The request as captured is good once (it never reached this server)...
    assert_eq!(s.replay(&put).0, 200);
    assert_eq!(&s.fake.values.lock().unwrap()[&b"k"[..]].value[..], b"good");
    // ...and never again.
    s.fake.values.lock().unwrap().clear();
    assert_eq!(s.replay(&put).0, 401);
    assert!(s.fake.values.lock().unwrap().is_empty());
    // A DELETE likewise.
    let del = s.capture(|p| p.remove("g", b"k").unwrap());
    assert!(del.starts_with(b"DELETE /_groupcache/g/k "));
    assert_eq!(s.replay(&del).0, 200);
    assert_eq!(s.replay(&del).0, 401);
    assert_eq!(s.replay(&with_body(&del, b"x")).0, 401);
    assert_eq!(s.fake.removes.lock().unwrap().len(), 1);
    // A GET may be replayed within the window (documented choice).
    let get = s.capture(|p| {
        p.get("g", b"k").unwrap();
    });
    assert!(get.starts_with(b"GET /_groupcache/g/k "));
    for _ in 0..2 {
        let (status, body) = s.replay(&get);
        assert_eq!(status, 200);
        let m = <proto::GetResponse as prost::Message>::decode(&body[..]).unwrap();
        assert_eq!(&m.value[..], b"v:k");
    }
    // Nor can a GET's signature carry a body.
    assert_eq!(s.replay(&with_body(&get, b"x")).0, 401);
}

#[test]
fn a_query_string_appended_fails_verification() {
    let (s, _) = signed_setup(None);
    let get = s.capture(|p| {
        p.get("g", b"k").unwrap();
    });
    for q in ["?x=1", "?", "%20", "/more"] {
        assert_eq!(s.replay(&with_query(&get, q)).0, 401, "{q}");
    }
    let put = s.capture(|p| p.set("g", b"k", &value(b"v")).unwrap());
    assert_eq!(s.replay(&with_query(&put, "?x=1")).0, 401);
    assert!(s.fake.gets.lock().unwrap().is_empty() && s.fake.values.lock().unwrap().is_empty());
    assert_eq!(s.replay(&get).0, 200, "the captured request itself verifies");
}

#[test]
fn a_request_signed_for_one_node_is_refused_by_another() {
    // `b` has the same secret but is another node (its own URL).
    let (s, a_url) = signed_setup(Some("http://127.0.0.1:1"));
    let get = s.capture(|p| {
        p.get("g", b"k").unwrap();
    });
    let put = s.capture(|p| p.set("g", b"k", &value(b"v")).unwrap());
    assert_eq!(s.replay(&get).0, 401);
    assert_eq!(s.replay(&put).0, 401);
    assert!(s.fake.gets.lock().unwrap().is_empty() && s.fake.values.lock().unwrap().is_empty());
    // The node they were addressed to accepts them, its self URL spelt
    // with a path (the node is host and port).
    let a = Pool::new("127.0.0.1:0", Some(&format!("{a_url}/")), secret_opts()).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    a.register_service("g", &svc).unwrap();
    let to_a = |req: &[u8]| {
        let i = req.windows(2).position(|w| w == b"\r\n").unwrap();
        let r = [&req[..i + 2], b"Connection: close\r\n", &req[i + 2..]].concat();
        raw(a.local_addr(), &r).0
    };
    assert_eq!(to_a(&get), 200);
    assert_eq!(to_a(&put), 200);
    assert_eq!(&fake.values.lock().unwrap()[&b"k"[..]].value[..], b"v");
}

#[test]
fn malformed_auth_headers_get_401_and_no_panic() {
    let server = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ms = secs * 1000;
    let digest = auth::body_digest(b"");
    let mut values: Vec<Vec<u8>> = vec![
        // Version 1's panic: valid time, then 64 bytes of "hex" whose byte
        // offsets fall inside multi-byte characters.
        format!("{secs}.a{}a", "é".repeat(31)).into_bytes(),
        format!("{secs}.{}", "0".repeat(64)).into_bytes(),
        format!("v2.{ms}.a{}a.{digest}.{}", "é".repeat(7), "0".repeat(64)).into_bytes(),
        format!("v2.{ms}.0000000000000000.{digest}.a{}a", "é".repeat(31)).into_bytes(),
        format!("v2.{ms}.0000000000000000.{digest}.{}", "0".repeat(64)).into_bytes(),
        b"v2.....".to_vec(),
        b"".to_vec(),
        b"\xff\xfe\x80".to_vec(),
        (0x80..=0xffu8).collect(),
    ];
    let mut obs = format!("v2.{ms}.0000000000000000.{digest}.").into_bytes();
    obs.extend(std::iter::repeat_n(0xe9, 64));
    values.push(obs);
    let a = server.local_addr();
    for v in &values {
        for method in ["GET", "PUT", "DELETE"] {
            let req = [
                format!("{method} /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nx-groupcache-auth: ").as_bytes(),
                v,
                b"\r\n\r\n",
            ]
            .concat();
            let (status, body) = raw(a, &req);
            assert_eq!(
                (status, &body[..]),
                (401, &b"unauthorized\n"[..]),
                "{method} {:?}",
                String::from_utf8_lossy(v)
            );
        }
    }
    // Two headers, each well-formed on its own.
    let good = auth::sign(
        b"s3cret",
        "GET",
        &auth::node_of(server.url()).unwrap(),
        "/_groupcache/g/k",
        &digest,
        auth::now_ms(),
        1,
    );
    let req = format!("GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-groupcache-auth: {good}\r\nx-groupcache-auth: {good}\r\n\r\n");
    assert_eq!(raw(a, req.as_bytes()).0, 401);
    let req = format!(
        "GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nx-groupcache-auth: {good}\r\n\r\n"
    );
    assert_eq!(raw(a, req.as_bytes()).0, 200, "the same header alone is good");
    assert_eq!(fake.gets.lock().unwrap().len(), 1);
    // An unsigned request announcing a huge body: 401 at once, the body is
    // never read (without a secret it would be a 413).
    let huge = opts().max_body_bytes * 4;
    let req = format!("PUT /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {huge}\r\nx-groupcache-auth: {good}\r\n\r\n");
    assert_eq!(raw(a, req.as_bytes()).0, 401);
    // No connection thread died: close does not wait out its grace period
    // for one that never ended.
    let t = Instant::now();
    server.close();
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "close took {:?}",
        t.elapsed()
    );
}

#[test]
fn a_signed_put_larger_than_the_limit_is_413_and_metrics_stay_open() {
    let server = Pool::new(
        "127.0.0.1:0",
        None,
        PoolOptions {
            max_body_bytes: 1024,
            ..secret_opts()
        },
    )
    .unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let a = server.local_addr();
    let node = auth::node_of(server.url()).unwrap();
    let body = set_request(b"k", &[7u8; 2000]);
    let sig = auth::sign(
        b"s3cret",
        "PUT",
        &node,
        "/_groupcache/g/k",
        &auth::body_digest(&body),
        auth::now_ms(),
        2,
    );
    let head = format!(
        "PUT /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nx-groupcache-auth: {sig}\r\n\r\n",
        body.len()
    );
    assert_eq!(raw(a, &[head.as_bytes(), &body].concat()).0, 413);
    assert!(fake.values.lock().unwrap().is_empty());
    // GET /metrics needs no signature (README: scrapers cannot sign; it has
    // no keys or values); anything else on that path does.
    let (status, _) = raw(
        a,
        b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200);
    let (status, _) = raw(
        a,
        b"DELETE /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
}

// ---- seeds of the signed fuzz target ------------------------------------------

/// The secret of fuzz/fuzz_targets/http_request_signed.rs.
const FUZZ_SECRET: &[u8] = b"fuzz-secret";
const SIGNED_SEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/seeds/http_request_signed");

/// A request signed for the signed fuzzing server (fixed node and clock).
fn fuzz_signed(method: &str, target: &str, body: &[u8], nonce: u64, extra: &str) -> Vec<u8> {
    let sig = auth::sign(
        FUZZ_SECRET,
        method,
        server::FUZZ_NODE,
        target,
        &auth::body_digest(body),
        server::FUZZ_NOW_MS,
        nonce,
    );
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nx-groupcache-auth: {sig}\r\n{extra}\r\n",
        server::FUZZ_NODE,
        body.len()
    );
    [head.as_bytes(), body].concat()
}

/// The seeds, with the status of each answer the server gives them.
fn signed_fuzz_seeds() -> Vec<(&'static str, Vec<u8>, Vec<u16>)> {
    let put_body = set_request(b"k", b"new value");
    let put = fuzz_signed("PUT", "/_groupcache/g/k", &put_body, 2, "");
    vec![
        (
            "get",
            fuzz_signed("GET", "/_groupcache/g/k", b"", 1, ""),
            vec![200],
        ),
        ("put", put.clone(), vec![200]),
        ("put_replayed", [&put[..], &put[..]].concat(), vec![200, 401]),
        (
            "put_other_body",
            with_body(&put, &set_request(b"k", b"evil")),
            vec![401],
        ),
        (
            "delete",
            fuzz_signed("DELETE", "/_groupcache/g/k", b"", 3, ""),
            vec![200],
        ),
        (
            "query",
            fuzz_signed("GET", "/_groupcache/g/k?x=1", b"", 4, ""),
            vec![200],
        ),
        (
            "pipelined",
            [
                fuzz_signed("GET", "/_groupcache/g/k", b"", 5, ""),
                fuzz_signed("PUT", "/_groupcache/g/k2", &set_request(b"k2", b"v"), 6, ""),
                fuzz_signed("GET", "/_groupcache/g/k2", b"", 7, ""),
                fuzz_signed("DELETE", "/_groupcache/g/k2", b"", 8, ""),
                b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
                fuzz_signed("GET", "/_groupcache/nope/k", b"", 9, "Connection: close\r\n"),
            ]
            .concat(),
            vec![200, 200, 200, 200, 200, 404],
        ),
        (
            "unsigned",
            b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            vec![401],
        ),
    ]
}

fn statuses(out: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(out);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| text[i + 9..].get(..3)?.parse().ok())
        .collect()
}

#[test]
fn signed_fuzz_seeds_are_current_and_reach_the_engine() {
    let mut stale = Vec::new();
    for (name, seed, want) in signed_fuzz_seeds() {
        let path = format!("{SIGNED_SEEDS}/{name}");
        if std::fs::read(&path).ok().as_deref() != Some(&seed[..]) {
            stale.push(path);
        }
        let g = crate::engine::Group::new("g", 1 << 20, None);
        g.set(b"k", b"value", 0).unwrap();
        let (out, reached) = server::serve_raw_signed_for_fuzzing(&g, &seed, FUZZ_SECRET);
        assert_eq!(statuses(&out), want, "{name}: {}", String::from_utf8_lossy(&out));
        let expect_reached = want.iter().filter(|&&s| s != 401).count() - usize::from(name == "pipelined");
        assert_eq!(reached, expect_reached, "{name}");
        // Under another secret nothing gets through.
        let (out, reached) = server::serve_raw_signed_for_fuzzing(&g, &seed, b"another secret");
        assert_eq!(reached, 0, "{name}: {}", String::from_utf8_lossy(&out));
    }
    assert!(
        stale.is_empty(),
        "stale seeds {stale:?}: cargo test --release --lib -- --ignored write_signed_fuzz_seeds"
    );
}

#[test]
#[ignore = "writes fuzz/seeds/http_request_signed/"]
fn write_signed_fuzz_seeds() {
    std::fs::create_dir_all(SIGNED_SEEDS).unwrap();
    for (name, seed, _) in signed_fuzz_seeds() {
        std::fs::write(format!("{SIGNED_SEEDS}/{name}"), seed).unwrap();
    }
}

#[test]
fn close_does_not_wait_for_stalled_clients() {
    let (server, _fake, _svc) = server_with(opts());
    let a = server.local_addr();
    let mut stalled: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /_groupcache/g/k HTTP/1.1\r\nHost:").unwrap();
            s
        })
        .collect();
    stalled.push(TcpStream::connect(a).unwrap()); // and one that sent nothing
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_millis(300), "{:?}", t.elapsed());
    for s in &mut stalled {
        assert!(closed_within(s, Duration::from_secs(1)));
    }
}

// ---- the batch route (`get_many`) ------------------------------------------

fn keys_of(keys: &[&'static str]) -> Vec<&'static [u8]> {
    keys.iter().map(|k| k.as_bytes()).collect()
}

/// A POST of `body` to `target` at `a`, on its own connection.
fn post(a: std::net::SocketAddr, target: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut req = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    raw(a, &req)
}

fn get_many_request(group: &[u8], keys: &[&[u8]]) -> Vec<u8> {
    prost::Message::encode_to_vec(&proto::GetManyRequest {
        group: Bytes::copy_from_slice(group),
        keys: keys.iter().map(|k| Bytes::copy_from_slice(k)).collect(),
        max_response_bytes: 0,
    })
}

#[test]
fn a_batch_is_one_request_with_values_not_found_and_errors() {
    let p = pair();
    p.fake
        .values
        .lock()
        .unwrap()
        .insert(b"cached".to_vec(), value(b"hit"));
    let keys = keys_of(&["cached", "m1", "missing1", "fail1", "m2", "cached", "m1"]);
    let r = p.peer().get_many("g", &keys);
    assert_eq!(r.len(), keys.len());
    assert_eq!(r[0], Ok(value(b"hit")));
    assert_eq!(r[1], Ok(value(b"v:m1")));
    assert_eq!(r[2], Err(PeerError::NotFound));
    match &r[3] {
        Err(PeerError::Failed(m)) => assert!(m.contains("500") && m.contains("loader failed"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r[4], Ok(value(b"v:m2")));
    assert_eq!(r[5], Ok(value(b"hit")));
    assert_eq!(r[6], Ok(value(b"v:m1")));
    // One request: the misses in one engine call, on a worker thread (never
    // on the runtime); the hits never left the runtime; no single GETs.
    let batches = p.fake.batches.lock().unwrap().clone();
    assert_eq!(batches.len(), 1, "{batches:?}");
    let want: Vec<Vec<u8>> = ["m1", "missing1", "fail1", "m2", "m1"]
        .iter()
        .map(|k| k.as_bytes().to_vec())
        .collect();
    assert_eq!(batches[0].0, want);
    let worker = format!("gcwork-{}", p.server.local_addr().port());
    assert_eq!(batches[0].1, worker);
    assert!(p.fake.gets.lock().unwrap().is_empty());
    // All hits: answered without the engine's batch call.
    let r = p.peer().get_many("g", &keys_of(&["cached", "cached"]));
    assert_eq!(r, vec![Ok(value(b"hit")), Ok(value(b"hit"))]);
    assert_eq!(p.fake.batches.lock().unwrap().len(), 1);
    // Expiries travel.
    let exp = Some(1_800_000_000_000_000_000);
    p.fake.values.lock().unwrap().insert(
        b"ttl".to_vec(),
        PeerValue {
            value: Bytes::from_static(b"t"),
            expire_unix_nanos: exp,
        },
    );
    let r = p.peer().get_many("g", &keys_of(&["ttl", "bigx"]));
    assert_eq!(r[0].as_ref().unwrap().expire_unix_nanos, exp);
    assert_eq!(r[1].as_ref().unwrap().value, vec![b'x'; 3000]);
    assert_eq!(
        r[1].as_ref().unwrap().expire_unix_nanos,
        Some(1_900_000_000_000_000_000)
    );
    // Tricky keys (any bytes; they travel in the body) and the empty key.
    let tricky = tricky_keys();
    let refs: Vec<&[u8]> = tricky.iter().map(|k| &k[..]).collect();
    for (k, r) in tricky.iter().zip(p.peer().get_many("g", &refs)) {
        assert_eq!(r.unwrap().value, [&b"v:"[..], k].concat());
    }
    assert_eq!(p.fake.batches.lock().unwrap().len(), 3);
    // Trivial batches: none, and one key (a GET).
    assert!(p.peer().get_many("g", &[]).is_empty());
    assert_eq!(p.peer().get_many("g", &[b"solo"]), vec![Ok(value(b"v:solo"))]);
    assert_eq!(p.fake.batches.lock().unwrap().len(), 3);
    assert_eq!(*p.fake.gets.lock().unwrap(), vec![b"solo".to_vec()]);
}

#[test]
fn batches_are_split_at_max_batch_keys() {
    let (server, fake, _svc) = server_with(opts());
    let client = Pool::new(
        "127.0.0.1:0",
        None,
        PoolOptions {
            max_batch_keys: 3,
            ..opts()
        },
    )
    .unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    let owned: Vec<Vec<u8>> = (0..8).map(|i| format!("k{i}").into_bytes()).collect();
    let keys: Vec<&[u8]> = owned.iter().map(|k| &k[..]).collect();
    let r = client.pick_peer(b"x").unwrap().get_many("g", &keys);
    for (k, r) in keys.iter().zip(&r) {
        assert_eq!(r.as_ref().unwrap().value, [&b"v:"[..], k].concat());
    }
    let mut sizes: Vec<usize> = fake.batches.lock().unwrap().iter().map(|b| b.0.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![2, 3, 3]);
    // A server that takes fewer keys than the client sends refuses the
    // request with a 400: each key fails (and loads locally).
    let (small, fake2, _svc2) = server_with(PoolOptions {
        max_batch_keys: 2,
        ..opts()
    });
    let c2 = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c2.set_peers(&[small.url().to_string()]).unwrap();
    let r = c2.pick_peer(b"x").unwrap().get_many("g", &keys[..3]);
    for r in &r {
        match r {
            Err(PeerError::Failed(m)) => assert!(m.contains("400") && m.contains("max_batch_keys"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    assert!(fake2.batches.lock().unwrap().is_empty());
    let (st, body) = post(
        small.local_addr(),
        "/_groupcache/g",
        &get_many_request(b"g", &keys[..3]),
    );
    assert_eq!(st, 400);
    assert_eq!(
        String::from_utf8_lossy(&body).trim(),
        "a batch of 3 keys: this node takes at most 2 (max_batch_keys)"
    );
    assert_eq!(
        post(
            small.local_addr(),
            "/_groupcache/g",
            &get_many_request(b"g", &keys[..2])
        )
        .0,
        200
    );
}

/// Forwards each connection to `to`, counting them: a peer URL whose
/// connections the test can count.
fn counting_proxy(to: std::net::SocketAddr) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        for a in l.incoming() {
            let Ok(a) = a else { continue };
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Ok(b) = TcpStream::connect(to) else { continue };
            let _ = (a.set_nodelay(true), b.set_nodelay(true));
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &a, &mut &b);
                let _ = b.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut &b2, &mut &a2);
                let _ = a2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    (url, count)
}

#[test]
fn batches_to_several_peers_go_out_at_once_on_kept_connections() {
    // Each server's batch waits for the other's: only batches sent at
    // once pass (else the client's 500 ms timeout fails them).
    let meet = Meet::new(2);
    let (s1, f1, _v1) = server_with(opts());
    let (s2, f2, _v2) = server_with(opts());
    *f1.meet.lock().unwrap() = Some(meet.clone());
    *f2.meet.lock().unwrap() = Some(meet.clone());
    let (u1, n1) = counting_proxy(s1.local_addr());
    let (u2, n2) = counting_proxy(s2.local_addr());
    let client = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    client.set_peers(&[u1.clone(), u2.clone()]).unwrap();
    let peer = |u: &str| client.all_peers().into_iter().find(|p| p.url() == u).unwrap();
    let (p1, p2) = (peer(&u1), peer(&u2));
    for round in 0..3 {
        let k1: Vec<Vec<u8>> = (0..5).map(|i| format!("a{round}-{i}").into_bytes()).collect();
        let k2: Vec<Vec<u8>> = (0..7).map(|i| format!("b{round}-{i}").into_bytes()).collect();
        let batches: Vec<crate::engine::PeerBatch<'_>> = vec![
            (p1.clone(), k1.iter().map(|k| &k[..]).collect()),
            (p2.clone(), k2.iter().map(|k| &k[..]).collect()),
        ];
        let got = client.get_many_from("g", &batches);
        assert_eq!(got.len(), 2);
        for ((_, keys), rs) in batches.iter().zip(&got) {
            assert_eq!(rs.len(), keys.len());
            for (k, r) in keys.iter().zip(rs) {
                assert_eq!(r.as_ref().unwrap().value, [&b"v:"[..], k].concat());
            }
        }
    }
    // One batch request per peer and round, all on one connection per peer.
    assert_eq!(f1.batches.lock().unwrap().len(), 3);
    assert_eq!(f2.batches.lock().unwrap().len(), 3);
    let conns = |n: &std::sync::atomic::AtomicUsize| n.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!((conns(&n1), conns(&n2)), (1, 1));
}

#[test]
fn values_past_the_answer_budget_are_fetched_alone() {
    // 3000-byte values, 4 KiB of answer: one value fits, the others come
    // as "too large" and are fetched with a GET each.
    let (server, fake, _svc) = server_with(opts());
    let client = Pool::new(
        "127.0.0.1:0",
        None,
        PoolOptions {
            max_body_bytes: 4096,
            ..opts()
        },
    )
    .unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    let keys = keys_of(&["big1", "big2", "small", "big3"]);
    let r = client.pick_peer(b"x").unwrap().get_many("g", &keys);
    assert_eq!(r[0].as_ref().unwrap().value, vec![b'1'; 3000]);
    assert_eq!(r[1].as_ref().unwrap().value, vec![b'2'; 3000]);
    assert_eq!(r[2].as_ref().unwrap().value, &b"v:small"[..]);
    assert_eq!(r[3].as_ref().unwrap().value, vec![b'3'; 3000]);
    assert_eq!(fake.batches.lock().unwrap().len(), 1);
    let mut singles = fake.gets.lock().unwrap().clone();
    singles.sort();
    assert_eq!(singles, vec![b"big2".to_vec(), b"big3".to_vec()]);
}

#[test]
fn bad_batch_requests_get_clear_answers() {
    let p = pair();
    let a = p.server.local_addr();
    let text = |r: (u16, Vec<u8>)| (r.0, String::from_utf8_lossy(&r.1).trim().to_string());
    // Not a GetManyRequest.
    let (st, t) = text(post(a, "/_groupcache/g", b"\x0a\x7f\x7f"));
    assert_eq!(st, 400);
    assert!(t.starts_with("decoding GetManyRequest"), "{t}");
    // Keys of wire type varint.
    assert_eq!(post(a, "/_groupcache/g", b"\x10\x01").0, 400);
    // Another group in the body than in the path.
    assert_eq!(
        text(post(a, "/_groupcache/g", &get_many_request(b"h", &[b"k"]))),
        (400, "GetManyRequest group differs from the path's".to_string())
    );
    // No such group; a bad escape; a group that is not UTF-8.
    assert_eq!(
        text(post(a, "/_groupcache/zz", &get_many_request(b"", &[b"k"]))),
        (404, "no such group: zz".to_string())
    );
    assert_eq!(post(a, "/_groupcache/g%4", b"").0, 400);
    assert_eq!(post(a, "/_groupcache/%ff", b"").0, 404);
    // The group's path without a key, by another method: as before.
    let (st, _) = raw(
        a,
        b"GET /_groupcache/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 400);
    // An empty body: no keys, no results.
    let (st, body) = post(a, "/_groupcache/g", b"");
    assert_eq!((st, body.len()), (200, 0));
    // A body too large: 413 from its Content-Length, unread.
    let huge = opts().max_body_bytes + 1;
    let (st, _) = raw(
        a,
        format!(
            "POST /_groupcache/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {huge}\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(st, 413);
    // Group given only in the path (field 1 empty): fine; each answer
    // decodes; the server says it has the batch route.
    let (st, body) = post(a, "/_groupcache/g", &get_many_request(b"", &[b"a", b"missing"]));
    assert_eq!(st, 200);
    let m = <proto::GetManyResponse as prost::Message>::decode(&body[..]).unwrap();
    assert_eq!(m.results.len(), 2);
    assert_eq!((&m.results[0].value[..], m.results[0].status), (&b"v:a"[..], 0));
    assert_eq!((m.results[1].status, &m.results[1].error[..]), (404, "not found"));
    assert!(p.fake.gets.lock().unwrap().is_empty());
}

#[test]
fn a_batch_that_fails_fails_each_key() {
    // A group the peer does not serve: a failure (not "not found"), so the
    // engine loads each key locally.
    let p = pair();
    for r in p.peer().get_many("nosuch", &[b"a", b"b"]) {
        match r {
            Err(PeerError::Failed(m)) => assert!(m.contains("no such group"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A peer that is gone.
    let client = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    let dead = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    client.set_peers(&[url]).unwrap();
    let t = Instant::now();
    let r = client.pick_peer(b"x").unwrap().get_many("g", &[b"a", b"b", b"c"]);
    assert!(r.iter().all(|r| matches!(r, Err(PeerError::Failed(_)))), "{r:?}");
    assert!(t.elapsed() < Duration::from_millis(400));
    // A peer that answers too slowly: the whole batch within one timeout.
    let (server, fake, _svc) = server_with(opts());
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(800));
    let c = Pool::new("127.0.0.1:0", None, opts()).unwrap();
    c.set_peers(&[server.url().to_string()]).unwrap();
    let t = Instant::now();
    let r = c.pick_peer(b"x").unwrap().get_many("g", &[b"a", b"b"]);
    assert!(
        r.iter()
            .all(|r| matches!(r, Err(PeerError::Failed(m)) if m.contains("timed out"))),
        "{r:?}"
    );
    assert!(t.elapsed() < Duration::from_millis(700), "{:?}", t.elapsed());
}

/// A node without the batch route, as golang/groupcache (no header at all:
/// `header` empty) or an older node of ours (`header` "set, remove"):
/// answers a POST of `{base}{group}` with a 400 "bad request" and a GET
/// with the value "v:{key}". Holds the first GETs until `hold` of them are
/// in flight at once (so concurrency is seen without timing).
/// Returns its URL and the requests it saw (request lines), and the most
/// GETs in flight at once.
struct NoBatchNode {
    url: String,
    lines: Arc<Mutex<Vec<String>>>,
    most: Arc<Mutex<usize>>,
}

fn no_batch_node(header: &'static str, hold: usize) -> NoBatchNode {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let lines = Arc::new(Mutex::new(Vec::new()));
    let state = Arc::new((Mutex::new((0usize, 0usize, 0usize)), std::sync::Condvar::new()));
    let most = Arc::new(Mutex::new(0usize));
    let (lines2, most2) = (lines.clone(), most.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let (lines, state, most) = (lines2.clone(), state.clone(), most2.clone());
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..i]).to_string();
                        let len: usize = head
                            .to_ascii_lowercase()
                            .lines()
                            .find_map(|l| {
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if buf.len() < i + 4 + len {
                            break;
                        }
                        buf.drain(..i + 4 + len);
                        let line = head.lines().next().unwrap_or("").to_string();
                        lines.lock().unwrap().push(line.clone());
                        let hdr = if header.is_empty() {
                            String::new()
                        } else {
                            format!("x-groupcache-peer: {header}\r\n")
                        };
                        let reply = if let Some(rest) = line.strip_prefix("GET /_groupcache/g/") {
                            let key = rest.split(' ').next().unwrap();
                            // The first `hold` GETs wait until they are all
                            // in flight (or 2 s); later ones are answered at once.
                            let (m, cv) = &*state;
                            let mut st = m.lock().unwrap();
                            st.0 += 1;
                            {
                                let mut most = most.lock().unwrap();
                                *most = (*most).max(st.0);
                            }
                            if st.2 == 0 && st.0 >= hold {
                                st.2 = 1;
                                cv.notify_all();
                            } else if st.2 == 0 {
                                st = cv
                                    .wait_timeout_while(st, Duration::from_secs(2), |st| st.2 == 0)
                                    .unwrap()
                                    .0;
                            }
                            st.0 -= 1;
                            drop(st);
                            let v = format!("v:{key}");
                            let mut body = vec![0x0a, v.len() as u8];
                            body.extend_from_slice(v.as_bytes());
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\n{hdr}Content-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
                                body.len()
                            )
                            .into_bytes();
                            r.extend_from_slice(&body);
                            r
                        } else {
                            format!("HTTP/1.1 400 Bad Request\r\n{hdr}Content-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n\r\nbad request\n")
                                .into_bytes()
                        };
                        if s.write_all(&reply).is_err() {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    NoBatchNode { url, lines, most }
}

#[test]
fn nodes_without_the_batch_route_get_concurrent_gets() {
    for header in ["", "set, remove"] {
        let node = no_batch_node(header, client::PARALLEL_GETS);
        let client = Pool::new(
            "127.0.0.1:0",
            None,
            PoolOptions {
                timeout: Duration::from_secs(5),
                ..opts()
            },
        )
        .unwrap();
        client.set_peers(std::slice::from_ref(&node.url)).unwrap();
        let owned: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i}").into_bytes()).collect();
        let keys: Vec<&[u8]> = owned.iter().map(|k| &k[..]).collect();
        let peer = client.pick_peer(b"x").unwrap();
        let t = Instant::now();
        let r = peer.get_many("g", &keys);
        for (k, r) in keys.iter().zip(&r) {
            assert_eq!(r.as_ref().unwrap().value, [&b"v:"[..], k].concat(), "{header:?}");
        }
        // Released by reaching 16 in flight, not by the 2 s hold.
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{header:?}: {:?}",
            t.elapsed()
        );
        assert_eq!(*node.most.lock().unwrap(), client::PARALLEL_GETS, "{header:?}");
        let lines = node.lines.lock().unwrap().clone();
        assert_eq!(lines[0], "POST /_groupcache/g HTTP/1.1", "{header:?}");
        assert_eq!(lines.len(), 41, "{header:?}");
        assert!(lines[1..].iter().all(|l| l.starts_with("GET /_groupcache/g/k")));
        // Remembered: the next batch goes straight to GETs.
        node.lines.lock().unwrap().clear();
        let r = peer.get_many("g", &keys[..16]);
        assert!(r.iter().all(|r| r.is_ok()));
        let lines = node.lines.lock().unwrap().clone();
        assert_eq!(lines.len(), 16, "{header:?}: {lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("GET ")), "{header:?}");
    }
}

#[test]
fn signed_batches_are_accepted_once_and_only_as_signed() {
    let (s, _) = signed_setup(None);
    // The sniffed node answers the POST without the batch token, so the
    // client goes on with GETs; the POST is among what it captured.
    s.client
        .pick_peer(b"k")
        .unwrap()
        .get_many("g", &[b"a", b"missing"]);
    let post_req = s
        .captured
        .lock()
        .unwrap()
        .iter()
        .find(|r| r.starts_with(b"POST /_groupcache/g HTTP/1.1\r\n"))
        .cloned()
        .expect("a batch request was sent");
    // Another body (other keys) under the captured signature: refused.
    let evil = get_many_request(b"g", &[b"other"]);
    assert_eq!(
        s.replay(&with_body(&post_req, &evil)),
        (401, b"unauthorized\n".to_vec())
    );
    // Another target (a query, another group): refused.
    assert_eq!(s.replay(&with_query(&post_req, "?x")).0, 401);
    let i = post_req.windows(2).position(|w| w == b"\r\n").unwrap();
    let other_group = [&b"POST /_groupcache/h HTTP/1.1"[..], &post_req[i..]].concat();
    assert_eq!(s.replay(&other_group).0, 401);
    // Unsigned, and signed with another secret: refused.
    let body = get_many_request(b"g", &[b"a"]);
    assert_eq!(post(s.server.local_addr(), "/_groupcache/g", &body).0, 401);
    let forged = auth::sign(
        b"not the secret",
        "POST",
        &auth::node_of(&s.client.peers()[0]).unwrap(),
        "/_groupcache/g",
        &auth::body_digest(&body),
        auth::now_ms(),
        auth::next_nonce(),
    );
    let req = [
        format!(
            "POST /_groupcache/g HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\nx-groupcache-auth: {forged}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
        &body,
    ]
    .concat();
    assert_eq!(raw(s.server.local_addr(), &req).0, 401);
    assert!(
        s.fake.batches.lock().unwrap().is_empty(),
        "nothing reached the engine"
    );
    // The captured request is good once (it never reached this server)...
    let (st, body) = s.replay(&post_req);
    assert_eq!(st, 200);
    let m = <proto::GetManyResponse as prost::Message>::decode(&body[..]).unwrap();
    assert_eq!(m.results[0].value, &b"v:a"[..]);
    assert_eq!(m.results[1].status, 404);
    // ...and never again: a batch is a POST, refused when replayed.
    assert_eq!(s.replay(&post_req).0, 401);
    assert_eq!(s.fake.batches.lock().unwrap().len(), 1);
    // Addressed to another node: refused there.
    let (other, _) = signed_setup(Some("http://127.0.0.1:1"));
    assert_eq!(other.replay(&post_req).0, 401);
}

#[test]
fn signed_nodes_batch() {
    let server = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    let fake = Arc::new(Fake::default());
    let svc: Arc<dyn PeerService> = fake.clone();
    server.register_service("g", &svc).unwrap();
    let client = Pool::new("127.0.0.1:0", None, secret_opts()).unwrap();
    client.set_peers(&[server.url().to_string()]).unwrap();
    let peer = client.pick_peer(b"any").unwrap();
    let tricky = tricky_keys();
    let refs: Vec<&[u8]> = tricky.iter().map(|k| &k[..]).collect();
    for _ in 0..3 {
        for (k, r) in tricky.iter().zip(peer.get_many("g", &refs)) {
            assert_eq!(r.unwrap().value, [&b"v:"[..], k].concat());
        }
    }
    assert_eq!(fake.batches.lock().unwrap().len(), 3);
}

// ---- the health route ----------------------------------------------------------

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// The whole response to `req`, head and body, as text.
fn raw_text(addr: std::net::SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn healthz_answers_200_while_serving_and_only_get_or_head() {
    let p = pair();
    let a = p.server.local_addr();
    let text = raw_text(a, HEALTHZ);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("cache-control: no-store\r\n"),
        "{text}"
    );
    assert!(text.ends_with("\r\n\r\nok\n"), "{text}");
    // HEAD: the same status, no body.
    let text = raw_text(
        a,
        b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\n"), "{text}");
    // A query string is the same route (probes may add one).
    assert_eq!(
        raw(
            a,
            b"GET /healthz?x=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ),
        (200, b"ok\n".to_vec())
    );
    let text = raw_text(
        a,
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 405 "), "{text}");
    assert!(
        text.to_ascii_lowercase().contains("allow: get, head\r\n"),
        "{text}"
    );
    // Nothing else moved: no group was asked.
    assert!(p.fake.gets.lock().unwrap().is_empty());
    // Neighbours are not the route.
    assert_eq!(
        raw(
            a,
            b"GET /healthz/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        404
    );
}

#[test]
fn healthz_needs_no_signature_and_says_nothing_more() {
    let (server, _fake, _svc) = server_with(secret_opts());
    let a = server.local_addr();
    assert_eq!(raw(a, HEALTHZ), (200, b"ok\n".to_vec()));
    // Everything else still needs one.
    assert_eq!(
        raw(
            a,
            b"GET /_groupcache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .0,
        401
    );
}

#[test]
fn healthz_answers_503_while_the_pool_drains_then_the_port_closes() {
    let drain = Duration::from_millis(800);
    let (server, fake, _svc) = server_with(PoolOptions { drain, ..opts() });
    let a = server.local_addr();
    // A keep-alive connection made before the drain, as a peer's would be.
    let mut kept = TcpStream::connect(a).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let get_on_kept = |s: &mut TcpStream, key: &str| -> String {
        s.write_all(format!("GET /_groupcache/g/{key} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert!(get_on_kept(&mut kept, "before").starts_with("HTTP/1.1 200 "));
    assert_eq!(raw(a, HEALTHZ).0, 200);

    let closer = {
        let server = server.clone();
        std::thread::spawn(move || {
            let t = Instant::now();
            server.close();
            t.elapsed()
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    // Draining: the probe fails, everything else is served as before, on
    // new connections and on the kept one.
    assert_eq!(raw(a, HEALTHZ), (503, b"closing\n".to_vec()));
    assert!(!server.is_closed());
    let (st, body) = raw(
        a,
        b"GET /_groupcache/g/during HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(st, 200);
    assert!(body.ends_with(b"v:during"));
    assert!(get_on_kept(&mut kept, "during2").starts_with("HTTP/1.1 200 "));
    // A second close returns at once, the drain goes on.
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_millis(100), "{:?}", t.elapsed());
    assert_eq!(raw(a, HEALTHZ).0, 503);

    let took = closer.join().unwrap();
    assert!(
        took >= drain,
        "close returned after {took:?}, before the drain ended"
    );
    assert!(server.is_closed());
    assert!(TcpStream::connect(a).is_err(), "still accepting after close");
    assert_eq!(fake.gets.lock().unwrap().len(), 3);
}

#[test]
fn without_a_drain_close_does_not_wait() {
    let (server, _fake, _svc) = server_with(opts());
    assert_eq!(raw(server.local_addr(), HEALTHZ).0, 200);
    let t = Instant::now();
    server.close();
    assert!(t.elapsed() < Duration::from_millis(500), "{:?}", t.elapsed());
    assert!(TcpStream::connect(server.local_addr()).is_err());
}

#[test]
fn healthz_is_answered_while_stuck_loaders_hold_every_worker() {
    // Two runtime workers (misses of fast groups may run inline), two
    // server workers, both in a getter that takes seconds, and more misses
    // queued behind them: the probe is still answered at once.
    let (server, fake, _svc) = server_with(PoolOptions {
        server_workers: 2,
        worker_threads: 2,
        ..opts()
    });
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(2500));
    let a = server.local_addr();
    let stuck: Vec<_> = (0..6)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!("GET /_groupcache/g/s{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    // Wait until both workers are inside the getter.
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.gets.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the getters did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(raw(a, HEALTHZ), (200, b"ok\n".to_vec()));
        assert!(
            t.elapsed() < Duration::from_millis(300),
            "probe took {:?}",
            t.elapsed()
        );
    }
    // They were stuck all along: two in the getter, the rest queued.
    assert_eq!(fake.gets.lock().unwrap().len(), 2);
    *fake.delay.lock().unwrap() = None;
    for s in stuck {
        assert_eq!(s.join().unwrap().0, 200);
    }
}

#[test]
fn healthz_obeys_the_connection_limit() {
    // No way around the server's limits: with every connection busy
    // serving, a probe is refused like any newcomer (the node cannot take
    // more work: not ready is the truth).
    let (server, fake, _svc) = server_with(PoolOptions {
        max_connections: 2,
        ..opts()
    });
    *fake.delay.lock().unwrap() = Some(Duration::from_millis(500));
    let a = server.local_addr();
    let busy: Vec<_> = (0..2)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!("GET /_groupcache/g/b{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.gets.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "the getters did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(raw(a, HEALTHZ), (503, b"server busy\n".to_vec()));
    for b in busy {
        assert_eq!(b.join().unwrap().0, 200);
    }
    assert_eq!(raw(a, HEALTHZ).0, 200);
}

#[test]
fn healthz_probe_that_sends_nothing_is_closed_after_the_header_timeout() {
    let (server, _fake, _svc) = server_with(PoolOptions {
        header_timeout: Duration::from_millis(300),
        ..opts()
    });
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap(); // never ends
    assert!(closed_within(&mut s, Duration::from_secs(3)));
}
