//! Several nodes (pools with real engine groups) in one process, talking
//! HTTP over loopback.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::*;
use groupcache::engine::{Error, Getter, Group, PeerPicker, Sink};
use groupcache::peers::{Pool, PoolOptions};
use groupcache::ring::Ring;

/// The peer timeout of these tests' pools.
const TIMEOUT_MS: u64 = 600;

#[test]
fn each_key_loads_once_cluster_wide() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    let nodes = Arc::new(nodes);
    let keys: Vec<Vec<u8>> = (0..150).map(|i| format!("key-{i}").into_bytes()).collect();
    // Every node asks for every key, from two threads each, at once.
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let nodes = nodes.clone();
            let keys = keys.clone();
            std::thread::spawn(move || {
                let node = &nodes[t % 3];
                for k in keys.iter().cycle().skip(t * 17).take(keys.len()) {
                    assert_eq!(
                        node.group.get(k).unwrap(),
                        value_for(1, k),
                        "node {} key {k:?}",
                        t % 3
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for k in &keys {
        let total: u64 = nodes.iter().map(|n| n.loads(k)).sum();
        assert_eq!(
            total,
            1,
            "key {:?} loaded {total} times",
            String::from_utf8_lossy(k)
        );
        assert_eq!(nodes[owner_of(&urls, k)].loads(k), 1, "not loaded by its owner");
    }
    let stats: Vec<_> = nodes.iter().map(|n| n.group.stats()).collect();
    assert!(stats.iter().all(|s| s.peer_errors == 0), "{stats:?}");
    assert!(
        stats.iter().all(|s| s.peer_loads > 0 && s.server_requests > 0),
        "{stats:?}"
    );
}

#[test]
fn tricky_and_big_keys_across_nodes() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    let mut keys: Vec<Vec<u8>> = [
        &b""[..],
        b"a/b",
        b"a b",
        b"a+b",
        b"100%",
        b"%2F",
        b"?x#y",
        b"\xff\x00",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    keys.push("été/日本 +%".as_bytes().to_vec());
    keys.push(b"big:one".to_vec());
    keys.push(b"big:two".to_vec());
    for k in &keys {
        let want = if k.starts_with(b"big:") {
            big_value(k)
        } else {
            value_for(1, k)
        };
        for n in &nodes {
            assert_eq!(n.group.get(k).unwrap(), want, "key {k:?}");
        }
        let owner = owner_of(&urls, k);
        assert_eq!(nodes[owner].loads(k), 1, "key {k:?}");
        assert_eq!(nodes.iter().map(|n| n.loads(k)).sum::<u64>(), 1, "key {k:?}");
    }
}

#[test]
fn not_found_at_the_owner_is_final() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    for i in 0..30 {
        let k = format!("missing:{i}").into_bytes();
        let owner = owner_of(&urls, &k);
        for n in &nodes {
            assert_eq!(n.group.get(&k), Err(Error::NotFound));
        }
        // Only the owner ran its getter (once per ask: not-found is not
        // cached); nobody re-loaded locally.
        for (j, n) in nodes.iter().enumerate() {
            if j == owner {
                assert_eq!(n.loads(&k), 3);
            } else {
                assert_eq!(n.loads(&k), 0, "node {j} re-loaded {k:?}");
            }
        }
    }
}

#[test]
fn owner_failure_falls_back_to_a_local_load() {
    let (nodes, urls) = cluster(2, opts(TIMEOUT_MS));
    let k = (0..)
        .map(|i| format!("k{i}").into_bytes())
        .find(|k| owner_of(&urls, k) == 1)
        .unwrap();
    nodes[1].loader.fail_here.lock().unwrap().push(k.clone());
    assert_eq!(nodes[0].group.get(&k).unwrap(), value_for(1, &k));
    assert_eq!(nodes[1].loads(&k), 1);
    assert_eq!(nodes[0].loads(&k), 1);
    assert_eq!(nodes[0].group.stats().peer_errors, 1);
    // Failing everywhere: the caller sees the loader's failure.
    let f = (0..)
        .map(|i| format!("fail:{i}").into_bytes())
        .find(|k| owner_of(&urls, k) == 1)
        .unwrap();
    assert!(matches!(nodes[0].group.get(&f), Err(Error::LoaderFailed(_))));
}

/// A TCP listener that accepts connections and never answers.
fn silent_peer(for_how_long: Duration) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + for_how_long;
        while Instant::now() < end {
            if let Ok((s, _)) = l.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    url
}

/// Answers every request with `reply` and closes.
fn garbage_peer(reply: &'static [u8]) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming().take(64) {
            let Ok(mut s) = s else { continue };
            let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = s.read(&mut [0u8; 4096]);
            let _ = s.write_all(reply);
        }
    });
    url
}

