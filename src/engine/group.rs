//! A group: one named cache with its getter (groupcache's Group), and the
//! load algorithm: cache, then the key's owner, then the local getter.

use std::cell::Cell;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;

use super::clock;
use super::fork;
use super::reclaim::{self, Pin};
use super::singleflight::{self, Begun, Flight, Role};
use super::stats::{Counter, Counters, Stats};
use super::store::{Hit, Kind, Store};
use super::{panic_message, Error, PeerBatch, PeerError, PeerGetter, PeerPicker, PeerValue};

mod batch;

/// Longest key accepted, in bytes. Keys travel in URL paths between peers
/// (up to three bytes per key byte once escaped), so they are kept well
/// under common request-line limits.
pub const MAX_KEY_LEN: usize = 8 * 1024;

/// Longest value accepted, in bytes (the store keeps lengths as u32).
pub const MAX_VALUE_LEN: usize = u32::MAX as usize;

/// Where a getter puts the value it loaded (groupcache's Sink).
#[derive(Default)]
pub struct Sink {
    value: Option<(Bytes, Option<i64>)>,
    failure: Option<String>,
}

impl Sink {
    /// Stores the loaded value (copied); `ttl_ms <= 0`: no expiry. A second
    /// call replaces the first.
    pub fn set(&mut self, value: &[u8], ttl_ms: i64) -> Result<(), Error> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_LEN}-byte limit",
                value.len()
            )));
        }
        self.value = Some((Bytes::copy_from_slice(value), clock::expiry_after_ms(ttl_ms)));
        Ok(())
    }

    /// As `set`, taking ownership of the bytes and an absolute expiry.
    pub fn set_bytes(&mut self, value: Bytes, expire_unix_nanos: Option<i64>) {
        self.value = Some((value, expire_unix_nanos));
    }

    /// Records why the load failed; the message reaches the caller.
    pub fn fail(&mut self, message: &str) {
        self.failure = Some(message.to_owned());
    }
}

/// Loads a missing key (groupcache's Getter). Called on the thread that
/// needs the value: a caller of `get`, or a server thread answering a peer.
pub trait Getter: Send + Sync {
    /// `Ok(())` after `sink.set`; `Err(Error::NotFound)` when the key does
    /// not exist; any other error is a failure. Neither is cached.
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error>;
}

impl<F> Getter for F
where
    F: Fn(&[u8], &mut Sink) -> Result<(), Error> + Send + Sync,
{
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        self(key, sink)
    }
}

/// Where a batch getter puts what it loaded: one slot per key of the call,
/// by index. A key whose slot it leaves unset does not exist.
pub struct BatchSink {
    slots: Vec<Slot>,
}

#[derive(Default)]
enum Slot {
    #[default]
    Unset,
    Value(Bytes, Option<i64>),
    Failed(String),
}

impl BatchSink {
    fn new(n: usize) -> BatchSink {
        BatchSink {
            slots: (0..n).map(|_| Slot::Unset).collect(),
        }
    }

    /// The number of keys of the call (valid indexes are `0..len()`).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether the call has no keys (never the case for a real call).
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn slot(&mut self, index: usize) -> Result<&mut Slot, Error> {
        let n = self.slots.len();
        self.slots.get_mut(index).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "index {index} is not that of a key of this call ({n} keys)"
            ))
        })
    }

    /// Stores the value of key `index` (copied); `ttl_ms <= 0`: no expiry.
    /// A second call replaces the first; a key already failed stays failed.
    pub fn set(&mut self, index: usize, value: &[u8], ttl_ms: i64) -> Result<(), Error> {
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_LEN}-byte limit",
                value.len()
            )));
        }
        let expire = clock::expiry_after_ms(ttl_ms);
        self.set_bytes(index, Bytes::copy_from_slice(value), expire)
    }

    /// As `set`, taking ownership of the bytes and an absolute expiry.
    pub fn set_bytes(
        &mut self,
        index: usize,
        value: Bytes,
        expire_unix_nanos: Option<i64>,
    ) -> Result<(), Error> {
        let slot = self.slot(index)?;
        if !matches!(slot, Slot::Failed(_)) {
            *slot = Slot::Value(value, expire_unix_nanos);
        }
        Ok(())
    }

    /// Fails key `index` alone with `message` (it reaches that key's
    /// callers), even if a value was set for it.
    pub fn fail(&mut self, index: usize, message: &str) -> Result<(), Error> {
        *self.slot(index)? = Slot::Failed(message.to_owned());
        Ok(())
    }
}

