//! Batches of keys to several peers at once ([`get_many_all`]): the
//! requests of a first round (one batch per up to `max_batch_keys` keys,
//! or a GET for a single key) all go out at once, from the calling thread
//! on its kept connections or on the pools' runtimes; then GETs for the
//! keys of peers without the batch route and those an answer had no room
//! for.

use super::*;

/// What one request of a `get_many` answered: a batch's answer or a GET's
/// value.
enum Reply {
    Batch(BatchAnswer),
    One(PeerValue),
}

/// One request of a `get_many`: a batch for keys `start..start + len` of
/// batch `at`'s keys, or a GET for key `start` of them (`len` 1).
struct Req<'a> {
    peer: &'a HttpPeer,
    at: usize,
    start: usize,
    len: usize,
    batch: bool,
    call: Call,
}

impl<'a> Req<'a> {
    fn get(peer: &'a HttpPeer, at: usize, i: usize, group: &str, key: &[u8]) -> Req<'a> {
        Req {
            peer,
            at,
            start: i,
            len: 1,
            batch: false,
            call: peer.call(Method::GET, group, key, Bytes::new()),
        }
    }

    fn batch(peer: &'a HttpPeer, at: usize, start: usize, group: &str, keys: &[&[u8]]) -> Req<'a> {
        Req {
            peer,
            at,
            start,
            len: keys.len(),
            batch: true,
            call: peer.batch_call(group, keys),
        }
    }

    fn handler(&self) -> ReplyHandler {
        ReplyHandler {
            kind: self.peer.kind.clone(),
            batch_keys: self.batch.then_some(self.len),
        }
    }
}

/// Reads a [`Req`]'s answer.
#[derive(Clone)]
struct ReplyHandler {
    kind: Arc<AtomicU8>,
    /// For a batch: its number of keys (which bounds the answer's size).
    batch_keys: Option<usize>,
}

impl ReplyHandler {
    async fn handle(self, resp: Response<Incoming>, max: usize) -> Result<Reply, PeerError> {
        match self.batch_keys {
            Some(n) => batch_response(resp, max, n, self.kind).await.map(Reply::Batch),
            None => {
                note_kind(&self.kind, &resp);
                get_response(resp, max).await.map(Reply::One)
            }
        }
    }
}

/// Several peers' `get_many` at once (`PeerPicker::get_many_from` of a
/// pool; `HttpPeer::get_many` is this with one peer). Result `b` answers
/// `batches[b]`'s keys. Every request of the first round (one batch per
/// up to `max_batch_keys` keys, or a GET for a single key) goes out at
/// once: from the calling thread on its kept connections when it is a
/// plain thread and the requests go to distinct addresses, else on the
/// pools' runtimes. Then GETs, [`PARALLEL_GETS`] at once per peer on the
/// pool's runtime, for the keys of peers without the batch route and the
/// keys a batch answer had no room for. All within each peer's `timeout`
/// from the start.
pub(crate) fn get_many_all(
    group: &str,
    batches: &[(&HttpPeer, &[&[u8]])],
) -> Vec<Vec<Result<PeerValue, PeerError>>> {
    let start = Instant::now();
    let mut out: Vec<Vec<Option<Result<PeerValue, PeerError>>>> =
        batches.iter().map(|(_, keys)| vec![None; keys.len()]).collect();
    // (batch, key index) of the keys to fetch with GETs.
    let mut singles: Vec<(usize, usize)> = Vec::new();
    let mut reqs = Vec::new();
    for (at, &(peer, keys)) in batches.iter().enumerate() {
        match keys {
            [] => {}
            [k] => reqs.push(Req::get(peer, at, 0, group, k)),
            _ if peer.batch_route_absent() => singles.extend((0..keys.len()).map(|i| (at, i))),
            _ => {
                let per = peer.shared.cfg.max_batch_keys.max(1);
                for (c, chunk) in keys.chunks(per).enumerate() {
                    reqs.push(Req::batch(peer, at, c * per, group, chunk));
                }
            }
        }
    }
    let answers = send_all(&reqs, start, true);
    for (r, answer) in reqs.iter().zip(answers) {
        let o = &mut out[r.at][r.start..r.start + r.len];
        let url = &r.peer.url;
        match answer {
            Ok(Reply::One(v)) if !r.batch => o[0] = Some(Ok(v)),
            Ok(Reply::Batch(BatchAnswer::Results(rs))) if r.batch && rs.len() == r.len => {
                for (j, kr) in rs.into_iter().enumerate() {
                    o[j] = match kr.status {
                        STATUS_FOUND => Some(Ok(PeerValue {
                            value: kr.value,
                            expire_unix_nanos: expire_from_wire(kr.expire),
                        })),
                        404 => Some(Err(PeerError::NotFound)),
                        STATUS_TOO_LARGE => {
                            singles.push((r.at, r.start + j));
                            None
                        }
                        status => Some(Err(PeerError::Failed(format!(
                            "POST at {url}: the batch answered {status} for this key: {}",
                            kr.error.chars().take(ERROR_SNIPPET).collect::<String>()
                        )))),
                    };
                }
            }
            Ok(Reply::Batch(BatchAnswer::Results(rs))) if r.batch => {
                let e = PeerError::Failed(format!(
                    "POST at {url}: the batch answer has {} results for {} keys",
                    rs.len(),
                    r.len
                ));
                o.fill(Some(Err(e)));
            }
            Ok(Reply::Batch(BatchAnswer::NoRoute)) if r.batch => {
                r.peer
                    .no_batch_until
                    .store(mono_ms() + BATCH_REPROBE.as_millis() as u64, Ordering::Relaxed);
                singles.extend((r.start..r.start + r.len).map(|i| (r.at, i)));
            }
            Ok(_) => o.fill(Some(Err(PeerError::Failed(
                "internal: an answer of the wrong kind".into(),
            )))),
            Err(e) => o.fill(Some(Err(e))),
        }
    }
    if !singles.is_empty() {
        let reqs: Vec<Req<'_>> = singles
            .iter()
            .map(|&(at, i)| Req::get(batches[at].0, at, i, group, batches[at].1[i]))
            .collect();
        for (r, answer) in reqs.iter().zip(send_all(&reqs, start, false)) {
            out[r.at][r.start] = Some(match answer {
                Ok(Reply::One(v)) => Ok(v),
                Ok(Reply::Batch(_)) => Err(PeerError::Failed("internal: an answer of the wrong kind".into())),
                Err(e) => Err(e),
            });
        }
    }
    out.into_iter()
        .map(|o| {
            o.into_iter()
                .map(|r| r.unwrap_or_else(|| Err(PeerError::Failed("no answer for this key".into()))))
                .collect()
        })
        .collect()
}

/// Sends `reqs` at once, each within its peer's timeout from `start`:
/// from this thread when `here` allows, it is a plain thread and no two
/// requests go to one address (this thread keeps one connection per
/// address); else on the pools' runtimes. Result `i` answers `reqs[i]`,
/// its error naming the request and the peer; each answer counts for its
/// peer's health.
fn send_all(reqs: &[Req<'_>], start: Instant, here: bool) -> Vec<Result<Reply, PeerError>> {
    if reqs.is_empty() {
        return Vec::new();
    }
    let closed = |r: &Req<'_>| r.peer.shared.closed.load(Ordering::Acquire);
    let was_closed: Vec<bool> = reqs.iter().map(closed).collect();
    let open: Vec<&Req<'_>> = reqs
        .iter()
        .zip(&was_closed)
        .filter(|(_, &c)| !c)
        .map(|(r, _)| r)
        .collect();
    let in_runtime = tokio::runtime::Handle::try_current().is_ok();
    let distinct = || {
        let mut keys: Vec<&str> = open.iter().map(|r| &*r.call.conn_key).collect();
        keys.sort_unstable();
        keys.windows(2).all(|w| w[0] != w[1])
    };
    let mut sent = None;
    if open.is_empty() {
        sent = Some(Vec::new());
    } else if here && !in_runtime && distinct() {
        sent = send_on_this_thread(&open);
    }
    let mut sent = match sent {
        Some(rs) => rs,
        None if in_runtime && crate::peers::server::inline_call_running() => {
            // As in `exec_as`: the tasks must not wait behind this thread.
            tokio::task::block_in_place(|| send_on_pools(&open, start))
        }
        None => send_on_pools(&open, start),
    }
    .into_iter();
    reqs.iter()
        .zip(was_closed)
        .map(|(r, was_closed)| {
            if was_closed {
                return Err(PeerError::Failed(format!(
                    "{} at {}: the pool is closed",
                    r.call.method, r.peer.url
                )));
            }
            let res = sent
                .next()
                .unwrap_or_else(|| Err(PeerError::Failed("internal: no answer".into())))
                .map_err(|e| match e {
                    PeerError::Failed(m) => {
                        PeerError::Failed(format!("{} at {}: {m}", r.call.method, r.peer.url))
                    }
                    nf => nf,
                });
            if !closed(r) {
                r.peer.health.note(&r.peer.url, &res);
            }
            res
        })
        .collect()
}

/// [`send_all`] on the pools' runtimes: each request a task (at most
/// [`PARALLEL_GETS`] of one peer in flight), sent with the pool's pooled
/// client; the caller waits on a std channel. A request still unanswered
/// at its deadline is a timeout.
fn send_on_pools(reqs: &[&Req<'_>], start: Instant) -> Vec<Result<Reply, PeerError>> {
    let n = reqs.len();
    let mut out: Vec<Option<Result<Reply, PeerError>>> = (0..n).map(|_| None).collect();
    // One semaphore per peer, found by identity (peers are few).
    let mut lanes: Vec<(*const HttpPeer, Arc<tokio::sync::Semaphore>)> = Vec::new();
    let (tx, rx) = mpsc::channel();
    let mut pending = 0usize;
    let mut backstop = start;
    for (i, r) in reqs.iter().enumerate() {
        let s = &r.peer.shared;
        let timeout = s.cfg.timeout;
        let deadline = start + timeout;
        backstop = backstop.max(deadline + Duration::from_secs(1));
        let req = match r.call.request(true, s.cfg.secret.as_deref()) {
            Ok(req) => req,
            Err(e) => {
                out[i] = Some(Err(e));
                continue;
            }
        };
        let me: *const HttpPeer = r.peer;
        let permits = match lanes.iter().find(|(p, _)| *p == me) {
            Some((_, sem)) => sem.clone(),
            None => {
                let sem = Arc::new(tokio::sync::Semaphore::new(PARALLEL_GETS));
                lanes.push((me, sem.clone()));
                sem
            }
        };
        let (client, tx, handler, max) = (s.pooled.clone(), tx.clone(), r.handler(), s.cfg.max_body_bytes);
        let until = tokio::time::Instant::from_std(deadline);
        pending += 1;
        // A dropped task (the runtime shut down) drops its `tx`.
        drop(s.handle.spawn(async move {
            let r = match tokio::time::timeout_at(until, async move {
                let _turn = permits.acquire_owned().await;
                let resp = client
                    .request(req)
                    .await
                    .map_err(|e| PeerError::Failed(describe(&e)))?;
                handler.handle(resp, max).await
            })
            .await
            {
                Ok(r) => r,
                Err(_) => Err(PeerError::Failed(format!("timed out after {timeout:?}"))),
            };
            let _ = tx.send((i, r));
        }));
    }
    drop(tx);
    // The tasks enforce the deadlines; this wait's second is a backstop in
    // case a runtime stalls.
    let mut closed = false;
    while pending > 0 {
        match rx.recv_timeout(backstop.saturating_duration_since(Instant::now())) {
            Ok((i, r)) => {
                out[i] = Some(r);
                pending -= 1;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => break,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                closed = true;
                break;
            }
        }
    }
    out.into_iter()
        .zip(reqs)
        .map(|(r, req)| {
            r.unwrap_or_else(|| {
                Err(PeerError::Failed(if closed {
                    "the pool is closed".to_string()
                } else {
                    format!("timed out after {:?}", req.peer.shared.cfg.timeout)
                }))
            })
        })
        .collect()
}

/// [`send_all`] on this thread: its runtime drives every request at once,
/// each on this thread's kept connection to its address (or a new one,
/// kept afterwards). `None` when this thread's client cannot be used
/// (re-entered, or it could not be built).
fn send_on_this_thread(reqs: &[&Req<'_>]) -> Option<Vec<Result<Reply, PeerError>>> {
    LOCAL
        .try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            let lc = local_client(&mut slot)?;
            let now = Instant::now();
            lc.idle
                .retain(|_, i| now.duration_since(i.since) < POOL_IDLE_TIMEOUT && !i.tx.is_closed());
            let reused: Vec<Option<Conn>> = reqs
                .iter()
                .map(|r| lc.idle.remove(&r.call.conn_key).map(|i| (i.tx, i.sock)))
                .collect();
            let mut keeps: Vec<Option<Conn>> = reqs.iter().map(|_| None).collect();
            IN_FLIGHT.fetch_add(reqs.len(), Ordering::Relaxed);
            let _in_flight = InFlight(reqs.len());
            let results = lc.rt.block_on(async {
                let futs = reqs
                    .iter()
                    .zip(reused)
                    .zip(keeps.iter_mut())
                    .map(|((r, reused), keep)| {
                        let cfg = &r.peer.shared.cfg;
                        let h = r.handler();
                        Box::pin(with_timeout(
                            cfg.timeout,
                            exchange(&r.call, cfg, reused, keep, move |resp, max| h.handle(resp, max)),
                        ))
                    })
                    .collect();
                join_all(futs).await
            });
            for ((r, keep), result) in reqs.iter().zip(keeps).zip(&results) {
                // Not after a timeout: the connection may be mid-answer.
                if let (Some((tx, sock)), Ok(_) | Err(PeerError::NotFound)) = (keep, result) {
                    let since = Instant::now();
                    lc.idle.insert(r.call.conn_key.clone(), Idle { tx, since, sock });
                }
            }
            Some(results)
        })
        .ok()
        .flatten()
}

/// Polls every future until all are done; result `i` is `futs[i]`'s.
async fn join_all<F: Future + Unpin>(mut futs: Vec<F>) -> Vec<F::Output> {
    let mut out: Vec<Option<F::Output>> = futs.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, o) in futs.iter_mut().zip(out.iter_mut()) {
            if o.is_none() {
                match std::pin::Pin::new(f).poll(cx) {
                    std::task::Poll::Ready(v) => *o = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}
