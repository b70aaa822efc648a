//! A group's batches (`get_many`): the distinct misses of a batch are
//! led through single-flight together, then forwarded to their owners
//! (one batch per peer, all at once) and loaded here through the batch
//! getter in chunks, or the getter, `miss_concurrency` keys at once.

use super::*;
use crate::engine::tasks::{self, run_tasks};

/// Keys looked up per epoch pin in a batch: a batch of a million keys
/// must not hold memory reclamation back for its whole duration.
const KEYS_PER_PIN: usize = 256;

/// A missing key of a batch.
#[derive(Clone, Copy)]
struct Miss<'k> {
    key: &'k [u8],
    hash: u64,
}

/// The distinct missing keys of a batch, and where each is in the batch.
#[derive(Default)]
struct Misses<'k> {
    unique: Vec<Miss<'k>>,
    /// For each of `unique`, the indexes of the batch that ask for it.
    at: Vec<Vec<usize>>,
    seen: HashMap<&'k [u8], usize>,
}

impl<'k> Misses<'k> {
    fn add(&mut self, index: usize, key: &'k [u8], hash: u64) {
        match self.seen.get(key) {
            Some(&u) => self.at[u].push(index),
            None => {
                self.seen.insert(key, self.unique.len());
                self.unique.push(Miss { key, hash });
                self.at.push(vec![index]);
            }
        }
    }
}