#[test]
fn silent_peer_means_local_load_within_the_timeout() {
    let node = Node::new(opts(TIMEOUT_MS));
    // The peer holds its connections for a minute: a get that did not give
    // up at the 600 ms timeout would wait that long. The upper bound is ten
    // timeouts, so that a loaded machine cannot fail it while a missed
    // timeout still does.
    let urls = vec![node.pool.url().to_string(), silent_peer(Duration::from_secs(60))];
    node.pool.set_peers(&urls).unwrap();
    for k in keys_owned_by(&urls, 1, 3, "key-") {
        let t = Instant::now();
        assert_eq!(node.group.get(&k).unwrap(), value_for(1, &k));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_millis(10 * TIMEOUT_MS),
            "{took:?}"
        );
        assert_eq!(node.loads(&k), 1);
    }
    assert_eq!(node.group.stats().peer_errors, 3);
}

#[test]
fn garbage_peer_means_local_load() {
    for reply in [
        &b"SSH-2.0-OpenSSH_9.2\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>",
        b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4\r\n\r\n\x0a\x09ab",
        b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n",
    ] {
        let node = Node::new(opts(TIMEOUT_MS));
        let urls = vec![node.pool.url().to_string(), garbage_peer(reply)];
        node.pool.set_peers(&urls).unwrap();
        for k in keys_owned_by(&urls, 1, 2, "key-") {
            assert_eq!(node.group.get(&k).unwrap(), value_for(1, &k), "{reply:?}");
            assert_eq!(node.loads(&k), 1);
        }
        assert_eq!(node.group.stats().peer_errors, 2, "{reply:?}");
    }
}

#[test]
fn set_and_remove_across_nodes() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    let k = keys_owned_by(&urls, 1, 1, "key-").remove(0);
    // Node 0 sets a key owned by node 1; node 2 reads it from the owner
    // without anyone loading.
    nodes[0].group.set(&k, b"set-by-0", 0).unwrap();
    assert_eq!(nodes[2].group.get(&k).unwrap(), &b"set-by-0"[..]);
    assert_eq!(nodes[1].group.get(&k).unwrap(), &b"set-by-0"[..]);
    assert_eq!(nodes.iter().map(|n| n.total_loads()).sum::<u64>(), 0);

    // Make every node hold a copy (hot caches are 1 in 10; fill them by
    // asking a lot), then remove from node 2: everyone sees the new value.
    for _ in 0..50 {
        for n in &nodes {
            n.group.get(&k).unwrap();
        }
    }
    for n in &nodes {
        n.loader.version.store(2, Ordering::SeqCst);
    }
    nodes[2].group.remove(&k).unwrap();
    for n in &nodes {
        assert_eq!(n.group.get(&k).unwrap(), value_for(2, &k));
    }
    assert_eq!(nodes[1].loads(&k), 1, "the owner loads the new value once");
    assert_eq!(nodes.iter().map(|n| n.loads(&k)).sum::<u64>(), 1);
}

#[test]
fn ttl_travels_with_values() {
    let (nodes, urls) = cluster(2, opts(TIMEOUT_MS));
    let k = (0..)
        .map(|i| format!("ttl:{i}").into_bytes())
        .find(|k| owner_of(&urls, k) == 1)
        .unwrap();
    assert_eq!(nodes[0].group.get(&k).unwrap(), value_for(1, &k));
    // Set with a TTL from the non-owner too.
    let k2 = keys_owned_by(&urls, 1, 1, "key-").remove(0);
    nodes[0].group.set(&k2, b"short-lived", 200).unwrap();
    assert_eq!(nodes[0].group.get(&k2).unwrap(), &b"short-lived"[..]);
    std::thread::sleep(Duration::from_millis(450));
    for n in &nodes {
        n.loader.version.store(2, Ordering::SeqCst);
    }
    // Both expired at the owner (and anywhere else): reloaded.
    assert_eq!(nodes[0].group.get(&k).unwrap(), value_for(2, &k));
    assert_eq!(nodes[0].group.get(&k2).unwrap(), value_for(2, &k2));
    assert_eq!(nodes[1].loads(&k), 2);
    assert_eq!(nodes[0].loads(&k), 0);
}

