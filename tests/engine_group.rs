//! The load algorithm of a group, through the engine's public Rust API.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Barrier, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use groupcache::engine::{Error, Group, GroupOptions, PeerError, PeerGetter, PeerPicker, PeerValue, Sink};

fn counting_group(max_bytes: u64, delay_ms: u64) -> (Arc<Group>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let getter = move |key: &[u8], sink: &mut Sink| -> Result<(), Error> {
        c.fetch_add(1, Ordering::SeqCst);
        thread::sleep(Duration::from_millis(delay_ms));
        match key {
            b"missing" => Err(Error::NotFound),
            b"broken" => {
                sink.fail("the database is down");
                Err(Error::LoaderFailed(String::new()))
            }
            b"panics" => panic!("getter bug"),
            b"silent" => Ok(()),
            _ => sink.set(&[b"v:", key].concat(), 0),
        }
    };
    (Group::new("g", max_bytes, Some(Arc::new(getter))), calls)
}

#[test]
fn miss_loads_then_hits_with_exact_stats() {
    let (g, calls) = counting_group(1 << 20, 0);
    assert_eq!(g.get(b"a").unwrap(), Bytes::from_static(b"v:a"));
    assert_eq!(g.get(b"a").unwrap(), Bytes::from_static(b"v:a"));
    assert_eq!(g.get_with(b"a", |v| v.len()).unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let s = g.stats();
    assert_eq!(
        (s.gets, s.cache_hits, s.loads, s.loads_deduped, s.local_loads),
        (3, 2, 1, 1, 1)
    );
    assert_eq!((s.main_items, s.main_bytes), (1, 4));
    assert_eq!((s.main_gets, s.main_hits, s.hot_gets, s.hot_hits), (4, 2, 2, 0));
}

#[test]
fn thirty_two_threads_one_missing_key_one_getter_call() {
    let (g, calls) = counting_group(1 << 20, 100);
    let barrier = Arc::new(Barrier::new(32));
    let hs: Vec<_> = (0..32)
        .map(|_| {
            let (g, b) = (g.clone(), barrier.clone());
            thread::spawn(move || {
                b.wait();
                g.get(b"k").unwrap()
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().unwrap(), Bytes::from_static(b"v:k"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(g.stats().loads_deduped, 1);
}

#[test]
fn errors_are_shared_by_waiters_and_never_cached() {
    let (g, calls) = counting_group(1 << 20, 100);
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let g = g.clone();
            thread::spawn(move || g.get(b"broken"))
        })
        .collect();
    for h in hs {
        assert_eq!(
            h.join().unwrap(),
            Err(Error::LoaderFailed("the database is down".into()))
        );
    }
    let first = calls.load(Ordering::SeqCst);
    assert!(first < 8, "waiters shared the call ({first} calls for 8 threads)");
    assert!(g.get(b"broken").is_err());
    assert_eq!(
        calls.load(Ordering::SeqCst),
        first + 1,
        "the error was not cached"
    );
    assert_eq!(g.get(b"missing"), Err(Error::NotFound));
    assert_eq!(g.get(b"missing"), Err(Error::NotFound));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        first + 3,
        "not-found was not cached"
    );
    assert_eq!(g.stats().main_items, 0);
}

#[test]
fn a_panicking_or_silent_getter_is_a_loader_error_and_waiters_wake() {
    let (g, _) = counting_group(1 << 20, 50);
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let g = g.clone();
            thread::spawn(move || g.get(b"panics"))
        })
        .collect();
    for h in hs {
        assert!(matches!(h.join().unwrap(), Err(Error::LoaderFailed(m)) if m.contains("getter bug")));
    }
    assert!(matches!(g.get(b"silent"), Err(Error::LoaderFailed(m)) if m.contains("without setting")));
}

#[test]
fn a_getter_that_gets_its_own_key_gets_an_error_not_a_deadlock() {
    let cell: Arc<Mutex<Option<Arc<Group>>>> = Arc::default();
    let c2 = cell.clone();
    let getter = move |key: &[u8], sink: &mut Sink| -> Result<(), Error> {
        let g = c2.lock().unwrap().clone().unwrap();
        // a -> b -> a: the second load of a is on this same thread.
        let inner = if key == b"a" { g.get(b"b") } else { g.get(b"a") };
        match inner {
            Err(e) => {
                sink.fail(&e.to_string());
                Err(e)
            }
            Ok(v) => sink.set(&v, 0),
        }
    };
    let g = Group::new("re", 1 << 20, Some(Arc::new(getter)));
    *cell.lock().unwrap() = Some(g.clone());
    let r = g.get(b"a");
    assert!(
        matches!(&r, Err(Error::LoaderFailed(m)) if m.contains("recursive load")),
        "{r:?}"
    );
    *cell.lock().unwrap() = None;
}

#[test]
fn ttl_expires_and_set_remove_work_locally() {
    let (g, calls) = counting_group(1 << 20, 0);
    g.set(b"t", b"short", 50).unwrap();
    assert_eq!(g.get(b"t").unwrap(), Bytes::from_static(b"short"));
    thread::sleep(Duration::from_millis(80));
    assert_eq!(
        g.get(b"t").unwrap(),
        Bytes::from_static(b"v:t"),
        "expired, so reloaded"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    g.set(b"t", b"forever", 0).unwrap();
    assert_eq!(g.get(b"t").unwrap(), Bytes::from_static(b"forever"));
    g.remove(b"t").unwrap();
    assert_eq!(g.get(b"t").unwrap(), Bytes::from_static(b"v:t"));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn set_only_cache_without_getter() {
    let g = Group::new("s", 1 << 20, None);
    assert_eq!(g.get(b"x"), Err(Error::NotFound));
    g.set(b"x", b"\0binary\0", 0).unwrap();
    assert_eq!(&g.get(b"x").unwrap()[..], b"\0binary\0");
}

#[test]
fn zero_bytes_keeps_nothing_but_still_dedupes() {
    let (g, calls) = counting_group(0, 100);
    let hs: Vec<_> = (0..8)
        .map(|_| {
            let g = g.clone();
            thread::spawn(move || g.get(b"k").unwrap())
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    g.get(b"k").unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(g.stats().main_items, 0);
}

#[test]
fn a_remove_during_a_load_keeps_the_old_value_out() {
    // The getter reads "the database" at the start of a slow load; the row
    // changes and the key is removed while the load is in flight. Nobody
    // may see the old value after remove returned.
    let db = Arc::new(Mutex::new(b"old".to_vec()));
    let d2 = db.clone();
    let getter = move |_: &[u8], sink: &mut Sink| -> Result<(), Error> {
        let v = d2.lock().unwrap().clone();
        thread::sleep(Duration::from_millis(150));
        sink.set(&v, 0)
    };
    let g = Group::new("r", 1 << 20, Some(Arc::new(getter)));
    let g2 = g.clone();
    let slow = thread::spawn(move || g2.get(b"k").unwrap());
    thread::sleep(Duration::from_millis(30));
    *db.lock().unwrap() = b"new".to_vec();
    g.remove(b"k").unwrap();
    // Started after the remove: must not join the stale load.
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"new"));
    assert_eq!(
        slow.join().unwrap(),
        Bytes::from_static(b"old"),
        "the racing load itself may see old"
    );
    assert_eq!(
        g.get(b"k").unwrap(),
        Bytes::from_static(b"new"),
        "old was not cached"
    );
}

#[test]
fn closed_group_refuses_calls() {
    let (g, _) = counting_group(1 << 20, 0);
    g.close();
    assert_eq!(g.get(b"a"), Err(Error::Closed));
    assert_eq!(g.set(b"a", b"b", 0), Err(Error::Closed));
    assert_eq!(g.remove(b"a"), Err(Error::Closed));
}

#[test]
fn too_long_a_key_is_invalid() {
    let (g, _) = counting_group(1 << 20, 0);
    let key = vec![b'k'; groupcache::engine::MAX_KEY_LEN + 1];
    assert!(matches!(g.get(&key), Err(Error::InvalidArgument(_))));
}

// ---- the peer path, through an in-process fake of the PeerPicker ----

#[derive(Default)]
struct FakePeer {
    values: Mutex<HashMap<Vec<u8>, PeerValue>>,
    fail: std::sync::atomic::AtomicBool,
    gets: AtomicUsize,
    removes: AtomicUsize,
}

impl PeerGetter for FakePeer {
    fn get(&self, _: &str, key: &[u8]) -> Result<PeerValue, PeerError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        if self.fail.load(Ordering::SeqCst) {
            return Err(PeerError::Failed("connection refused".into()));
        }
        self.values
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or(PeerError::NotFound)
    }
    fn set(&self, _: &str, key: &[u8], v: &PeerValue) -> Result<(), PeerError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(PeerError::Failed("down".into()));
        }
        self.values.lock().unwrap().insert(key.to_vec(), v.clone());
        Ok(())
    }
    fn remove(&self, _: &str, key: &[u8]) -> Result<(), PeerError> {
        self.removes.fetch_add(1, Ordering::SeqCst);
        self.values.lock().unwrap().remove(key);
        Ok(())
    }
    fn url(&self) -> &str {
        "http://fake"
    }
}

