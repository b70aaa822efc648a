//! The bounded pool of threads that run the engine calls that may block: a
//! GET that misses runs the group's getter (a database query, a Python
//! callback...), which may take seconds. At most `server_workers` threads
//! (`gcwork-<port>`) exist; they are made when work arrives and none is
//! idle, and end after [`IDLE_EXIT`] without work. Requests beyond that
//! wait in a queue as tasks, which costs no thread; one whose client left
//! before its turn is skipped.
//!
//! Workers are plain threads, outside any runtime: a getter that calls
//! another group (and so maybe a peer) does so as an application thread
//! would. (Misses of groups whose loads are fast may skip the pool: see
//! [`mod@super::inline`].)

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// How long an idle worker waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// A queued call: runs it and sends the result, unless `skip` says its
/// requester is gone.
struct Job {
    run: Box<dyn FnOnce() + Send>,
    gone: Box<dyn Fn() -> bool + Send>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    /// Threads waiting for a job.
    idle: usize,
    /// Threads alive.
    live: usize,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes an idle worker for a job (one per job), or all at close.
    work: Condvar,
    /// Signalled when a thread ends, for `close`.
    ended: Condvar,
    max: usize,
    name: String,
}

pub(crate) struct Workers {
    /// `None`: run calls on the calling thread (the fuzzing entry, which has
    /// one thread and no pool).
    shared: Option<Arc<Shared>>,
}

/// The call panicked (the engine catches getters' panics itself; this is a
/// backstop), or the pool is closed.
#[derive(Debug)]
pub(crate) struct Failed;

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn submit(self: &Arc<Self>, job: Job) {
        let mut st = self.lock();
        if st.closed {
            return; // dropping the job fails the caller
        }
        st.queue.push_back(job);
        if st.idle >= st.queue.len() {
            self.work.notify_one();
            return;
        }
        if st.live >= self.max {
            return; // a busy worker takes it when done
        }
        st.live += 1;
        drop(st);
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(self.name.clone())
            .spawn(move || me.work_loop());
        if spawned.is_err() {
            // Out of threads: the job waits for a running worker, if any.
            let mut st = self.lock();
            st.live -= 1;
            if st.live == 0 {
                log::error!("peer server: cannot start a worker thread; failing queued requests");
                st.queue.clear();
            }
        }
    }

    fn work_loop(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.queue.pop_front() {
                drop(st);
                if !(job.gone)() {
                    (job.run)();
                }
                st = self.lock();
                continue;
            }
            if st.closed {
                break;
            }
            // Wait for work until IDLE_EXIT from now; a wake-up without
            // work (another thread took it) does not restart the wait.
            let until = Instant::now() + IDLE_EXIT;
            st.idle += 1;
            st = self
                .work
                .wait_timeout_while(st, IDLE_EXIT, |st| st.queue.is_empty() && !st.closed)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            st.idle -= 1;
            if st.queue.is_empty() && !st.closed && Instant::now() >= until {
                break;
            }
        }
        st.live -= 1;
        drop(st);
        self.ended.notify_all();
    }
}

impl Workers {
    pub(crate) fn new(n: usize, name: String) -> Workers {
        Workers {
            shared: Some(Arc::new(Shared {
                state: Mutex::new(State::default()),
                work: Condvar::new(),
                ended: Condvar::new(),
                max: n,
                name,
            })),
        }
    }

    /// Runs calls inline (for the fuzzing entry).
    pub(crate) fn inline() -> Workers {
        Workers { shared: None }
    }

    /// Runs `f` on a worker once one is free. Dropping the future before
    /// then gives up the turn; after, `f` runs to its end regardless.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Failed> {
        let guarded = move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|_| Failed);
        let Some(shared) = &self.shared else {
            return guarded();
        };
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(Mutex::new(Some(tx)));
        let probe = tx.clone();
        shared.submit(Job {
            run: Box::new(move || {
                let r = guarded();
                if let Some(tx) = tx.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    let _ = tx.send(r);
                }
            }),
            gone: Box::new(move || {
                probe
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_ref()
                    .is_none_or(|tx| tx.is_closed())
            }),
        });
        rx.await.map_err(|_| Failed)?
    }

    /// Threads alive now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.shared.as_ref().map_or(0, |s| s.lock().live)
    }

    /// Fails queued calls, and waits until `deadline` for the threads to
    /// finish what they run and end. A getter still running then keeps its
    /// thread until it returns.
    pub(crate) fn close(&self, deadline: Instant) {
        let Some(s) = &self.shared else { return };
        let mut st = s.lock();
        st.closed = true;
        st.queue.clear();
        s.work.notify_all();
        let left = deadline.saturating_duration_since(Instant::now());
        drop(
            s.ended
                .wait_timeout_while(st, left, |st| st.live > 0)
                .unwrap_or_else(|e| e.into_inner()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn at_most_n_run_at_once_and_the_rest_queue() {
        let w = Arc::new(Workers::new(3, "gcwork-test".into()));
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let rt = rt();
        let results = rt.block_on(async {
            let calls: Vec<_> = (0..12)
                .map(|i| {
                    let (w, running, peak) = (w.clone(), running.clone(), peak.clone());
                    tokio::spawn(async move {
                        w.run(move || {
                            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(now, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(20));
                            running.fetch_sub(1, Ordering::SeqCst);
                            i * 2
                        })
                        .await
                    })
                })
                .collect();
            let mut out = Vec::new();
            for c in calls {
                out.push(c.await.unwrap().unwrap());
            }
            out
        });
        assert_eq!(results, (0..12).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(peak.load(Ordering::SeqCst), 3);
        assert!(w.threads() <= 3);
        w.close(Instant::now() + Duration::from_secs(2));
        assert_eq!(w.threads(), 0);
    }

    #[test]
    fn a_panic_is_a_failure_and_the_worker_survives() {
        let w = Workers::new(1, "gcwork-test".into());
        let rt = rt();
        assert!(rt.block_on(w.run(|| panic!("boom"))).is_err());
        assert_eq!(rt.block_on(w.run(|| 7)).unwrap(), 7);
        w.close(Instant::now() + Duration::from_secs(2));
    }

    #[test]
    fn a_call_given_up_before_its_turn_is_skipped() {
        let w = Arc::new(Workers::new(1, "gcwork-test".into()));
        let ran = Arc::new(AtomicUsize::new(0));
        let rt = rt();
        rt.block_on(async {
            let w1 = w.clone();
            let first =
                tokio::spawn(async move { w1.run(|| std::thread::sleep(Duration::from_millis(100))).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let r = ran.clone();
            let w2 = w.clone();
            let second = tokio::spawn(async move {
                w2.run(move || {
                    r.fetch_add(1, Ordering::SeqCst);
                })
                .await
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
            second.abort();
            first.await.unwrap().unwrap();
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(ran.load(Ordering::SeqCst), 0);
        w.close(Instant::now() + Duration::from_secs(2));
    }

    #[test]
    fn close_fails_queued_calls() {
        let w = Arc::new(Workers::new(1, "gcwork-test".into()));
        let rt = rt();
        rt.block_on(async {
            let w1 = w.clone();
            let first =
                tokio::spawn(async move { w1.run(|| std::thread::sleep(Duration::from_millis(100))).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            let w2 = w.clone();
            let queued = tokio::spawn(async move { w2.run(|| 1).await });
            tokio::time::sleep(Duration::from_millis(20)).await;
            w.close(Instant::now() + Duration::from_secs(2));
            assert!(queued.await.unwrap().is_err());
            assert!(first.await.unwrap().is_ok());
        });
        assert_eq!(w.threads(), 0);
    }
}
