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

/// `n` threads, each asking for `/_groupcache/g/{prefix}{i}` on a
/// connection of its own that closes after the answer; join them for
/// their (status, body).
fn gets_in_threads(
    a: std::net::SocketAddr,
    prefix: &'static str,
    n: usize,
) -> Vec<std::thread::JoinHandle<(u16, Vec<u8>)>> {
    (0..n)
        .map(|i| {
            std::thread::spawn(move || {
                raw(
                    a,
                    format!(
                        "GET /_groupcache/g/{prefix}{i} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
            })
        })
        .collect()
}

/// Waits (up to 2 s) until the fake's getter has been entered `n` times.
fn wait_for_gets(fake: &Fake, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while fake.gets.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "the getters did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
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
    let misses = gets_in_threads(a, "m", 4);
    wait_for_gets(&fake, 2);
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
    let busy = gets_in_threads(a, "b", 2);
    wait_for_gets(&fake, 2);
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

/// A stand-in peer on loopback: each connection on a thread of its own,
/// its requests read one after another (the head, then a Content-Length
/// body) and answered with `answer(head, request)`'s bytes (`head` as
/// sent, without the blank line; `request` the whole request). Its URL.
fn fake_peer(answer: impl Fn(&str, &[u8]) -> Vec<u8> + Send + Sync + 'static) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let answer = answer.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
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
                        let req: Vec<u8> = buf.drain(..i + 4 + len).collect();
                        if s.write_all(&answer(&head, &req)).is_err() {
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
    url
}

/// Serves like golang/groupcache: every method as a GET, no marker header.
/// Records the request lines it saw.
fn go_like_peer() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let url = fake_peer(move |head, _| {
        let line = head.lines().next().unwrap().to_string();
        let bad = line.split(' ').nth(1) == Some("/_groupcache/");
        seen2.lock().unwrap().push(line);
        let reply: &[u8] = if bad {
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 12\r\n\r\nbad request\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4\r\n\r\n\x0a\x02go"
        };
        reply.to_vec()
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

mod batch_route;
mod health_route;
mod signed;
