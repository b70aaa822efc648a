//! A shared secret (see `auth`): signed requests between nodes, refused
//! replays, re-aimed and tampered requests, and the seeds of the signed
//! fuzz target.

use super::*;

pub(super) fn secret_opts() -> PoolOptions {
    PoolOptions {
        secret: Some("s3cret".into()),
        ..opts()
    }
}

/// A node of ours as a sniffer on the wire sees it: records every request
/// it receives, head and body, and answers as our server would (200 with
/// our header; a GetResponse to a GET).
fn sniffed_peer() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    let url = fake_peer(move |head, req| {
        seen2.lock().unwrap().push(req.to_vec());
        let reply: &[u8] = if head.to_ascii_lowercase().starts_with("get ") {
            b"HTTP/1.1 200 OK\r\nx-groupcache-peer: set, remove\r\nContent-Type: application/x-protobuf\r\nContent-Length: 5\r\n\r\n\x0a\x03rec"
        } else {
            b"HTTP/1.1 200 OK\r\nx-groupcache-peer: set, remove\r\nContent-Length: 0\r\n\r\n"
        };
        reply.to_vec()
    });
    (url, seen)
}

/// A node with the secret serving a Fake under "g", which answers as the
/// node at `self_url`; and a node with the same secret whose only peer is
/// a sniffed one at `sniffed`.
pub(super) struct Signed {
    pub(super) server: Arc<Pool>,
    pub(super) fake: Arc<Fake>,
    pub(super) _svc: Arc<dyn PeerService>,
    pub(super) client: Arc<Pool>,
    pub(super) captured: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub(super) fn signed_setup(server_self_url: Option<&str>) -> (Signed, String) {
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
    pub(super) fn capture(&self, call: impl FnOnce(&dyn PeerGetter)) -> Vec<u8> {
        call(&*self.client.pick_peer(b"k").unwrap());
        self.captured.lock().unwrap().last().unwrap().clone()
    }

    /// Sends a captured request to the real server, on a connection of its
    /// own that closes after the answer.
    pub(super) fn replay(&self, req: &[u8]) -> (u16, Vec<u8>) {
        let i = req.windows(2).position(|w| w == b"\r\n").unwrap();
        let mut r = req[..i + 2].to_vec();
        r.extend_from_slice(b"Connection: close\r\n");
        r.extend_from_slice(&req[i + 2..]);
        raw(self.server.local_addr(), &r)
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
        server::fuzzing::FUZZ_NODE,
        target,
        &auth::body_digest(body),
        server::fuzzing::FUZZ_NOW_MS,
        nonce,
    );
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nx-groupcache-auth: {sig}\r\n{extra}\r\n",
        server::fuzzing::FUZZ_NODE,
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
        let (out, reached) = server::fuzzing::serve_raw_signed_for_fuzzing(&g, &seed, FUZZ_SECRET);
        assert_eq!(statuses(&out), want, "{name}: {}", String::from_utf8_lossy(&out));
        let expect_reached = want.iter().filter(|&&s| s != 401).count() - usize::from(name == "pipelined");
        assert_eq!(reached, expect_reached, "{name}");
        // Under another secret nothing gets through.
        let (out, reached) = server::fuzzing::serve_raw_signed_for_fuzzing(&g, &seed, b"another secret");
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
