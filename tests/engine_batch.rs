//! `Group::get_many` and `get_many_for_peer`: batch getter chunks, bounded
//! concurrent misses without one, one batch per owner peer, single-flight
//! per key shared with `get`, races with set and remove. Counts come from
//! the group's stats and the fakes' own counters; concurrency is proven by
//! barriers that only concurrent calls pass (their timeouts only turn a
//! broken build's hang into a failure).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use groupcache::engine::{
    BatchSink, Error, Getter, Group, GroupOptions, PeerError, PeerGetter, PeerPicker, PeerValue, Sink,
};

fn value(key: &[u8]) -> Bytes {
    Bytes::from([b"v:", key].concat())
}

fn keys(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{prefix}{i}").into_bytes()).collect()
}

fn refs(keys: &[Vec<u8>]) -> Vec<&[u8]> {
    keys.iter().map(|k| k.as_slice()).collect()
}

/// A barrier of `n` that fails (false) instead of hanging when fewer than
/// `n` callers arrive within 20 s.
struct Meet {
    n: usize,
    state: Mutex<usize>,
    cv: Condvar,
}

impl Meet {
    fn new(n: usize) -> Arc<Meet> {
        Arc::new(Meet {
            n,
            state: Mutex::new(0),
            cv: Condvar::new(),
        })
    }
    fn wait(&self) -> bool {
        let mut arrived = self.state.lock().unwrap();
        *arrived += 1;
        self.cv.notify_all();
        let (g, t) = self
            .cv
            .wait_timeout_while(arrived, Duration::from_secs(20), |a| *a < self.n)
            .unwrap();
        drop(g);
        !t.timed_out()
    }
}

/// The keys of each batch getter call, in order.
type Calls = Arc<Mutex<Vec<Vec<Vec<u8>>>>>;

/// A batch getter: "no*" keys are left unset (not found), "bad*" keys are
/// failed alone, a call with a "boom" key panics, one with a "down" key
/// fails as a whole; others get "v:" + key.
fn batch_getter(calls: Calls) -> impl Fn(&[&[u8]], &mut BatchSink) -> Result<(), Error> + Send + Sync {
    move |keys: &[&[u8]], sink: &mut BatchSink| {
        calls
            .lock()
            .unwrap()
            .push(keys.iter().map(|k| k.to_vec()).collect());
        assert_eq!(sink.len(), keys.len());
        if keys.iter().any(|k| *k == b"boom") {
            panic!("batch getter bug");
        }
        if keys.iter().any(|k| *k == b"down") {
            return Err(Error::LoaderFailed("the database is down".into()));
        }
        for (i, k) in keys.iter().enumerate() {
            if k.starts_with(b"no") {
                continue;
            }
            if k.starts_with(b"bad") {
                sink.fail(i, "bad row")?;
                continue;
            }
            sink.set(i, &value(k), 0)?;
        }
        Ok(())
    }
}

fn batch_group(chunk: usize, max_bytes: u64) -> (Arc<Group>, Calls) {
    let calls: Calls = Arc::default();
    let options = GroupOptions {
        batch_getter: Some(Arc::new(batch_getter(calls.clone()))),
        batch_chunk_keys: chunk,
        ..Default::default()
    };
    (Group::with_options("b", max_bytes, None, options), calls)
}

#[test]
fn misses_load_in_chunks_of_the_chunk_size_then_hit() {
    let (g, calls) = batch_group(256, 1 << 24);
    let ks = keys("k", 600);
    let got = g.get_many(&refs(&ks));
    assert_eq!(got.len(), 600);
    for (k, r) in ks.iter().zip(&got) {
        assert_eq!(r.as_ref().unwrap(), &value(k));
    }
    let sizes: Vec<usize> = calls.lock().unwrap().iter().map(|c| c.len()).collect();
    let mut sorted = sizes.clone();
    sorted.sort();
    assert_eq!(sorted, vec![88, 256, 256], "600 keys in chunks of 256: {sizes:?}");
    let s = g.stats();
    assert_eq!((s.batch_loads, s.batch_loaded_keys), (3, 600));
    assert_eq!(
        (s.gets, s.cache_hits, s.loads, s.loads_deduped),
        (600, 0, 600, 600)
    );
    assert_eq!((s.local_loads, s.local_load_errs, s.main_items), (600, 0, 600));
    // Warm: every key a hit, no getter call.
    let again = g.get_many(&refs(&ks));
    assert!(again
        .iter()
        .zip(&ks)
        .all(|(r, k)| r.as_ref().unwrap() == &value(k)));
    assert_eq!(calls.lock().unwrap().len(), 3);
    let s = g.stats();
    assert_eq!((s.gets, s.cache_hits, s.batch_loads), (1200, 600, 3));
}