/// Loads several missing keys in one call (a dataloader's batch function:
/// one `WHERE id IN (...)` instead of one query a key). Called on a thread
/// that needs the values (a caller of `get_many` or `get`, a thread of its
/// batch, or a server thread answering peers), with at most
/// `GroupOptions::batch_chunk_keys` keys, each missing, distinct, and
/// loaded by no other call at the time (single-flight per key).
pub trait BatchGetter: Send + Sync {
    /// `Ok(())`: each key as its slot says (`sink.set`: found;
    /// `sink.fail`: that key failed; unset: not found). `Err(NotFound)`:
    /// none of the keys exists. Any other error fails every key of the
    /// call. Failures and "not found" are not cached.
    fn get_many(&self, keys: &[&[u8]], sink: &mut BatchSink) -> Result<(), Error>;
}

impl<F> BatchGetter for F
where
    F: Fn(&[&[u8]], &mut BatchSink) -> Result<(), Error> + Send + Sync,
{
    fn get_many(&self, keys: &[&[u8]], sink: &mut BatchSink) -> Result<(), Error> {
        self(keys, sink)
    }
}

/// Keys a batch getter gets in one call, at most, by default.
pub const DEFAULT_BATCH_CHUNK_KEYS: usize = 256;
/// The largest `batch_chunk_keys` accepted.
pub const MAX_BATCH_CHUNK_KEYS: usize = 65_536;
/// Loads of one `get_many` that run at once, by default.
pub const DEFAULT_MISS_CONCURRENCY: usize = 16;
/// The largest `miss_concurrency` accepted.
pub const MAX_MISS_CONCURRENCY: usize = 1024;

/// A group's settings beyond name, size and getter.
#[derive(Clone)]
pub struct GroupOptions {
    /// How long a load may take before the callers waiting on it give up
    /// with `Error::Timeout` and the load is abandoned: detached, so the
    /// next get loads the key again, and never cached. `None` (the
    /// default, as golang/groupcache): no limit. The thread running the
    /// getter cannot be interrupted; its own caller waits for it.
    pub load_timeout: Option<Duration>,
    /// Loads the misses of a `get_many` (and of a peer's batch) several
    /// keys a call. With it and no getter, `get` calls it with one key.
    /// `None` (the default): misses load through the getter, one key a
    /// call, `miss_concurrency` at once.
    pub batch_getter: Option<Arc<dyn BatchGetter>>,
    /// The most keys one batch getter call gets (1 to
    /// `MAX_BATCH_CHUNK_KEYS`; default `DEFAULT_BATCH_CHUNK_KEYS`, 256):
    /// more misses are split into chunks of this size.
    pub batch_chunk_keys: usize,
    /// How many loads of one `get_many` run at once (1 to
    /// `MAX_MISS_CONCURRENCY`; default `DEFAULT_MISS_CONCURRENCY`, 16):
    /// getter calls, or batch getter chunks. Fetches from owner peers run
    /// besides, one batch per peer, all at once.
    pub miss_concurrency: usize,
}

impl Default for GroupOptions {
    fn default() -> Self {
        GroupOptions {
            load_timeout: None,
            batch_getter: None,
            batch_chunk_keys: DEFAULT_BATCH_CHUNK_KEYS,
            miss_concurrency: DEFAULT_MISS_CONCURRENCY,
        }
    }
}

impl std::fmt::Debug for GroupOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupOptions")
            .field("load_timeout", &self.load_timeout)
            .field("batch_getter", &self.batch_getter.as_ref().map(|_| "set"))
            .field("batch_chunk_keys", &self.batch_chunk_keys)
            .field("miss_concurrency", &self.miss_concurrency)
            .finish()
    }
}

/// A value and its absolute expiry, as loads produce and share it.
#[derive(Clone, Debug)]
struct Loaded {
    value: Bytes,
    expire: Option<i64>,
}

impl From<Loaded> for PeerValue {
    fn from(l: Loaded) -> PeerValue {
        PeerValue {
            value: l.value,
            expire_unix_nanos: l.expire,
        }
    }
}