#[test]
fn membership_changes() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    let keys: Vec<Vec<u8>> = (0..120).map(|i| format!("m-{i}").into_bytes()).collect();
    // Start as a two-node cluster (node 2 is client-only).
    let two = urls[..2].to_vec();
    for n in &nodes {
        n.pool.set_peers(&two).unwrap();
    }
    for k in &keys {
        for n in &nodes {
            assert_eq!(n.group.get(k).unwrap(), value_for(1, k));
        }
    }
    assert_eq!(
        nodes[2].total_loads(),
        0,
        "a node missing from the list owns nothing"
    );
    // What node 2 kept in its hot cache it will not need to load.
    let hot_at_2 = nodes[2].group.stats().hot_items;
    // Grow to three: keys that move to node 2 are loaded there, once.
    for n in &nodes {
        n.pool.set_peers(&urls).unwrap();
    }
    for k in &keys {
        for n in &nodes {
            assert_eq!(n.group.get(k).unwrap(), value_for(1, k));
        }
    }
    let moved = keys.iter().filter(|k| owner_of(&urls, k) == 2).count() as u64;
    assert!(moved > 0);
    let loaded = nodes[2].total_loads();
    assert!(
        loaded <= moved && loaded + hot_at_2 >= moved,
        "moved {moved}, loaded {loaded}, hot {hot_at_2}"
    );
    for k in &keys {
        assert!(nodes.iter().map(|n| n.loads(k)).sum::<u64>() <= 2, "{k:?}");
    }
    // A node leaves (closed): the others take over its keys, no errors
    // once they know.
    nodes[2].pool.close();
    for n in &nodes[..2] {
        n.pool.set_peers(&two).unwrap();
    }
    for k in &keys {
        for n in &nodes[..2] {
            assert_eq!(n.group.get(k).unwrap(), value_for(1, k));
        }
    }
    assert!(nodes[..2].iter().all(|n| n.group.stats().peer_errors == 0));
}

#[test]
fn a_node_closed_mid_run_is_survived() {
    let (nodes, urls) = cluster(3, opts(TIMEOUT_MS));
    let nodes = Arc::new(nodes);
    let n2 = nodes.clone();
    let worker = std::thread::spawn(move || {
        let mut ok = 0;
        for i in 0..600 {
            let k = format!("run-{i}").into_bytes();
            assert_eq!(n2[0].group.get(&k).unwrap(), value_for(1, &k));
            ok += 1;
        }
        ok
    });
    std::thread::sleep(Duration::from_millis(30));
    nodes[1].pool.close();
    assert_eq!(worker.join().unwrap(), 600);
    // Keys of the closed node are now loaded locally by node 0.
    let k = keys_owned_by(&urls, 1, 1, "key-").remove(0);
    nodes[0].group.get(&k).unwrap();
    assert!(nodes[0].group.stats().peer_errors >= 1 || nodes[0].loads(&k) == 1);
}