impl Group {
    /// `get_many` (`for_peer` false) and `get_many_for_peer` (true: counts
    /// server requests, never forwards): the hits in one pass, then every
    /// distinct miss through `load_many`; `make` shapes each value.
    pub(super) fn many<T: Clone>(
        &self,
        keys: &[&[u8]],
        for_peer: bool,
        make: impl Fn(Loaded) -> T,
    ) -> Vec<Result<T, Error>> {
        if let Err(e) = self.check_open() {
            return keys.iter().map(|_| Err(e.clone())).collect();
        }
        let mut out: Vec<Option<Result<T, Error>>> = Vec::with_capacity(keys.len());
        let mut misses = Misses::default();
        let mut pin = reclaim::pin();
        for (i, &key) in keys.iter().enumerate() {
            if i > 0 && i % KEYS_PER_PIN == 0 {
                drop(pin);
                pin = reclaim::pin();
            }
            if let Err(e) = check_key(key) {
                out.push(Some(Err(e)));
                continue;
            }
            if for_peer {
                self.counters.inc(Counter::ServerRequests);
            }
            self.counters.inc(Counter::Gets);
            let hash = self.store.hash(key);
            match self.store.get_shared(key, hash, &pin) {
                Some(hit) => {
                    let expire = hit.expire;
                    let value = self.count_hit(hit);
                    out.push(Some(Ok(make(Loaded { value, expire }))));
                }
                None => {
                    misses.add(i, key, hash);
                    out.push(None);
                }
            }
        }
        drop(pin);
        self.counters.add(Counter::Loads, misses.unique.len() as u64);
        let loaded = self.load_many(&misses.unique, !for_peer);
        for (at, r) in misses.at.iter().zip(loaded) {
            for &i in at {
                out[i] = Some(r.clone().map(&make));
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::LoaderFailed("internal: a key got no result".into()))))
            .collect()
    }

    /// Loads distinct missing keys: every owner peer's keys in one batch
    /// each, all peers at once through [`PeerPicker::get_many_from`] on the
    /// caller's thread, and this node's keys meanwhile on a scoped thread
    /// (and its helpers, see `load_local_many`); on the caller's thread
    /// when no peer owns any. Result `i` answers `misses[i]`.
    fn load_many(&self, misses: &[Miss<'_>], may_forward: bool) -> Vec<Result<Loaded, Error>> {
        if misses.is_empty() {
            return Vec::new();
        }
        let picker = if may_forward { self.peers() } else { None };
        let Some(picker) = picker else {
            return self.load_local_many(misses, true);
        };
        // (peer, its keys' indexes into `misses`), in order of first key.
        // Peers are few: found by identity, else by URL (a membership
        // change in the middle may give one node a new object).
        let mut groups: Vec<(Arc<dyn PeerGetter>, Vec<usize>)> = Vec::new();
        let mut local: Vec<usize> = Vec::new();
        for (i, m) in misses.iter().enumerate() {
            let Some(peer) = picker.pick_peer(m.key) else {
                local.push(i);
                continue;
            };
            let g = groups
                .iter()
                .position(|(p, _)| Arc::ptr_eq(p, &peer))
                .or_else(|| groups.iter().position(|(p, _)| p.url() == peer.url()));
            match g {
                Some(g) => groups[g].1.push(i),
                None => groups.push((peer, vec![i])),
            }
        }
        if groups.is_empty() {
            drop(picker);
            return self.load_local_many(misses, true);
        }
        let pick = |idx: &[usize]| idx.iter().map(|&i| misses[i]).collect::<Vec<_>>();
        let forward: Vec<(Arc<dyn PeerGetter>, Vec<Miss<'_>>)> =
            groups.iter().map(|(p, idx)| (p.clone(), pick(idx))).collect();
        let (fetched, loaded) = if local.is_empty() {
            (self.load_forward_many(&*picker, &forward), Vec::new())
        } else {
            let mine = pick(&local);
            // The thread waits on others' loads in the caller's place, so
            // with the caller's wait slice (cache_get_many_slice).
            let slice = singleflight::wait_slice();
            let load_mine = || match slice {
                Some(slice) => singleflight::with_wait_slice(slice, || self.load_local_many(&mine, true)),
                None => self.load_local_many(&mine, true),
            };
            let (loaded, fetched) = tasks::beside(load_mine, || self.load_forward_many(&*picker, &forward));
            (fetched, loaded)
        };
        drop(picker);
        let mut results: Vec<Option<Result<Loaded, Error>>> = vec![None; misses.len()];
        for (idx, rs) in groups.iter().map(|(_, idx)| idx).zip(fetched) {
            for (&i, r) in idx.iter().zip(rs) {
                results[i] = Some(r);
            }
        }
        for (&i, r) in local.iter().zip(loaded) {
            results[i] = Some(r);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::LoaderFailed("internal: a key got no result".into()))))
            .collect()
    }

    /// `load_forward` for every peer's keys at once: for the keys no one
    /// else is fetching, one `PeerPicker::get_many_from` with one batch per
    /// peer; a failing peer's keys then load here, all in one
    /// `load_local_many`. Every call this thread leads is finished before
    /// it waits on anyone else's. Result `p` answers `forward[p]`'s keys.
    fn load_forward_many(
        &self,
        picker: &dyn PeerPicker,
        forward: &[(Arc<dyn PeerGetter>, Vec<Miss<'_>>)],
    ) -> Vec<Vec<Result<Loaded, Error>>> {
        let mut results: Vec<Vec<Option<Result<Loaded, Error>>>> =
            forward.iter().map(|(_, ms)| vec![None; ms.len()]).collect();
        // (peer, index into its keys, the call it leads).
        let mut leaders = Vec::new();
        let mut followers = Vec::new();
        for (p, (_, misses)) in forward.iter().enumerate() {
            for (i, m) in misses.iter().enumerate() {
                match self.forward.begin(m.key, m.hash) {
                    Begun::Leader(l) => leaders.push((p, i, l)),
                    Begun::Follower(f) => followers.push((p, i, f)),
                }
            }
        }
        // Per peer: the indexes into `leaders` of the keys to ask it for.
        let mut ask: Vec<Vec<usize>> = vec![Vec::new(); forward.len()];
        for (j, (p, i, _)) in leaders.iter().enumerate() {
            let m = forward[*p].1[*i];
            match self.lookup_again(m.key, m.hash) {
                Some(hit) => results[*p][*i] = Some(Ok(hit)),
                None => ask[*p].push(j),
            }
        }
        let mut keep_hot = vec![false; leaders.len()];
        let asked: Vec<usize> = (0..forward.len()).filter(|&p| !ask[p].is_empty()).collect();
        if !asked.is_empty() {
            let batches: Vec<PeerBatch<'_>> = asked
                .iter()
                .map(|&p| {
                    let keys = ask[p].iter().map(|&j| forward[p].1[leaders[j].1].key).collect();
                    (forward[p].0.clone(), keys)
                })
                .collect();
            let n: usize = batches.iter().map(|(_, k)| k.len()).sum();
            self.counters.add(Counter::LoadsDeduped, n as u64);
            self.counters
                .add(Counter::PeerBatchRequests, batches.len() as u64);
            let mut answers = picker.get_many_from(&self.name, &batches);
            answers.resize_with(batches.len(), Vec::new);
            // (peer, index into its keys) of the keys to load here.
            let mut fallback: Vec<(usize, usize)> = Vec::new();
            for ((&p, (peer, keys)), mut answer) in asked.iter().zip(&batches).zip(answers) {
                if answer.len() != keys.len() {
                    let m = format!(
                        "{} answered {} results for {} keys",
                        peer.url(),
                        answer.len(),
                        keys.len()
                    );
                    answer = keys.iter().map(|_| Err(PeerError::Failed(m.clone()))).collect();
                }
                let mut why = None;
                let before = fallback.len();
                for (&j, r) in ask[p].iter().zip(answer) {
                    let i = leaders[j].1;
                    match r {
                        Ok(pv) => {
                            self.counters.inc(Counter::PeerLoads);
                            keep_hot[j] = one_in_ten();
                            results[p][i] = Some(Ok(Loaded {
                                value: pv.value,
                                expire: pv.expire_unix_nanos,
                            }));
                        }
                        // The owner's getter said so: final, no local re-load.
                        Err(PeerError::NotFound) => {
                            self.counters.inc(Counter::PeerLoads);
                            results[p][i] = Some(Err(Error::NotFound));
                        }
                        // groupcache's rule: a failing peer means load locally.
                        Err(PeerError::Failed(m)) => {
                            self.counters.inc(Counter::PeerErrors);
                            why = Some(m);
                            fallback.push((p, i));
                        }
                    }
                }
                if let Some(why) = why {
                    log::debug!(
                        "cache {:?}: {why}; loading {} of its keys here instead",
                        self.name,
                        fallback.len() - before
                    );
                }
            }
            if !fallback.is_empty() {
                let sub: Vec<Miss<'_>> = fallback.iter().map(|&(p, i)| forward[p].1[i]).collect();
                for (&(p, i), r) in fallback.iter().zip(self.load_local_many(&sub, false)) {
                    results[p][i] = Some(r);
                }
            }
        }
        for (j, (p, i, leader)) in leaders.into_iter().enumerate() {
            let r = results[p][i]
                .take()
                .unwrap_or_else(|| Err(Error::LoaderFailed("internal: a key got no result".into())));
            let m = forward[p].1[i];
            leader.finish(r.clone(), |v| {
                if keep_hot[j] {
                    self.store.insert(m.key, &v.value, v.expire, Kind::Hot);
                }
            });
            results[p][i] = Some(r);
        }
        // Only now, holding no call of its own: no batch waits on another
        // while that one waits on it.
        for (p, i, f) in followers {
            results[p][i] = Some(f.wait());
        }
        results
            .into_iter()
            .map(|rs| {
                rs.into_iter()
                    .map(|r| {
                        r.unwrap_or_else(|| Err(Error::LoaderFailed("internal: a key got no result".into())))
                    })
                    .collect()
            })
            .collect()
    }

    /// Loads distinct keys on this node: through the batch getter, one call
    /// a chunk of `batch_chunk_keys`; else through the getter, a key a
    /// call. Up to `miss_concurrency` chunks (or keys) at once, on the
    /// caller's thread and scoped helper threads (nothing outlives the
    /// call, so a `fork()` never finds a pool of threads to restore).
    fn load_local_many(&self, misses: &[Miss<'_>], count_dedup: bool) -> Vec<Result<Loaded, Error>> {
        let par = self.options.miss_concurrency.max(1);
        if let Some(bg) = &self.options.batch_getter {
            let chunks: Vec<&[Miss<'_>]> = misses.chunks(self.options.batch_chunk_keys.max(1)).collect();
            return run_tasks(chunks.len(), par, |c| {
                self.load_chunk(&**bg, chunks[c], count_dedup)
            })
            .into_iter()
            .flatten()
            .collect();
        }
        if self.getter.is_none() {
            // Set-only: every miss is "not found" at once.
            return misses
                .iter()
                .map(|m| self.load_local(m.key, m.hash, count_dedup))
                .collect();
        }
        run_tasks(misses.len(), par, |i| {
            self.load_local(misses[i].key, misses[i].hash, count_dedup)
        })
    }

    /// `load_local` for a chunk: one batch getter call for the keys this
    /// thread leads; the others are waited for once those are done. Every
    /// key's call is registered before the getter runs, so a `get` of one
    /// of them meanwhile shares its result.
    fn load_chunk(
        &self,
        bg: &dyn BatchGetter,
        misses: &[Miss<'_>],
        count_dedup: bool,
    ) -> Vec<Result<Loaded, Error>> {
        let mut results: Vec<Option<Result<Loaded, Error>>> = vec![None; misses.len()];
        let mut leaders = Vec::new();
        let mut followers = Vec::new();
        for (i, m) in misses.iter().enumerate() {
            match self.local.begin(m.key, m.hash) {
                Begun::Leader(l) => leaders.push((i, l)),
                Begun::Follower(f) => followers.push((i, f)),
            }
        }
        let mut load = Vec::new();
        for (i, leader) in leaders {
            let m = misses[i];
            match self.lookup_again(m.key, m.hash) {
                Some(hit) => {
                    leader.finish(Ok(hit.clone()), |v| {
                        self.store.insert(m.key, &v.value, v.expire, Kind::Main);
                    });
                    results[i] = Some(Ok(hit));
                }
                None => load.push((i, leader)),
            }
        }
        if !load.is_empty() {
            if count_dedup {
                self.counters.add(Counter::LoadsDeduped, load.len() as u64);
            }
            let keys: Vec<&[u8]> = load.iter().map(|(i, _)| misses[*i].key).collect();
            let loaded = self.call_batch_getter(bg, &keys);
            for ((i, leader), r) in load.into_iter().zip(loaded) {
                self.counters.inc(if r.is_ok() {
                    Counter::LocalLoads
                } else {
                    Counter::LocalLoadErrs
                });
                let m = misses[i];
                leader.finish(r.clone(), |v| {
                    self.store.insert(m.key, &v.value, v.expire, Kind::Main);
                });
                results[i] = Some(r);
            }
        }
        for (i, f) in followers {
            results[i] = Some(f.wait());
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::LoaderFailed("internal: a key got no result".into()))))
            .collect()
    }

    /// One batch getter call; result `i` answers `keys[i]`. A panic or a
    /// failing call fails each of its keys, never more.
    pub(super) fn call_batch_getter(
        &self,
        bg: &dyn BatchGetter,
        keys: &[&[u8]],
    ) -> Vec<Result<Loaded, Error>> {
        self.counters.inc(Counter::BatchLoads);
        self.counters.add(Counter::BatchLoadedKeys, keys.len() as u64);
        let mut sink = BatchSink::new(keys.len());
        let all = |e: Error| keys.iter().map(|_| Err(e.clone())).collect();
        match catch_unwind(AssertUnwindSafe(|| bg.get_many(keys, &mut sink))) {
            Err(panic) => {
                let msg = panic_message(&*panic);
                log::error!(
                    "cache {:?}: the batch getter panicked loading {} keys: {msg}",
                    self.name,
                    keys.len()
                );
                all(Error::LoaderFailed(format!("batch getter panicked: {msg}")))
            }
            Ok(Err(Error::NotFound)) => all(Error::NotFound),
            Ok(Err(Error::LoaderFailed(m))) => all(Error::LoaderFailed(m)),
            Ok(Err(e)) => all(Error::LoaderFailed(e.to_string())),
            Ok(Ok(())) => sink
                .slots
                .into_iter()
                .map(|slot| match slot {
                    Slot::Unset => Err(Error::NotFound),
                    Slot::Value(value, expire) => Ok(Loaded { value, expire }),
                    Slot::Failed(m) => Err(Error::LoaderFailed(m)),
                })
                .collect(),
        }
    }
}