pub struct Group {
    name: String,
    getter: Option<Arc<dyn Getter>>,
    store: Store,
    /// Loads that run this node's getter. Requests from peers join these.
    local: Flight<Loaded>,
    /// Fetches from the owner. Kept apart so that a request from a peer
    /// never waits on a fetch that goes back out to a peer: two nodes that
    /// disagree on the owner would otherwise wait on each other.
    forward: Flight<Loaded>,
    picker: RwLock<Option<Arc<dyn PeerPicker>>>,
    counters: Counters,
    closed: AtomicBool,
    options: GroupOptions,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        // Distinct per thread; quality hardly matters for 1-in-10 sampling.
        let x = &RNG as *const _ as u64 ^ clock::now_unix_nanos() as u64;
        x | 1
    });
}

/// groupcache keeps 1 in 10 values fetched from peers in the hot cache.
fn one_in_ten() -> bool {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        x % 10 == 0
    })
}

fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "key of {} bytes exceeds the {MAX_KEY_LEN}-byte limit",
            key.len()
        )));
    }
    Ok(())
}

impl Group {
    /// A group bounded by `max_bytes` (main + hot, key + value bytes).
    /// Without a getter, misses are `Error::NotFound` (a set-only cache).
    pub fn new(name: &str, max_bytes: u64, getter: Option<Arc<dyn Getter>>) -> Arc<Group> {
        Group::with_options(name, max_bytes, getter, GroupOptions::default())
    }

    /// As `new`, with options (a load timeout).
    pub fn with_options(
        name: &str,
        max_bytes: u64,
        getter: Option<Arc<dyn Getter>>,
        options: GroupOptions,
    ) -> Arc<Group> {
        let flight = |what: &str| Flight::new(format!("cache {name:?} ({what})"), options.load_timeout);
        let group = Arc::new(Group {
            name: name.to_owned(),
            getter,
            store: Store::new(max_bytes),
            local: flight("local load"),
            forward: flight("fetch from the owner"),
            picker: RwLock::new(None),
            counters: Counters::default(),
            closed: AtomicBool::new(false),
            options,
        });
        let weak: std::sync::Weak<dyn fork::ForkLocks> = Arc::downgrade(&group) as _;
        fork::register(weak);
        group
    }