#[test]
fn disagreeing_nodes_do_not_deadlock() {
    // Each node believes the other owns every key: a request from a peer
    // must be answered locally, never forwarded back.
    let a = Node::new(opts(TIMEOUT_MS));
    let b = Node::new(opts(TIMEOUT_MS));
    a.pool.set_peers(&[b.pool.url().to_string()]).unwrap();
    b.pool.set_peers(&[a.pool.url().to_string()]).unwrap();
    a.loader.delay_ms.store(50, Ordering::SeqCst);
    b.loader.delay_ms.store(50, Ordering::SeqCst);
    let (a, b) = (Arc::new(a), Arc::new(b));
    let t = Instant::now();
    let hs: Vec<_> = (0..8)
        .map(|i| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let k = format!("k{}", i % 2).into_bytes();
                let n = if i % 2 == 0 { &a } else { &b };
                assert_eq!(n.group.get(&k).unwrap(), value_for(1, &k));
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(a.group.stats().peer_errors + b.group.stats().peer_errors, 0);
}

#[test]
fn pool_is_a_picker_and_unregister_detaches() {
    let (nodes, urls) = cluster(2, opts(TIMEOUT_MS));
    let k = keys_owned_by(&urls, 1, 1, "key-").remove(0);
    assert_eq!(nodes[0].pool.pick_peer(&k).unwrap().url(), urls[1]);
    assert!(nodes[0].pool.unregister_group(&nodes[0].group));
    assert!(!nodes[0].pool.unregister("g"));
    // Detached: node 0 loads its keys itself, and node 1 gets 404 "no such
    // group" from node 0, which it treats as a failure (local load).
    assert_eq!(nodes[0].group.get(&k).unwrap(), value_for(1, &k));
    assert_eq!(nodes[0].loads(&k), 1);
    let k0 = keys_owned_by(&urls, 0, 1, "key-").remove(0);
    assert_eq!(nodes[1].group.get(&k0).unwrap(), value_for(1, &k0));
    assert_eq!(nodes[1].loads(&k0), 1);
    assert_eq!(nodes[1].group.stats().peer_errors, 1);
    // Re-register under the same name.
    nodes[0].pool.register(nodes[0].group.clone()).unwrap();
    let other = Group::new("g", 1 << 20, None);
    assert!(nodes[0].pool.register(other).is_err());
}

#[test]
fn dropping_a_group_unserves_it() {
    let (nodes, urls) = cluster(2, opts(TIMEOUT_MS));
    let Node {
        pool,
        group,
        loader: _,
    } = nodes.into_iter().nth(1).unwrap();
    drop(group);
    let fresh = Group::new("g", 1 << 20, None);
    pool.register(fresh).expect("the dropped group's name is free");
    let _ = urls;
}

/// A getter at the owner that gets another group's key, owned by a third
/// node, while the server runs it on a runtime worker (its group's loads
/// were fast, so misses run inline): the nested peer request must not wait
/// behind the thread that waits for it.
#[test]
fn an_inline_getter_may_call_a_peer() {
    struct Nested {
        other: Mutex<Option<Arc<Group>>>,
        threads: Mutex<Vec<String>>,
    }
    impl Getter for Nested {
        fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
            let name = std::thread::current().name().unwrap_or("").to_string();
            self.threads.lock().unwrap().push(name);
            if let Some(k) = key.strip_prefix(b"via:") {
                let other = self.other.lock().unwrap().clone().unwrap();
                let v = other.get(k)?;
                return sink.set(&v, 0);
            }
            sink.set(key, 0)
        }
    }
    struct Echo;
    impl Getter for Echo {
        fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
            let mut v = b"c:".to_vec();
            v.extend_from_slice(key);
            sink.set(&v, 0)
        }
    }
    let o = PoolOptions {
        timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let (a, b, c) = (
        Pool::new("127.0.0.1:0", None, o.clone()).unwrap(),
        Pool::new("127.0.0.1:0", None, o.clone()).unwrap(),
        Pool::new("127.0.0.1:0", None, o).unwrap(),
    );
    let nested = Arc::new(Nested {
        other: Mutex::new(None),
        threads: Mutex::new(Vec::new()),
    });
    // g1: owned by B (A and B in its ring); g2: owned by C, reached from B.
    let ga = Group::new("g1", 1 << 20, Some(nested.clone() as Arc<dyn Getter>));
    let gb = Group::new("g1", 1 << 20, Some(nested.clone() as Arc<dyn Getter>));
    let g2b = Group::new("g2", 1 << 20, Some(Arc::new(Echo) as Arc<dyn Getter>));
    let g2c = Group::new("g2", 1 << 20, Some(Arc::new(Echo) as Arc<dyn Getter>));
    *nested.other.lock().unwrap() = Some(g2b.clone());
    let bc = vec![b.url().to_string(), c.url().to_string()];
    a.set_peers(&[b.url().to_string()]).unwrap();
    b.set_peers(&bc).unwrap();
    c.set_peers(&bc).unwrap();
    a.register(ga.clone()).unwrap();
    b.register(gb.clone()).unwrap();
    b.register(g2b.clone()).unwrap();
    c.register(g2c.clone()).unwrap();
    let mut r = Ring::new(Ring::DEFAULT_REPLICAS);
    r.add(bc.iter().cloned());
    // Fast loads at B: after a few, its misses run inline.
    for i in 0..20 {
        let k = format!("fast-{i}");
        assert_eq!(&ga.get(k.as_bytes()).unwrap()[..], k.as_bytes());
    }
    let port = b.local_addr().port();
    let inline_name = format!("gcpool-{port}");
    assert!(
        nested.threads.lock().unwrap().contains(&inline_name),
        "no miss ran inline at B: {:?}",
        nested.threads.lock().unwrap()
    );
    // Keys of g2 that C owns, fetched by B's getter from inside a load.
    let keys: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| r.get(k.as_bytes()).unwrap() == c.url())
        .take(5)
        .collect();
    for k in &keys {
        let t = Instant::now();
        let v = ga.get(format!("via:{k}").as_bytes()).unwrap();
        assert_eq!(&v[..], format!("c:{k}").as_bytes());
        assert!(t.elapsed() < Duration::from_millis(1000), "{:?}", t.elapsed());
    }
    assert!(g2c.stats().server_requests >= 1, "C was asked");
    assert_eq!(gb.stats().peer_errors + g2b.stats().peer_errors, 0);
}