/// Keys starting with "r" belong to the fake peer.
struct Picker(Arc<FakePeer>);
impl PeerPicker for Picker {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        key.starts_with(b"r")
            .then(|| self.0.clone() as Arc<dyn PeerGetter>)
    }
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        vec![self.0.clone()]
    }
}

#[test]
fn remote_keys_come_from_the_owner_and_failures_fall_back_locally() {
    let (g, calls) = counting_group(1 << 20, 0);
    let peer = Arc::new(FakePeer::default());
    peer.values.lock().unwrap().insert(
        b"r1".to_vec(),
        PeerValue {
            value: Bytes::from_static(b"remote"),
            expire_unix_nanos: None,
        },
    );
    g.set_peer_picker(Some(Arc::new(Picker(peer.clone()))));
    assert_eq!(g.get(b"r1").unwrap(), Bytes::from_static(b"remote"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert_eq!(g.get(b"r-missing"), Err(Error::NotFound), "404 is final");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no local re-load on not-found");
    peer.fail.store(true, Ordering::SeqCst);
    assert_eq!(
        g.get(b"r2").unwrap(),
        Bytes::from_static(b"v:r2"),
        "peer down: load locally"
    );
    let s = g.stats();
    assert_eq!((s.peer_loads, s.peer_errors, s.local_loads), (2, 1, 1));
    // A peer's request is never forwarded, even for a key the peer owns.
    peer.fail.store(false, Ordering::SeqCst);
    let before = peer.gets.load(Ordering::SeqCst);
    let pv = g.get_for_peer(b"r3").unwrap();
    assert_eq!(pv.value, Bytes::from_static(b"v:r3"));
    assert_eq!(peer.gets.load(Ordering::SeqCst), before);
    assert_eq!(g.stats().server_requests, 1);
}

#[test]
fn about_one_in_ten_remote_values_enter_the_hot_cache() {
    let g = Group::new("h", 1 << 24, None);
    let peer = Arc::new(FakePeer::default());
    for i in 0..2000 {
        let k = format!("r{i}").into_bytes();
        peer.values.lock().unwrap().insert(
            k,
            PeerValue {
                value: Bytes::from_static(b"x"),
                expire_unix_nanos: None,
            },
        );
    }
    g.set_peer_picker(Some(Arc::new(Picker(peer))));
    for i in 0..2000 {
        g.get(format!("r{i}").as_bytes()).unwrap();
    }
    let s = g.stats();
    assert!(
        (100..=320).contains(&s.hot_items),
        "{} of 2000 kept hot",
        s.hot_items
    );
    assert_eq!(s.main_items, 0);
}

#[test]
fn set_goes_to_the_owner_and_remove_reaches_every_peer() {
    let (g, _) = counting_group(1 << 20, 0);
    let peer = Arc::new(FakePeer::default());
    g.set_peer_picker(Some(Arc::new(Picker(peer.clone()))));
    g.set(b"r9", b"mine", 60_000).unwrap();
    let stored = peer.values.lock().unwrap().get(&b"r9"[..]).cloned().unwrap();
    assert_eq!(stored.value, Bytes::from_static(b"mine"));
    assert!(
        stored.expire_unix_nanos.is_some(),
        "the TTL travels as an absolute expiry"
    );
    assert_eq!(g.stats().hot_items, 1, "and a copy is kept hot locally");
    assert_eq!(
        peer.removes.load(Ordering::SeqCst),
        0,
        "the owner is not asked to drop what it just stored"
    );
    g.set(b"local-key", b"x", 0).unwrap();
    assert_eq!(
        peer.removes.load(Ordering::SeqCst),
        1,
        "a set drops stale hot copies at the other peers"
    );
    peer.removes.store(0, Ordering::SeqCst);
    g.remove(b"r9").unwrap();
    assert!(peer.values.lock().unwrap().get(&b"r9"[..]).is_none());
    assert_eq!(
        peer.removes.load(Ordering::SeqCst),
        1,
        "owner once, not again as 'every peer'"
    );
    g.remove(b"local").unwrap();
    assert_eq!(
        peer.removes.load(Ordering::SeqCst),
        2,
        "a local key's remove reaches peers' hot caches"
    );
    peer.fail.store(true, Ordering::SeqCst);
    assert!(matches!(g.set(b"r9", b"x", 0), Err(Error::PeerFailed(_))));
}

// ---- stuck and misbehaving loads ----

/// A getter whose first call blocks until released (a loader stuck on a
/// dead database); later calls answer at once with "fresh".
struct Stuck {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
    first: AtomicBool,
    calls: AtomicUsize,
}

fn stuck_group(
    load_timeout: Option<Duration>,
) -> (Arc<Group>, Arc<Stuck>, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (entered, entered_rx) = mpsc::channel();
    let (release_tx, release) = mpsc::channel();
    let st = Arc::new(Stuck {
        entered: Mutex::new(entered),
        release: Mutex::new(release),
        first: AtomicBool::new(true),
        calls: AtomicUsize::new(0),
    });
    let s2 = st.clone();
    let getter = move |_: &[u8], sink: &mut Sink| -> Result<(), Error> {
        s2.calls.fetch_add(1, Ordering::SeqCst);
        if s2.first.swap(false, Ordering::SeqCst) {
            s2.entered.lock().unwrap().send(()).unwrap();
            let _ = s2.release.lock().unwrap().recv();
            return sink.set(b"stale", 0);
        }
        sink.set(b"fresh", 0)
    };
    let g = Group::with_options(
        "stuck",
        1 << 20,
        Some(Arc::new(getter)),
        GroupOptions {
            load_timeout,
            ..Default::default()
        },
    );
    (g, st, entered_rx, release_tx)
}

#[test]
fn a_stuck_getter_times_out_its_waiters_and_the_key_loads_again() {
    // Long enough for the waiter to reach the load before its deadline on
    // a loaded machine (one that comes later rightly loads for itself).
    let (g, st, entered, release) = stuck_group(Some(Duration::from_millis(1000)));
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"k"));
    entered.recv().unwrap();
    let g2 = g.clone();
    let waiter = thread::spawn(move || g2.get(b"k"));
    let r = waiter.join().unwrap();
    assert!(
        matches!(&r, Err(Error::Timeout(m)) if m.contains("1000 ms")),
        "{r:?}"
    );
    // Detached: the next get runs a load of its own.
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"fresh"));
    assert_eq!(st.calls.load(Ordering::SeqCst), 2);
    // The stuck getter finally returns: its own caller gets what it loaded,
    // and it is not cached over the newer value.
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap().unwrap(), Bytes::from_static(b"stale"));
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"fresh"));
    assert_eq!(st.calls.load(Ordering::SeqCst), 2, "the fresh value was cached");
}

