//! Single-flight across `fork()`: a child never waits on a load its parent
//! had in flight (whose leader thread does not exist in the child).
//!
//! In a process of its own (`in_own_process`), so that no other test's
//! threads are inside the library (holding its locks) when it forks.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::common::process::in_own_process;
use bytes::Bytes;
use groupcache::engine::{fork, Error, Group, Sink};

#[test]
fn a_forked_child_loads_a_key_its_parent_is_still_loading() {
    in_own_process(|| {
        let (entered_tx, entered) = mpsc::channel::<()>();
        let (release, release_rx) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let release_rx = Mutex::new(release_rx);
        let first = AtomicBool::new(true);
        let calls = Arc::new(AtomicUsize::new(0));
        let c2 = calls.clone();
        // The first call (the parent's) blocks until released; any later call
        // answers at once with the pid of the process it runs in.
        let getter = move |_: &[u8], sink: &mut Sink| -> Result<(), Error> {
            c2.fetch_add(1, Ordering::SeqCst);
            if first.swap(false, Ordering::SeqCst) {
                entered_tx.lock().unwrap().send(()).unwrap();
                let _ = release_rx.lock().unwrap().recv();
            }
            sink.set(std::process::id().to_string().as_bytes(), 0)
        };
        let g = Group::new("fork", 1 << 20, Some(Arc::new(getter)));
        let parent_gen = fork::generation();

        // A parent thread holds the load of "k" open, and another waits on it
        // (an edge in the wait-for graph, from a thread the child won't have).
        let g1 = g.clone();
        let leader = thread::spawn(move || g1.get(b"k"));
        entered.recv().unwrap();
        let g2 = g.clone();
        let waiter = thread::spawn(move || g2.get(b"k"));
        thread::sleep(Duration::from_millis(50));

        // SAFETY: the child only calls into the group (whose locks no parent
        // thread holds now: the leader is inside the getter, the waiter in a
        // condvar wait on the call's own mutex), then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: alarm only arms a timer: a child that hangs is killed
            // by SIGALRM, which the parent sees as a failure.
            unsafe { libc::alarm(20) };
            let me = std::process::id().to_string().into_bytes();
            let code = match g.get(b"k") {
                Ok(v) if v == me && fork::generation() == parent_gen + 1 => {
                    // Cached in the child: the second get hits, no new load.
                    let before = calls.load(Ordering::SeqCst);
                    match g.get(b"k") {
                        Ok(v2) if v2 == me && calls.load(Ordering::SeqCst) == before => 0,
                        _ => 3,
                    }
                }
                Ok(_) => 2,
                Err(_) => 1,
            };
            // SAFETY: _exit skips the test harness's atexit handlers and the
            // parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed: wait status {status:#x} (exit 1: an error, 2: the parent's value, \
             3: not cached; killed by SIGALRM: it hung on the parent's load)"
        );

        // The parent is untouched: its load completes for both its callers.
        assert_eq!(fork::generation(), parent_gen);
        release.send(()).unwrap();
        let mine = Bytes::from(std::process::id().to_string());
        assert_eq!(leader.join().unwrap().unwrap(), mine);
        assert_eq!(waiter.join().unwrap().unwrap(), mine);
        assert_eq!(g.get(b"k").unwrap(), mine);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "the child's load ran in the child only"
        );
    });
}

/// A batch (`PeerGetter::get_many`) in a forked child goes over the child's
/// own connections: the parent's keep-alive connections (the calling
/// thread's, kept by a one-request batch, and the pool's, kept by a split
/// one) are not read by two processes. Each answer must be the value of
/// its own key, in the child and in the parent afterwards.
#[test]
fn batches_after_fork_use_the_childs_own_connections() {
    use groupcache::engine::{Getter, PeerPicker};
    use groupcache::peers::{Pool, PoolOptions};
    in_own_process(|| {
        struct Echo;
        impl Getter for Echo {
            fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
                sink.set(&[b"v:", key].concat(), 0)
            }
        }
        let server = Pool::new("127.0.0.1:0", None, PoolOptions::default()).unwrap();
        let g = Group::new("g", 1 << 20, Some(Arc::new(Echo)));
        server.register(g.clone()).unwrap();
        let client = Pool::new(
            "127.0.0.1:0",
            None,
            PoolOptions {
                max_batch_keys: 7,
                ..PoolOptions::default()
            },
        )
        .unwrap();
        client.set_peers(&[server.url().to_string()]).unwrap();
        let keys: Vec<Vec<u8>> = (0..40).map(|i| format!("k{i}").into_bytes()).collect();
        let check = |n: usize| -> bool {
            let refs: Vec<&[u8]> = keys[..n].iter().map(|k| &k[..]).collect();
            let peer = client.pick_peer(b"x").unwrap();
            let r = peer.get_many("g", &refs);
            r.len() == n
                && refs
                    .iter()
                    .zip(&r)
                    .all(|(k, r)| r.as_ref().is_ok_and(|v| v.value == [&b"v:"[..], k].concat()))
        };
        // Connections of this thread (one request) and of the pool's client
        // (split into 6 requests) are open and idle now.
        assert!(check(5) && check(40));
        // SAFETY: no other thread of this process is inside the library but
        // the pools' own (whose locks the fork handlers take); the child
        // only makes requests, then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: alarm only arms a timer (a hung child is killed).
            unsafe { libc::alarm(20) };
            let ok = (0..20).all(|_| check(5) && check(40));
            // SAFETY: _exit skips the harness's atexit handlers.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        // The parent keeps using its connections meanwhile.
        let ok = (0..20).all(|_| check(5) && check(40));
        let mut status = 0;
        // SAFETY: waiting for our own child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child failed: wait status {status:#x}"
        );
        assert!(ok, "the parent got a wrong answer");
        client.close();
        server.close();
    });
}