#[test]
fn batches_between_real_nodes() {
    // The peer level of `get_many` (the engine's cluster get_many is built
    // on it): node 0 asks node 1 for keys node 1 owns, in one batch.
    let (nodes, urls) = cluster(2, opts(2000));
    let mut keys = keys_owned_by(&urls, 1, 30, "batch-");
    let missing = keys_owned_by(&urls, 1, 1, "missing:").remove(0);
    let fail = keys_owned_by(&urls, 1, 1, "fail:").remove(0);
    let big = keys_owned_by(&urls, 1, 1, "big:").remove(0);
    let long = keys_owned_by(&urls, 1, 1, &"x".repeat(8193)).remove(0);
    keys.extend([missing.clone(), fail.clone(), big.clone(), keys[0].clone()]);
    let with_long: Vec<&[u8]> = keys.iter().map(|k| &k[..]).chain([&long[..]]).collect();
    let peer = nodes[0].pool.pick_peer(&keys[0]).expect("node 1 owns it");
    let before = nodes[1].group.stats().server_requests;
    for round in 0..2 {
        let r = peer.get_many("g", &with_long);
        assert_eq!(r.len(), with_long.len());
        for (k, r) in with_long.iter().zip(&r) {
            match *k {
                k if k == &missing[..] => assert_eq!(r, &Err(groupcache::engine::PeerError::NotFound)),
                k if k == &fail[..] => assert!(
                    matches!(r, Err(groupcache::engine::PeerError::Failed(m)) if m.contains("500")),
                    "{r:?}"
                ),
                k if k == &long[..] => assert!(
                    matches!(r, Err(groupcache::engine::PeerError::Failed(m)) if m.contains("400") && m.contains("8192")),
                    "{r:?}"
                ),
                k if k == &big[..] => assert_eq!(r.as_ref().unwrap().value, big_value(k)),
                k => assert_eq!(r.as_ref().unwrap().value, value_for(1, k), "round {round}"),
            }
        }
    }
    // Each key loaded once, at its owner (a not-found or failed key again
    // on the second round: neither is cached); node 0 loaded nothing.
    for k in &keys {
        let again = u64::from(k == &missing || k == &fail);
        assert_eq!(
            nodes[1].loads(k),
            1 + again,
            "{:?}",
            String::from_utf8_lossy(&k[..k.len().min(20)])
        );
    }
    assert_eq!(nodes[0].total_loads(), 0);
    // Each key (but the one over the limit) counts as a server request.
    let served = nodes[1].group.stats().server_requests - before;
    assert_eq!(served, 2 * keys.len() as u64);
    // A batch whose keys are all cached at the owner is answered without
    // a worker, and still counts as one server batch.
    let cached: Vec<&[u8]> = keys[..30].iter().map(|k| &k[..]).collect();
    let batches = nodes[1].group.stats().server_batch_requests;
    assert_eq!(batches, 2);
    assert!(peer.get_many("g", &cached).iter().all(|r| r.is_ok()));
    assert_eq!(nodes[1].group.stats().server_batch_requests, batches + 1);
}