    /// The options the group was made with.
    pub fn options(&self) -> &GroupOptions {
        &self.options
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Installs (or clears) the peer picker; done by a pool when the group
    /// joins it.
    pub fn set_peer_picker(&self, picker: Option<Arc<dyn PeerPicker>>) {
        // The old picker is dropped after the lock is released: its drop
        // may close a pool.
        let old = std::mem::replace(
            &mut *self.picker.write().unwrap_or_else(|p| p.into_inner()),
            picker,
        );
        drop(old);
    }

    fn peers(&self) -> Option<Arc<dyn PeerPicker>> {
        self.picker.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn check_open(&self) -> Result<(), Error> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    fn count_hit<R>(&self, hit: Hit<R>) -> R {
        self.counters.inc(Self::hit_counter(&hit));
        hit.result
    }

    /// [`Group::count_hit`] for a hit path that has not counted its get
    /// yet: both in one update.
    #[inline]
    fn count_get_hit<R>(&self, hit: Hit<R>) -> R {
        self.counters.inc2(Counter::Gets, Self::hit_counter(&hit));
        hit.result
    }

    #[inline]
    fn hit_counter<R>(hit: &Hit<R>) -> Counter {
        match hit.kind {
            Kind::Main => Counter::HitsMain,
            Kind::Hot => Counter::HitsHot,
        }
    }

    /// The hit path alone: if `key` is in this node's cache, counts a get
    /// and a hit and returns `f(value)`. Never loads, never blocks on a
    /// load; `None` means "take the full path" (it may be a false miss).
    #[inline]
    pub fn get_cached_with<R>(&self, key: &[u8], pin: &Pin, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let hit = self.store.get_with(key, self.store.hash(key), pin, f)?;
        Some(self.count_get_hit(hit))
    }

    /// [`Group::get_cached_with`] sharing the value instead of copying it:
    /// the `Bytes` holds the cache's own copy (see `Store::get_shared`),
    /// which outlives eviction, removal and the group itself while held.
    #[inline]
    pub fn get_cached_shared(&self, key: &[u8], pin: &Pin) -> Option<Bytes> {
        if self.closed.load(Ordering::Relaxed) {
            return None;
        }
        let hit = self.store.get_shared(key, self.store.hash(key), pin)?;
        Some(self.count_get_hit(hit))
    }

    /// Whether this node's cache holds a live (unexpired) value for `key`:
    /// never loads, never asks a peer, counts nothing. Authoritative (under
    /// the key's shard lock), so it may wait for a concurrent insert.
    pub fn contains(&self, key: &[u8]) -> Result<bool, Error> {
        self.check_open()?;
        check_key(key)?;
        Ok(self.store.get_locked(key, self.store.hash(key), |_| ()).is_some())
    }

    /// The full groupcache get: cache, then owner peer, then local getter.
    /// Calls `f` with the value (from the cache without an extra copy).
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<R, Error> {
        self.check_open()?;
        check_key(key)?;
        self.counters.inc(Counter::Gets);
        let hash = self.store.hash(key);
        let mut f = Some(f);
        {
            let pin = reclaim::pin();
            if let Some(hit) = self.store.get_with(key, hash, &pin, |v| (f.take().unwrap())(v)) {
                return Ok(self.count_hit(hit));
            }
        }
        let loaded = self.load(key, hash, true)?;
        Ok((f.take().unwrap())(&loaded.value))
    }

    /// The full get, returning a shared immutable value.
    pub fn get(&self, key: &[u8]) -> Result<Bytes, Error> {
        // Loaded values come back as `Bytes` already; copying them again
        // would waste a 10 MB load's worth of memory bandwidth.
        self.check_open()?;
        check_key(key)?;
        let hash = self.store.hash(key);
        {
            let pin = reclaim::pin();
            // A hit shares the cache's own copy (no copy of a large value).
            if let Some(hit) = self.store.get_shared(key, hash, &pin) {
                return Ok(self.count_get_hit(hit));
            }
        }
        self.counters.inc(Counter::Gets);
        Ok(self.load(key, hash, true)?.value)
    }

    /// Serves a peer's GET: answered from this node's cache or its own
    /// getter, never forwarded to another peer. Counts `server_requests`.
    pub fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        self.check_open()?;
        check_key(key)?;
        self.counters.inc(Counter::ServerRequests);
        self.counters.inc(Counter::Gets);
        let hash = self.store.hash(key);
        {
            let pin = reclaim::pin();
            if let Some(hit) = self.store.get_with(key, hash, &pin, Bytes::copy_from_slice) {
                let expire = hit.expire;
                let value = self.count_hit(hit);
                return Ok(PeerValue {
                    value,
                    expire_unix_nanos: expire,
                });
            }
        }
        Ok(self.load(key, hash, false)?.into())
    }

    /// A peer's GET answered from this node's cache alone, for a server
    /// that must not block (it runs on I/O threads): never loads, never
    /// waits for a load. `Ok(None)`: not cached, or a value longer than
    /// `max_len` (not copied here); take [`Group::get_for_peer`]. Counts
    /// `server_requests`, the get and the hit only when it answers, so the
    /// two calls together count a request once.
    pub fn get_cached_for_peer(&self, key: &[u8], max_len: usize) -> Result<Option<PeerValue>, Error> {
        self.check_open()?;
        check_key(key)?;
        let pin = reclaim::pin();
        let copy = |v: &[u8]| (v.len() <= max_len).then(|| Bytes::copy_from_slice(v));
        let Some(hit) = self.store.get_with(key, self.store.hash(key), &pin, copy) else {
            return Ok(None);
        };
        if hit.result.is_none() {
            return Ok(None);
        }
        self.counters.inc(Counter::ServerRequests);
        self.counters.inc(Counter::Gets);
        let expire = hit.expire;
        let value = self.count_hit(hit);
        Ok(value.map(|value| PeerValue {
            value,
            expire_unix_nanos: expire,
        }))
    }

    /// Gets many keys at once. Result `i` answers `keys[i]`, as `get`
    /// would (`Err(NotFound)` for a key that does not exist, an error for
    /// that key alone otherwise). Hits are answered first; the misses are
    /// grouped by owner: each owner peer is asked once for all of its keys,
    /// every peer at once (`PeerPicker::get_many_from`, on the caller's
    /// thread) and while this node loads its own keys (on a scoped
    /// thread), through the batch getter in chunks of
    /// `batch_chunk_keys` (else the getter, `miss_concurrency` keys at
    /// once). Single-flight holds per key, joined with every other get of
    /// it; so do `get`'s rules: a peer's "not found" is final, a failing
    /// peer's keys load here, 1 in 10 values from peers is kept hot.
    /// Blocks until every key is answered.
    pub fn get_many(&self, keys: &[&[u8]]) -> Vec<Result<Bytes, Error>> {
        self.many(keys, false, |l| l.value)
    }

    /// A peer's batch request: each key from this node's cache, else loaded
    /// here (the batch getter when set, in chunks; else the getter, with
    /// bounded concurrency), never forwarded to another peer (one hop).
    /// Single-flight per key, joined with every other get of the key.
    /// Result `i` answers `keys[i]`: Ok(value with expiry), Err(NotFound),
    /// Err(LoaderFailed(..)), Err(InvalidArgument(..)) for a bad key, ...
    /// Counts what get_for_peer counts, per key, plus one server batch.
    pub fn get_many_for_peer(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        self.count_server_batch();
        self.get_many_for_peer_uncounted(keys)
    }

    /// Counts one batch request from a peer. The peer server counts each
    /// batch it serves here (those whose keys are all cached never reach
    /// `get_many_for_peer`) and sends the misses to
    /// [`Self::get_many_for_peer_uncounted`].
    pub fn count_server_batch(&self) {
        self.counters.inc(Counter::ServerBatchRequests);
    }

    /// `get_many_for_peer` without counting a server batch (the caller did).
    pub fn get_many_for_peer_uncounted(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        self.many(keys, true, PeerValue::from)
    }

    fn load(&self, key: &[u8], hash: u64, may_forward: bool) -> Result<Loaded, Error> {
        self.counters.inc(Counter::Loads);
        let owner = if may_forward {
            self.peers().and_then(|p| p.pick_peer(key))
        } else {
            None
        };
        match owner {
            None => self.load_local(key, hash, true),
            Some(peer) => self.load_forward(key, hash, peer),
        }
    }

    /// The double-check inside a flight: another load may have filled the
    /// cache between our miss and our becoming leader.
    fn lookup_again(&self, key: &[u8], hash: u64) -> Option<Loaded> {
        self.counters.inc(Counter::InnerLookups);
        let hit = self.store.get_locked(key, hash, Bytes::copy_from_slice)?;
        self.counters.inc(match hit.kind {
            Kind::Main => Counter::InnerHitsMain,
            Kind::Hot => Counter::InnerHitsHot,
        });
        Some(Loaded {
            value: hit.result,
            expire: hit.expire,
        })
    }

    fn load_local(&self, key: &[u8], hash: u64, count_dedup: bool) -> Result<Loaded, Error> {
        let leader = match self.local.join(key, hash) {
            Role::Waited(r) => return r,
            Role::Leader(leader) => leader,
        };
        let result = match self.lookup_again(key, hash) {
            Some(hit) => Ok(hit),
            None => {
                if count_dedup {
                    self.counters.inc(Counter::LoadsDeduped);
                }
                let r = self.call_getter(key);
                self.counters.inc(if r.is_ok() {
                    Counter::LocalLoads
                } else {
                    Counter::LocalLoadErrs
                });
                r
            }
        };
        leader.finish(result.clone(), |v| {
            self.store.insert(key, &v.value, v.expire, Kind::Main);
        });
        result
    }

    fn load_forward(&self, key: &[u8], hash: u64, peer: Arc<dyn PeerGetter>) -> Result<Loaded, Error> {
        // Held until finish; should the peer client or the store panic, its
        // Drop still completes the call, so the key is never left hung.
        let leader = match self.forward.join(key, hash) {
            Role::Waited(r) => return r,
            Role::Leader(leader) => leader,
        };
        let mut keep_hot = false;
        let result = match self.lookup_again(key, hash) {
            Some(hit) => Ok(hit),
            None => {
                self.counters.inc(Counter::LoadsDeduped);
                match peer.get(&self.name, key) {
                    Ok(pv) => {
                        self.counters.inc(Counter::PeerLoads);
                        keep_hot = one_in_ten();
                        Ok(Loaded {
                            value: pv.value,
                            expire: pv.expire_unix_nanos,
                        })
                    }
                    // The owner's getter said so: final, no local re-load.
                    Err(PeerError::NotFound) => {
                        self.counters.inc(Counter::PeerLoads);
                        Err(Error::NotFound)
                    }
                    // groupcache's rule: a failing peer means load locally.
                    // Per key at debug level only: the peer logs its own
                    // failing and recovering once (see peers::client).
                    Err(PeerError::Failed(m)) => {
                        self.counters.inc(Counter::PeerErrors);
                        log::debug!(
                            "cache {:?}: {m}; loading key {:?} here instead",
                            self.name,
                            lossy(key)
                        );
                        self.load_local(key, hash, false)
                    }
                }
            }
        };
        leader.finish(result.clone(), |v| {
            if keep_hot {
                self.store.insert(key, &v.value, v.expire, Kind::Hot);
            }
        });
        result
    }

    fn call_getter(&self, key: &[u8]) -> Result<Loaded, Error> {
        let Some(getter) = &self.getter else {
            // Only a batch getter: it loads the one key.
            return match &self.options.batch_getter {
                Some(bg) => self
                    .call_batch_getter(&**bg, &[key])
                    .pop()
                    .unwrap_or(Err(Error::NotFound)),
                None => Err(Error::NotFound),
            };
        };
        let mut sink = Sink::default();
        let r = catch_unwind(AssertUnwindSafe(|| getter.get(key, &mut sink)));
        match r {
            Err(panic) => {
                let msg = panic_message(&*panic);
                log::error!(
                    "cache {:?}: the getter panicked loading key {:?}: {msg}",
                    self.name,
                    lossy(key)
                );
                Err(Error::LoaderFailed(format!("getter panicked: {msg}")))
            }
            Ok(Err(Error::NotFound)) => Err(Error::NotFound),
            Ok(Err(Error::LoaderFailed(m))) => Err(Error::LoaderFailed(sink.failure.unwrap_or(m))),
            Ok(Err(e)) => Err(Error::LoaderFailed(sink.failure.unwrap_or_else(|| e.to_string()))),
            Ok(Ok(())) => match (sink.value, sink.failure) {
                (_, Some(m)) => Err(Error::LoaderFailed(m)),
                (Some((value, expire)), None) => Ok(Loaded { value, expire }),
                (None, None) => Err(Error::LoaderFailed(
                    "the getter returned OK without setting a value".into(),
                )),
            },
        }
    }

    /// Cancels caching by in-flight loads of `key`, then runs `then` while
    /// no load of it can cache: a set or remove is never overtaken by an
    /// older load.
    fn invalidate<R>(&self, key: &[u8], hash: u64, then: impl FnOnce() -> R) -> R {
        self.forward
            .invalidate(key, hash, || self.local.invalidate(key, hash, then))
    }

    /// Stores a value at the key's owner and in this node's cache (main if
    /// it owns the key, hot otherwise), then drops the copies other peers
    /// may hold in their hot caches, so that every node sees the new value
    /// once this returns. `ttl_ms <= 0`: no expiry.
    pub fn set(&self, key: &[u8], value: &[u8], ttl_ms: i64) -> Result<(), Error> {
        self.check_open()?;
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_LEN}-byte limit",
                value.len()
            )));
        }
        let expire = clock::expiry_after_ms(ttl_ms);
        let hash = self.store.hash(key);
        let picker = self.peers();
        let owner = picker.as_ref().and_then(|p| p.pick_peer(key));
        let kind = match &owner {
            None => Kind::Main,
            Some(peer) => {
                let pv = PeerValue {
                    value: Bytes::copy_from_slice(value),
                    expire_unix_nanos: expire,
                };
                if let Err(e) = peer.set(&self.name, key, &pv) {
                    self.counters.inc(Counter::PeerErrors);
                    // Our copy would now disagree with the owner's: drop it.
                    self.invalidate(key, hash, || self.store.remove(key));
                    let msg = peer_msg(e);
                    log::debug!(
                        "cache {:?}: storing key {:?} at its owner failed: {msg}",
                        self.name,
                        lossy(key)
                    );
                    return Err(Error::PeerFailed(format!("set at {}: {msg}", peer.url())));
                }
                Kind::Hot
            }
        };
        self.invalidate(key, hash, || self.store.insert(key, value, expire, kind));
        if let Some(picker) = picker {
            self.broadcast_remove(&*picker, key, owner.as_ref());
        }
        Ok(())
    }

    /// Removes `key` locally, at its owner, then at every other peer (their
    /// hot caches). Returns once each has answered or timed out; fails with
    /// `PeerFailed` if the owner could not be reached (it may still hold
    /// the value). Other peers' failures are counted in `peer_errors`.
    pub fn remove(&self, key: &[u8]) -> Result<(), Error> {
        self.check_open()?;
        check_key(key)?;
        let hash = self.store.hash(key);
        self.invalidate(key, hash, || self.store.remove(key));
        let Some(picker) = self.peers() else { return Ok(()) };
        let owner = picker.pick_peer(key);
        let mut result = Ok(());
        if let Some(owner) = &owner {
            if let Err(e) = owner.remove(&self.name, key) {
                self.counters.inc(Counter::PeerErrors);
                let msg = peer_msg(e);
                log::debug!(
                    "cache {:?}: removing key {:?} at its owner failed: {msg}",
                    self.name,
                    lossy(key)
                );
                result = Err(Error::PeerFailed(format!("remove at {}: {msg}", owner.url())));
            }
        }
        self.broadcast_remove(&*picker, key, owner.as_ref());
        // Again, now that the owner has dropped it: a get here that started
        // after the first invalidation fetched the old value from the owner
        // and may have kept it hot. Fetches still in flight are marked not
        // to cache; later ones see the owner's new state.
        if owner.is_some() {
            self.invalidate(key, hash, || self.store.remove(key));
        }
        result
    }

    /// Drops `key` at every peer but `skip` (the owner, already handled):
    /// best effort, failures counted in `peer_errors`.
    fn broadcast_remove(&self, picker: &dyn PeerPicker, key: &[u8], skip: Option<&Arc<dyn PeerGetter>>) {
        for peer in picker.all_peers() {
            if skip.is_some_and(|o| o.url() == peer.url()) {
                continue;
            }
            if let Err(e) = peer.remove(&self.name, key) {
                self.counters.inc(Counter::PeerErrors);
                log::debug!(
                    "cache {:?}: dropping key {:?} at a peer failed: {}",
                    self.name,
                    lossy(key),
                    peer_msg(e)
                );
            }
        }
    }

    /// A peer's PUT: it believes this node owns the key. The key and value
    /// limits apply as to a local set (`InvalidArgument` past them).
    pub fn set_from_peer(&self, key: &[u8], value: PeerValue) -> Result<(), Error> {
        check_key(key)?;
        if value.value.len() > MAX_VALUE_LEN {
            return Err(Error::InvalidArgument(format!(
                "value of {} bytes exceeds the {MAX_VALUE_LEN}-byte limit",
                value.value.len()
            )));
        }
        let hash = self.store.hash(key);
        self.invalidate(key, hash, || {
            self.store
                .insert(key, &value.value, value.expire_unix_nanos, Kind::Main)
        });
        Ok(())
    }

    /// A peer's DELETE: drops the key here, and keeps in-flight loads of it
    /// from caching what they load. A key over the limit is refused
    /// (`InvalidArgument`; it cannot be cached anyway).
    pub fn remove_from_peer(&self, key: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        let hash = self.store.hash(key);
        self.invalidate(key, hash, || self.store.remove(key));
        Ok(())
    }

    pub fn stats(&self) -> Stats {
        let mut s = Stats::new(&self.counters, self.store.stats());
        if let Some(p) = self.peers() {
            (s.peers, s.membership_changes) = p.membership();
        }
        s
    }

    /// Marks the group closed: later calls return `Error::Closed`; calls
    /// already inside finish normally.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.set_peer_picker(None);
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn max_bytes(&self) -> u64 {
        self.store.max_bytes()
    }
}

impl fork::ForkLocks for Group {
    fn lock_for_fork(&self, guards: &mut fork::Guards) {
        // The order the code nests them in: the forward flight (invalidate)
        // before the local one, a flight (finish) before the store. The
        // picker's lock is never held with another.
        // SAFETY: (all four) the registry holds this group alive until the
        // guards are dropped.
        unsafe {
            self.forward.lock_for_fork(guards);
            self.local.lock_for_fork(guards);
            self.store.lock_for_fork(guards);
            guards.keep(self.picker.write().unwrap_or_else(|p| p.into_inner()));
        }
    }
}

/// A key for a log message: text as far as it is UTF-8 (formatted with
/// `{:?}`, so control characters are escaped).
fn lossy(key: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(key)
}

fn peer_msg(e: PeerError) -> String {
    match e {
        PeerError::NotFound => "not found".into(),
        PeerError::Failed(m) => m,
    }
}