#[test]
fn a_get_after_the_load_timeout_does_not_wait_for_the_stuck_load() {
    let (g, st, entered, release) = stuck_group(Some(Duration::from_millis(100)));
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"k"));
    entered.recv().unwrap();
    thread::sleep(Duration::from_millis(150));
    // No waiter timed out to detach it: the late caller replaces it itself.
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"fresh"));
    assert_eq!(st.calls.load(Ordering::SeqCst), 2);
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap().unwrap(), Bytes::from_static(b"stale"));
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"fresh"));
}

#[test]
fn an_abandoned_load_does_not_overwrite_a_newer_set() {
    let (g, _, entered, release) = stuck_group(Some(Duration::from_millis(1000)));
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"k"));
    entered.recv().unwrap();
    assert!(matches!(g.get_with(b"k", |_| ()), Err(Error::Timeout(_))));
    g.set(b"k", b"newer", 0).unwrap();
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap().unwrap(), Bytes::from_static(b"stale"));
    assert_eq!(g.get(b"k").unwrap(), Bytes::from_static(b"newer"));
}

#[test]
fn without_a_load_timeout_waiters_wait_as_long_as_the_load_takes() {
    let (g, st, entered, release) = stuck_group(None);
    assert_eq!(g.options().load_timeout, None);
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"k"));
    entered.recv().unwrap();
    let g2 = g.clone();
    let waiter = thread::spawn(move || g2.get(b"k"));
    thread::sleep(Duration::from_millis(300));
    assert!(!waiter.is_finished(), "the waiter gave up without a timeout set");
    release.send(()).unwrap();
    assert_eq!(waiter.join().unwrap().unwrap(), Bytes::from_static(b"stale"));
    assert_eq!(leader.join().unwrap().unwrap(), Bytes::from_static(b"stale"));
    assert_eq!(st.calls.load(Ordering::SeqCst), 1);
}