#[test]
fn found_missing_failed_and_invalid_keys_in_one_batch() {
    let (g, calls) = batch_group(256, 1 << 20);
    g.set(b"cached", b"c", 0).unwrap();
    let long = vec![b'x'; 8193];
    let ks: Vec<&[u8]> = vec![b"a", b"no-such", b"bad1", b"cached", &long, b"a", b"b"];
    let got = g.get_many(&ks);
    assert_eq!(got[0], Ok(value(b"a")));
    assert_eq!(got[1], Err(Error::NotFound));
    assert_eq!(got[2], Err(Error::LoaderFailed("bad row".into())));
    assert_eq!(got[3], Ok(Bytes::from_static(b"c")));
    assert!(matches!(&got[4], Err(Error::InvalidArgument(m)) if m.contains("8193")));
    assert_eq!(got[5], Ok(value(b"a")), "a duplicate key shares the load");
    assert_eq!(got[6], Ok(value(b"b")));
    // One call, each distinct missing key once.
    let c = calls.lock().unwrap().clone();
    assert_eq!(
        c,
        vec![vec![
            b"a".to_vec(),
            b"no-such".to_vec(),
            b"bad1".to_vec(),
            b"b".to_vec()
        ]]
    );
    let s = g.stats();
    assert_eq!((s.local_loads, s.local_load_errs), (2, 2));
    // Neither failures nor "not found" were cached: they load again.
    assert_eq!(g.get_many(&[b"bad1", b"no-such", b"a"])[2], Ok(value(b"a")));
    assert_eq!(calls.lock().unwrap().len(), 2);
    assert_eq!(
        calls.lock().unwrap()[1],
        vec![b"bad1".to_vec(), b"no-such".to_vec()]
    );
}

#[test]
fn a_failing_call_fails_its_own_chunk_only() {
    let (g, calls) = batch_group(2, 1 << 20);
    let got = g.get_many(&[b"a", b"down", b"c", b"d"]);
    assert_eq!(got[0], Err(Error::LoaderFailed("the database is down".into())));
    assert_eq!(got[1], Err(Error::LoaderFailed("the database is down".into())));
    assert_eq!(got[2..], [Ok(value(b"c")), Ok(value(b"d"))]);
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[test]
fn a_panicking_batch_getter_fails_its_keys_only_and_leaves_none_hung() {
    let (g, _) = batch_group(2, 1 << 20);
    let got = g.get_many(&[b"x", b"boom", b"y", b"z"]);
    for r in &got[..2] {
        assert!(
            matches!(r, Err(Error::LoaderFailed(m)) if m.contains("batch getter bug")),
            "{r:?}"
        );
    }
    assert_eq!(got[2..], [Ok(value(b"y")), Ok(value(b"z"))]);
    // The flights were completed: the keys load again (no hang).
    assert_eq!(g.get(b"x"), Ok(value(b"x")));
    assert_eq!(g.get_many(&[b"x", b"boom"])[0], Ok(value(b"x")));
}

#[test]
fn with_only_a_batch_getter_get_loads_one_key_through_it() {
    let (g, calls) = batch_group(256, 1 << 20);
    assert_eq!(g.get(b"one"), Ok(value(b"one")));
    assert_eq!(g.get(b"nope"), Err(Error::NotFound));
    assert_eq!(g.get(b"bad"), Err(Error::LoaderFailed("bad row".into())));
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            vec![b"one".to_vec()],
            vec![b"nope".to_vec()],
            vec![b"bad".to_vec()]
        ]
    );
    assert_eq!(g.stats().batch_loads, 3);
}

