//! A group: one named cache with its getter (groupcache's Group).
//! API frozen first so the peers layer can be written against it; the bodies
//! land with the engine.
#![allow(unused)]

use std::sync::Arc;

use bytes::Bytes;

use super::{Error, PeerPicker, PeerValue};

/// Where a getter puts the value it loaded (groupcache's Sink).
pub struct Sink {
    pub(crate) value: Option<(Bytes, Option<i64>)>,
    pub(crate) failure: Option<String>,
}

impl Sink {
    /// Stores the loaded value; `ttl_ms <= 0`: no expiry.
    pub fn set(&mut self, value: &[u8], ttl_ms: i64) {
        todo!()
    }
    /// Records why the load failed.
    pub fn fail(&mut self, message: &str) {
        todo!()
    }
}

/// Loads a missing key (groupcache's Getter).
pub trait Getter: Send + Sync {
    /// `Ok(())` after `sink.set`; `Err(Error::NotFound)` when the key does not
    /// exist; any other error is a failure.
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error>;
}

/// groupcache's Stats plus both caches' CacheStats.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub gets: u64,
    pub cache_hits: u64,
    pub peer_loads: u64,
    pub peer_errors: u64,
    pub loads: u64,
    pub loads_deduped: u64,
    pub local_loads: u64,
    pub local_load_errs: u64,
    pub server_requests: u64,
    pub main_bytes: u64,
    pub main_items: u64,
    pub main_gets: u64,
    pub main_hits: u64,
    pub main_evictions: u64,
    pub hot_bytes: u64,
    pub hot_items: u64,
    pub hot_gets: u64,
    pub hot_hits: u64,
    pub hot_evictions: u64,
}

pub struct Group {}

impl Group {
    pub fn new(name: &str, max_bytes: u64, getter: Option<Arc<dyn Getter>>) -> Arc<Group> {
        todo!()
    }
    pub fn name(&self) -> &str {
        todo!()
    }
    /// Installs (or clears) the peer picker; done by a pool when the group
    /// joins it.
    pub fn set_peer_picker(&self, picker: Option<Arc<dyn PeerPicker>>) {
        todo!()
    }
    /// The full groupcache load: cache, then owner peer, then local getter.
    pub fn get(&self, key: &[u8]) -> Result<Bytes, Error> {
        todo!()
    }
    /// Serves a peer's GET: answered from this node's cache or its own
    /// getter, never forwarded to another peer. Counts `server_requests`.
    pub fn get_for_peer(&self, key: &[u8]) -> Result<PeerValue, Error> {
        todo!()
    }
    /// A peer's PUT: stores the value locally (main cache).
    pub fn set_from_peer(&self, key: &[u8], value: PeerValue) {
        todo!()
    }
    /// A peer's DELETE: drops the key locally (and cancels in-flight loads'
    /// results from being cached).
    pub fn remove_from_peer(&self, key: &[u8]) {
        todo!()
    }
    /// Set at the owner and locally; `ttl_ms <= 0`: no expiry.
    pub fn set(&self, key: &[u8], value: &[u8], ttl_ms: i64) -> Result<(), Error> {
        todo!()
    }
    /// Remove locally, at the owner, then at every peer.
    pub fn remove(&self, key: &[u8]) -> Result<(), Error> {
        todo!()
    }
    pub fn stats(&self) -> Stats {
        todo!()
    }
    /// Marks the group closed: later calls return `Error::Closed`.
    pub fn close(&self) {
        todo!()
    }
}