/// An owner whose client panics (a bug in the peer client) once released.
struct PanickingPeer {
    entered: Mutex<mpsc::Sender<()>>,
    release: Mutex<mpsc::Receiver<()>>,
    panics: AtomicBool,
}

impl PeerGetter for PanickingPeer {
    fn get(&self, _: &str, _: &[u8]) -> Result<PeerValue, PeerError> {
        if self.panics.swap(false, Ordering::SeqCst) {
            self.entered.lock().unwrap().send(()).unwrap();
            let _ = self.release.lock().unwrap().recv();
            panic!("a bug in the peer client");
        }
        Err(PeerError::Failed("connection refused".into()))
    }
    fn set(&self, _: &str, _: &[u8], _: &PeerValue) -> Result<(), PeerError> {
        Ok(())
    }
    fn remove(&self, _: &str, _: &[u8]) -> Result<(), PeerError> {
        Ok(())
    }
    fn url(&self) -> &str {
        "http://panicking"
    }
}

struct PickAll(Arc<PanickingPeer>);
impl PeerPicker for PickAll {
    fn pick_peer(&self, _: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        Some(self.0.clone())
    }
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        vec![self.0.clone()]
    }
}

#[test]
fn a_panicking_peer_client_fails_the_waiters_and_leaves_the_key_loadable() {
    let (g, calls) = counting_group(1 << 20, 0);
    let (entered, entered_rx) = mpsc::channel();
    let (release_tx, release) = mpsc::channel();
    let peer = Arc::new(PanickingPeer {
        entered: Mutex::new(entered),
        release: Mutex::new(release),
        panics: AtomicBool::new(true),
    });
    g.set_peer_picker(Some(Arc::new(PickAll(peer))));
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"r1"));
    entered_rx.recv().unwrap();
    let (done, results) = mpsc::channel();
    for _ in 0..3 {
        let (g, done) = (g.clone(), done.clone());
        thread::spawn(move || done.send(g.get(b"r1")).unwrap());
    }
    thread::sleep(Duration::from_millis(100)); // let them join the fetch
    release_tx.send(()).unwrap();
    assert!(leader.join().is_err(), "the panic reaches the leader's caller");
    let mut failed = 0;
    for _ in 0..3 {
        // A hung waiter fails the test instead of hanging it.
        let r = results
            .recv_timeout(Duration::from_secs(10))
            .expect("a waiter hung");
        // A waiter that joined the panicking fetch gets an error; one that
        // came late loads the key itself (the owner now refuses: locally).
        match &r {
            Err(Error::LoaderFailed(m)) if m.contains("panicked") => failed += 1,
            Ok(v) if v == &b"v:r1"[..] => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(failed >= 1, "no waiter joined the panicking fetch");
    // Not hung: the next get fetches again (the owner refuses, so it loads
    // locally).
    assert_eq!(g.get(b"r1").unwrap(), Bytes::from_static(b"v:r1"));
    assert!(calls.load(Ordering::SeqCst) >= 1);
}

#[test]
fn cached_only_peer_gets_never_load_and_count_once() {
    let (g, loads) = counting_group(1 << 20, 0);
    // A miss: nothing loaded, nothing counted.
    assert_eq!(g.get_cached_for_peer(b"k", 1 << 20), Ok(None));
    assert_eq!(loads.load(Ordering::SeqCst), 0);
    assert_eq!((g.stats().server_requests, g.stats().gets), (0, 0));
    // The full path loads and counts; then the cached-only one answers.
    let loaded = g.get_for_peer(b"k").unwrap();
    assert_eq!(g.get_cached_for_peer(b"k", 1 << 20), Ok(Some(loaded)));
    let s = g.stats();
    assert_eq!((s.server_requests, s.gets, s.cache_hits, s.loads), (2, 2, 1, 1));
    // Longer than max_len: left to the full path, not counted.
    assert_eq!(g.get_cached_for_peer(b"k", 0), Ok(None));
    assert_eq!(g.stats().server_requests, 2);
    // Key limits and a closed group, as the full path.
    let long = vec![b'x'; groupcache::engine::MAX_KEY_LEN + 1];
    assert!(matches!(
        g.get_cached_for_peer(&long, 1 << 20),
        Err(Error::InvalidArgument(_))
    ));
    g.close();
    assert_eq!(g.get_cached_for_peer(b"k", 1 << 20), Err(Error::Closed));
}

#[test]
fn peer_sets_and_removes_obey_the_key_limit() {
    let g = Group::new("lim", 1 << 20, None);
    let v = PeerValue {
        value: Bytes::from_static(b"v"),
        expire_unix_nanos: None,
    };
    let long = vec![b'x'; groupcache::engine::MAX_KEY_LEN + 1];
    assert!(matches!(
        g.set_from_peer(&long, v.clone()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        g.remove_from_peer(&long),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(g.stats().main_items, 0);
    let max = vec![b'x'; groupcache::engine::MAX_KEY_LEN];
    assert_eq!(g.set_from_peer(&max, v), Ok(()));
    assert_eq!(g.stats().main_items, 1);
    assert_eq!(g.remove_from_peer(&max), Ok(()));
    assert_eq!(g.stats().main_items, 0);
}