#[test]
fn the_getter_is_used_for_get_and_the_batch_getter_for_get_many() {
    let single = Arc::new(AtomicUsize::new(0));
    let s2 = single.clone();
    let getter = move |key: &[u8], sink: &mut Sink| {
        s2.fetch_add(1, Ordering::SeqCst);
        sink.set(&value(key), 0)
    };
    let calls: Calls = Arc::default();
    let options = GroupOptions {
        batch_getter: Some(Arc::new(batch_getter(calls.clone()))),
        ..Default::default()
    };
    let g = Group::with_options("both", 1 << 20, Some(Arc::new(getter)), options);
    assert_eq!(g.get(b"a"), Ok(value(b"a")));
    assert_eq!(single.load(Ordering::SeqCst), 1);
    assert!(calls.lock().unwrap().is_empty());
    let got = g.get_many(&[b"a", b"b", b"c"]);
    assert_eq!(got, vec![Ok(value(b"a")), Ok(value(b"b")), Ok(value(b"c"))]);
    assert_eq!(single.load(Ordering::SeqCst), 1);
    assert_eq!(*calls.lock().unwrap(), vec![vec![b"b".to_vec(), b"c".to_vec()]]);
}

#[test]
fn closed_and_empty_batches() {
    let (g, calls) = batch_group(256, 1 << 20);
    assert!(g.get_many(&[]).is_empty());
    g.close();
    assert_eq!(
        g.get_many(&[b"a", b"b"]),
        vec![Err(Error::Closed), Err(Error::Closed)]
    );
    assert_eq!(g.get_many_for_peer(&[b"a"]), vec![Err(Error::Closed)]);
    assert!(calls.lock().unwrap().is_empty());
}

// ---- without a batch getter: concurrent, bounded ----

/// A getter that counts calls and how many run at once, and first waits
/// at `meet` (when given).
struct Concurrent {
    calls: AtomicUsize,
    now: AtomicUsize,
    most: AtomicUsize,
    meet: Option<Arc<Meet>>,
    met: AtomicUsize,
}

impl Getter for Concurrent {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let met = self.meet.as_ref().is_none_or(|m| m.wait());
        if met {
            self.met.fetch_add(1, Ordering::SeqCst);
        }
        // Long enough for the other helpers to pile up if unbounded.
        thread::sleep(Duration::from_millis(2));
        self.now.fetch_sub(1, Ordering::SeqCst);
        if key.starts_with(b"no") {
            return Err(Error::NotFound);
        }
        sink.set(&value(key), 0)
    }
}

fn concurrent_group(par: usize, meet: Option<Arc<Meet>>) -> (Arc<Group>, Arc<Concurrent>) {
    let getter = Arc::new(Concurrent {
        calls: AtomicUsize::new(0),
        now: AtomicUsize::new(0),
        most: AtomicUsize::new(0),
        meet,
        met: AtomicUsize::new(0),
    });
    let options = GroupOptions {
        miss_concurrency: par,
        ..Default::default()
    };
    let g = Group::with_options("c", 1 << 20, Some(getter.clone() as Arc<dyn Getter>), options);
    (g, getter)
}

#[test]
fn without_a_batch_getter_misses_load_concurrently() {
    // Eight loads that each wait for all eight: only concurrent loads pass.
    let (g, getter) = concurrent_group(16, Some(Meet::new(8)));
    let ks = keys("k", 8);
    let got = g.get_many(&refs(&ks));
    assert!(got.iter().zip(&ks).all(|(r, k)| r.as_ref().unwrap() == &value(k)));
    assert_eq!(
        getter.met.load(Ordering::SeqCst),
        8,
        "the loads did not run at once"
    );
    assert_eq!(getter.calls.load(Ordering::SeqCst), 8);
    let s = g.stats();
    assert_eq!((s.local_loads, s.batch_loads, s.loads_deduped), (8, 0, 8));
}

#[test]
fn without_a_batch_getter_concurrency_is_bounded() {
    let (g, getter) = concurrent_group(3, None);
    let mut ks = keys("k", 40);
    ks.push(b"nothing".to_vec());
    let got = g.get_many(&refs(&ks));
    assert_eq!(got[40], Err(Error::NotFound));
    assert!(got[..40]
        .iter()
        .zip(&ks)
        .all(|(r, k)| r.as_ref().unwrap() == &value(k)));
    let most = getter.most.load(Ordering::SeqCst);
    assert!((1..=3).contains(&most), "{most} loads at once, bound 3");
    assert_eq!(getter.calls.load(Ordering::SeqCst), 41);
}

// ---- single-flight shared with get, races with set and remove ----

