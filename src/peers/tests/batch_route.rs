//! The batch route (`get_many`): one request per owner, split at
//! `max_batch_keys`, sent at once on kept connections; nodes without the
//! route (Go) get per-key GETs; signed batches.

use super::signed::{secret_opts, signed_setup};
use super::*;

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
    let lines = Arc::new(Mutex::new(Vec::new()));
    // (GETs in flight, whether the first `hold` were let go)
    let state = Arc::new((Mutex::new((0usize, false)), std::sync::Condvar::new()));
    let most = Arc::new(Mutex::new(0usize));
    let (lines2, most2) = (lines.clone(), most.clone());
    let url = fake_peer(move |head, _| {
        let line = head.lines().next().unwrap_or("").to_string();
        lines2.lock().unwrap().push(line.clone());
        let hdr = if header.is_empty() {
            String::new()
        } else {
            format!("x-groupcache-peer: {header}\r\n")
        };
        if let Some(rest) = line.strip_prefix("GET /_groupcache/g/") {
            let key = rest.split(' ').next().unwrap();
            // The first `hold` GETs wait until they are all
            // in flight (or 2 s); later ones are answered at once.
            let (m, cv) = &*state;
            let mut st = m.lock().unwrap();
            st.0 += 1;
            {
                let mut most = most2.lock().unwrap();
                *most = (*most).max(st.0);
            }
            if !st.1 && st.0 >= hold {
                st.1 = true;
                cv.notify_all();
            } else if !st.1 {
                st = cv
                    .wait_timeout_while(st, Duration::from_secs(2), |st| !st.1)
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
