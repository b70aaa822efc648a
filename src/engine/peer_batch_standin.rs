//! A stand-in for `Group::get_many_for_peer` until the `batch` branch (the
//! engine's batch path) lands: the lead deletes this file at merge (see
//! /work/notes/batch-interface.md). A loop over `get_for_peer`, so the
//! peer server's batch route works and is tested meanwhile.

use super::group::Group;
use super::{Error, PeerValue};

impl Group {
    /// A peer's batch request: each key from this node's cache, else loaded
    /// here (the batch getter when set, in chunks; else the getter, with
    /// bounded concurrency), never forwarded to another peer (one hop).
    /// Single-flight per key, joined with every other get of the key.
    /// Result `i` answers `keys[i]`: Ok(value with expiry), Err(NotFound),
    /// Err(LoaderFailed(..)), Err(InvalidArgument(..)) for a bad key, ...
    /// Counts what get_for_peer counts, per key, plus one server batch.
    ///
    /// (Stand-in: one `get_for_peer` per key, in turn; no batch counter.)
    pub fn get_many_for_peer(&self, keys: &[&[u8]]) -> Vec<Result<PeerValue, Error>> {
        keys.iter().map(|k| self.get_for_peer(k)).collect()
    }
}