/// A batch getter that reports each call's keys on `started`, then waits
/// for `release` before setting "v:" + key for each.
fn blocking_group(
    max_bytes: u64,
    single: Option<Arc<dyn Getter>>,
) -> (Arc<Group>, mpsc::Receiver<Vec<Vec<u8>>>, mpsc::Sender<()>) {
    let (started_tx, started) = mpsc::channel::<Vec<Vec<u8>>>();
    let (release, release_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let release_rx = Mutex::new(release_rx);
    let bg = move |keys: &[&[u8]], sink: &mut BatchSink| {
        started_tx
            .lock()
            .unwrap()
            .send(keys.iter().map(|k| k.to_vec()).collect())
            .unwrap();
        release_rx.lock().unwrap().recv().unwrap();
        for (i, k) in keys.iter().enumerate() {
            sink.set(i, &value(k), 0)?;
        }
        Ok(())
    };
    let options = GroupOptions {
        batch_getter: Some(Arc::new(bg)),
        ..Default::default()
    };
    (
        Group::with_options("r", max_bytes, single, options),
        started,
        release,
    )
}

/// Waits (polling the stats) until `n` loads were counted, then a little
/// longer for the last one to reach its flight.
fn until_loads(g: &Group, n: u64) {
    while g.stats().loads < n {
        thread::sleep(Duration::from_millis(1));
    }
    thread::sleep(Duration::from_millis(50));
}

#[test]
fn a_get_of_a_key_being_batch_loaded_shares_the_batch_result() {
    // max_bytes 0 keeps nothing: a get that did not join the batch's
    // flight would have to call a getter of its own.
    let single_calls = Arc::new(AtomicUsize::new(0));
    let sc = single_calls.clone();
    let single = move |_: &[u8], _: &mut Sink| -> Result<(), Error> {
        sc.fetch_add(1, Ordering::SeqCst);
        Err(Error::LoaderFailed("the single getter must not run".into()))
    };
    let (g, started, release) = blocking_group(0, Some(Arc::new(single)));
    let g1 = g.clone();
    let batch = thread::spawn(move || g1.get_many(&[b"a", b"b"]));
    assert_eq!(started.recv().unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
    let g2 = g.clone();
    let get = thread::spawn(move || g2.get(b"b"));
    until_loads(&g, 3);
    release.send(()).unwrap();
    assert_eq!(get.join().unwrap(), Ok(value(b"b")));
    assert_eq!(batch.join().unwrap(), vec![Ok(value(b"a")), Ok(value(b"b"))]);
    assert_eq!(single_calls.load(Ordering::SeqCst), 0);
    assert_eq!(g.stats().batch_loads, 1);
}

#[test]
fn a_batch_waits_for_a_key_someone_else_is_loading() {
    let (g, started, release) = blocking_group(1 << 20, None);
    let g1 = g.clone();
    let first = thread::spawn(move || g1.get_many(&[b"k"]));
    assert_eq!(started.recv().unwrap(), vec![b"k".to_vec()]);
    let g2 = g.clone();
    let second = thread::spawn(move || g2.get_many(&[b"j", b"k"]));
    // The second batch asks the getter for "j" alone.
    assert_eq!(started.recv().unwrap(), vec![b"j".to_vec()]);
    release.send(()).unwrap();
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap(), vec![Ok(value(b"k"))]);
    assert_eq!(second.join().unwrap(), vec![Ok(value(b"j")), Ok(value(b"k"))]);
    assert_eq!(g.stats().batch_loaded_keys, 2);
}

#[test]
fn two_batches_with_crossed_keys_neither_deadlock_nor_load_twice() {
    let calls: Calls = Arc::default();
    let meet = Meet::new(2);
    let c2 = calls.clone();
    let bg = move |keys: &[&[u8]], sink: &mut BatchSink| {
        c2.lock().unwrap().push(keys.iter().map(|k| k.to_vec()).collect());
        for (i, k) in keys.iter().enumerate() {
            sink.set(i, &value(k), 0)?;
        }
        Ok(())
    };
    let options = GroupOptions {
        batch_getter: Some(Arc::new(bg)),
        batch_chunk_keys: 1,
        miss_concurrency: 1,
        ..Default::default()
    };
    let g = Group::with_options("x", 1 << 20, None, options);
    let ks: Vec<Vec<u8>> = keys("k", 50);
    let run = |rev: bool| {
        let (g, meet) = (g.clone(), meet.clone());
        let mut ks = ks.clone();
        if rev {
            ks.reverse();
        }
        thread::spawn(move || {
            meet.wait();
            g.get_many(&refs(&ks))
        })
    };
    let (a, b) = (run(false), run(true));
    for r in a.join().unwrap().into_iter().chain(b.join().unwrap()) {
        assert!(r.is_ok(), "{r:?}");
    }
    let mut loaded: Vec<Vec<u8>> = calls.lock().unwrap().iter().flatten().cloned().collect();
    loaded.sort();
    let mut want = ks.clone();
    want.sort();
    assert_eq!(loaded, want, "each key loaded exactly once");
}

#[test]
fn a_remove_during_a_batch_keeps_the_loaded_value_out() {
    let (g, started, release) = blocking_group(1 << 20, None);
    let g1 = g.clone();
    let batch = thread::spawn(move || g1.get_many(&[b"a", b"b"]));
    started.recv().unwrap();
    g.remove(b"a").unwrap();
    release.send(()).unwrap();
    assert_eq!(batch.join().unwrap(), vec![Ok(value(b"a")), Ok(value(b"b"))]);
    assert_eq!(
        g.contains(b"a"),
        Ok(false),
        "the removed key was cached by the older load"
    );
    assert_eq!(g.contains(b"b"), Ok(true));
}

#[test]
fn a_set_during_a_batch_is_not_overwritten() {
    let (g, started, release) = blocking_group(1 << 20, None);
    let g1 = g.clone();
    let batch = thread::spawn(move || g1.get_many(&[b"a", b"b"]));
    started.recv().unwrap();
    g.set(b"a", b"new", 0).unwrap();
    release.send(()).unwrap();
    batch.join().unwrap();
    assert_eq!(g.get(b"a"), Ok(Bytes::from_static(b"new")));
    assert_eq!(g.get(b"b"), Ok(value(b"b")));
}

#[test]
fn a_batch_waiting_on_a_stuck_load_times_out_for_that_key() {
    let (release, release_rx) = mpsc::channel::<()>();
    let (started_tx, started) = mpsc::channel::<()>();
    let (release_rx, started_tx) = (Mutex::new(release_rx), Mutex::new(started_tx));
    let stuck = move |key: &[u8], sink: &mut Sink| {
        if key == b"stuck" {
            started_tx.lock().unwrap().send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv();
        }
        sink.set(&value(key), 0)
    };
    let options = GroupOptions {
        load_timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let g = Group::with_options("t", 1 << 20, Some(Arc::new(stuck)), options);
    let g1 = g.clone();
    let leader = thread::spawn(move || g1.get(b"stuck"));
    started.recv().unwrap();
    let got = g.get_many(&[b"stuck", b"fine"]);
    assert!(matches!(&got[0], Err(Error::Timeout(_))), "{:?}", got[0]);
    assert_eq!(got[1], Ok(value(b"fine")));
    release.send(()).unwrap();
    assert_eq!(leader.join().unwrap(), Ok(value(b"stuck")));
}

// ---- peers: one batch per owner, all at once, get's rules per key ----

/// A fake peer that holds "peer:" + key for keys not ending in "-no",
/// counts its batches, and first waits at `meet` in each (when given).
struct BatchPeer {
    url: String,
    batches: Mutex<Vec<Vec<Vec<u8>>>>,
    fail: bool,
    meet: Option<Arc<Meet>>,
}

impl PeerGetter for BatchPeer {
    fn get(&self, _: &str, _: &[u8]) -> Result<PeerValue, PeerError> {
        panic!("a batch must use get_many");
    }
    fn get_many(&self, _: &str, keys: &[&[u8]]) -> Vec<Result<PeerValue, PeerError>> {
        self.batches
            .lock()
            .unwrap()
            .push(keys.iter().map(|k| k.to_vec()).collect());
        if let Some(m) = &self.meet {
            assert!(m.wait(), "the peers and the local load did not run at once");
        }
        keys.iter()
            .map(|k| {
                if self.fail {
                    Err(PeerError::Failed("connection refused".into()))
                } else if k.ends_with(b"-no") {
                    Err(PeerError::NotFound)
                } else {
                    Ok(PeerValue {
                        value: Bytes::from([b"peer:", *k].concat()),
                        expire_unix_nanos: None,
                    })
                }
            })
            .collect()
    }
    fn set(&self, _: &str, _: &[u8], _: &PeerValue) -> Result<(), PeerError> {
        Ok(())
    }
    fn remove(&self, _: &str, _: &[u8]) -> Result<(), PeerError> {
        Ok(())
    }
    fn url(&self) -> &str {
        &self.url
    }
}

/// Keys "p1..." belong to peer 1, "p2..." to peer 2, the rest to this node.
struct TwoPeers([Arc<BatchPeer>; 2]);

impl PeerPicker for TwoPeers {
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>> {
        match key {
            [b'p', b'1', ..] => Some(self.0[0].clone()),
            [b'p', b'2', ..] => Some(self.0[1].clone()),
            _ => None,
        }
    }
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>> {
        vec![self.0[0].clone(), self.0[1].clone()]
    }
}

fn peer(url: &str, fail: bool, meet: Option<Arc<Meet>>) -> Arc<BatchPeer> {
    Arc::new(BatchPeer {
        url: url.into(),
        batches: Mutex::default(),
        fail,
        meet,
    })
}

#[test]
fn each_owner_gets_one_batch_all_at_once_with_the_local_loads() {
    // The two peers' batches and the local batch getter call each wait
    // for the other two: only concurrent calls pass.
    let meet = Meet::new(3);
    let peers = [
        peer("http://p1", false, Some(meet.clone())),
        peer("http://p2", false, Some(meet.clone())),
    ];
    let calls: Calls = Arc::default();
    let inner = batch_getter(calls.clone());
    let m2 = meet.clone();
    let bg = move |keys: &[&[u8]], sink: &mut BatchSink| {
        assert!(m2.wait(), "the local load did not run with the peers");
        inner(keys, sink)
    };
    let options = GroupOptions {
        batch_getter: Some(Arc::new(bg)),
        ..Default::default()
    };
    let g = Group::with_options("p", 1 << 20, None, options);
    g.set_peer_picker(Some(Arc::new(TwoPeers(peers.clone()))));
    let mut ks: Vec<Vec<u8>> = Vec::new();
    for i in 0..30 {
        ks.push(format!("p1-{i}").into_bytes());
        ks.push(format!("p2-{i}").into_bytes());
        ks.push(format!("l-{i}").into_bytes());
    }
    ks.push(b"p1-no".to_vec());
    let got = g.get_many(&refs(&ks));
    for (k, r) in ks.iter().zip(&got) {
        if k == b"p1-no" {
            assert_eq!(r, &Err(Error::NotFound), "a peer's not-found is final");
        } else if k.starts_with(b"p") {
            assert_eq!(
                r.as_ref().unwrap(),
                &Bytes::from([b"peer:", k.as_slice()].concat())
            );
        } else {
            assert_eq!(r.as_ref().unwrap(), &value(k));
        }
    }
    assert_eq!(peers[0].batches.lock().unwrap().len(), 1);
    assert_eq!(peers[1].batches.lock().unwrap().len(), 1);
    assert_eq!(peers[0].batches.lock().unwrap()[0].len(), 31);
    assert_eq!(calls.lock().unwrap().len(), 1);
    assert_eq!(
        calls.lock().unwrap()[0].len(),
        30,
        "only this node's keys load here"
    );
    let s = g.stats();
    assert_eq!((s.peer_batch_requests, s.peer_loads, s.peer_errors), (2, 61, 0));
    assert_eq!((s.batch_loads, s.batch_loaded_keys), (1, 30));
    // About 1 in 10 peer values is kept hot; never this node's own keys.
    assert!(s.hot_items <= 60);
    assert_eq!(s.main_items, 30);
}

#[test]
fn a_failing_peers_keys_load_here_in_one_batch() {
    let peers = [peer("http://p1", true, None), peer("http://p2", false, None)];
    let (g, calls) = batch_group(256, 1 << 20);
    g.set_peer_picker(Some(Arc::new(TwoPeers(peers.clone()))));
    let ks: Vec<Vec<u8>> = (0..10).map(|i| format!("p1-{i}").into_bytes()).collect();
    let got = g.get_many(&refs(&ks));
    assert!(got.iter().zip(&ks).all(|(r, k)| r.as_ref().unwrap() == &value(k)));
    assert_eq!(peers[0].batches.lock().unwrap().len(), 1);
    assert_eq!(*calls.lock().unwrap(), vec![ks.clone()]);
    let s = g.stats();
    assert_eq!((s.peer_batch_requests, s.peer_errors, s.peer_loads), (1, 10, 0));
    assert_eq!((s.local_loads, s.batch_loads), (10, 1));
}

#[test]
fn a_peers_batch_is_served_here_and_never_forwarded() {
    let peers = [peer("http://p1", false, None), peer("http://p2", false, None)];
    let (g, calls) = batch_group(256, 1 << 20);
    g.set_peer_picker(Some(Arc::new(TwoPeers(peers.clone()))));
    g.set(b"l-cached", b"c", 0).unwrap();
    let got = g.get_many_for_peer(&[b"p1-a", b"l-cached", b"no-x", b"bad-y"]);
    assert_eq!(got[0].as_ref().unwrap().value, value(b"p1-a"));
    assert_eq!(got[1].as_ref().unwrap().value, Bytes::from_static(b"c"));
    assert_eq!(got[2], Err(Error::NotFound));
    assert_eq!(got[3], Err(Error::LoaderFailed("bad row".into())));
    assert!(peers[0].batches.lock().unwrap().is_empty(), "forwarded to a peer");
    assert_eq!(calls.lock().unwrap().len(), 1);
    let s = g.stats();
    assert_eq!(
        (s.server_batch_requests, s.server_requests, s.gets, s.cache_hits),
        (1, 4, 4, 1)
    );
    assert_eq!((s.peer_batch_requests, s.loads), (0, 3));
}

#[test]
fn a_peers_batch_with_ttls_carries_the_expiry() {
    let bg = |keys: &[&[u8]], sink: &mut BatchSink| {
        for (i, k) in keys.iter().enumerate() {
            sink.set(i, k, 60_000)?;
        }
        Ok(())
    };
    let options = GroupOptions {
        batch_getter: Some(Arc::new(bg)),
        ..Default::default()
    };
    let g = Group::with_options("ttl", 1 << 20, None, options);
    let got = g.get_many_for_peer(&[b"a"]);
    let pv = got[0].as_ref().unwrap();
    assert!(pv.expire_unix_nanos.is_some());
    // And from the cache.
    let again = g.get_many_for_peer(&[b"a"]);
    assert_eq!(again[0].as_ref().unwrap().expire_unix_nanos, pv.expire_unix_nanos);
}

#[test]
fn batch_sink_rejects_bad_indexes_and_keeps_failures() {
    let bg = |keys: &[&[u8]], sink: &mut BatchSink| {
        assert!(matches!(
            sink.set(keys.len(), b"x", 0),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            sink.fail(usize::MAX, "x"),
            Err(Error::InvalidArgument(_))
        ));
        sink.fail(0, "first failed")?;
        sink.set(0, b"too late", 0)?;
        sink.set(1, b"one", 0)?;
        sink.set(1, b"replaced", 0)?;
        Ok(())
    };
    let options = GroupOptions {
        batch_getter: Some(Arc::new(bg)),
        ..Default::default()
    };
    let g = Group::with_options("sink", 1 << 20, None, options);
    let got = g.get_many(&[b"a", b"b"]);
    assert_eq!(got[0], Err(Error::LoaderFailed("first failed".into())));
    assert_eq!(got[1], Ok(Bytes::from_static(b"replaced")));
}

#[test]
fn a_sliced_batch_slices_its_waits_on_local_loads_also_while_peers_are_asked() {
    // With keys of peers in the batch, this node's keys load on a thread
    // of their own: a wait there on another thread's load still ends
    // with the caller's slice (InProgress), as on the caller's thread.
    let (g, started, release) = blocking_group(1 << 20, None);
    let peers = [peer("http://p1", false, None), peer("http://p2", false, None)];
    g.set_peer_picker(Some(Arc::new(TwoPeers(peers.clone()))));
    let g1 = g.clone();
    let first = thread::spawn(move || g1.get_many(&[b"l-k"]));
    assert_eq!(started.recv().unwrap(), vec![b"l-k".to_vec()]);
    // A broken build would wait for the load: released late, it fails.
    let late = release.clone();
    thread::spawn(move || {
        thread::sleep(Duration::from_secs(10));
        let _ = late.send(());
    });
    let got = groupcache::engine::singleflight::with_wait_slice(Duration::from_millis(20), || {
        g.get_many(&[b"l-k", b"p1-x"])
    });
    assert_eq!(got[0], Err(Error::InProgress));
    assert_eq!(got[1], Ok(Bytes::from_static(b"peer:p1-x")));
    release.send(()).unwrap();
    assert_eq!(first.join().unwrap(), vec![Ok(value(b"l-k"))]);
}
