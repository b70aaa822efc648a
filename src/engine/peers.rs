//! How the engine sees other nodes: groupcache's PeerPicker / ProtoGetter.
//! The engine owns these traits; `crate::peers` implements them over HTTP.

use std::sync::Arc;

use bytes::Bytes;

/// A value fetched from, or sent to, a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerValue {
    pub value: Bytes,
    /// Absolute expiry in Unix nanoseconds (mailgun/groupcache's `expire`);
    /// `None`: no expiry.
    pub expire_unix_nanos: Option<i64>,
}

/// Why a peer call did not produce a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerError {
    /// The owner's getter said the key does not exist (HTTP 404). Final.
    NotFound,
    /// Anything else: unreachable, timeout, 5xx, a malformed answer.
    Failed(String),
}

/// One remote node, as seen from this one.
pub trait PeerGetter: Send + Sync {
    /// Fetches `key` of `group` from this peer. May block up to the peer
    /// timeout. The peer answers from its cache or its own getter and never
    /// forwards the request again.
    fn get(&self, group: &str, key: &[u8]) -> Result<PeerValue, PeerError>;
    /// Fetches several keys of `group` from this peer (the owner of every
    /// one of them) in as few requests as it can. Result `i` answers
    /// `keys[i]`; the result has `keys.len()` entries. May block up to the
    /// peer timeout. The default asks `get` for each key in turn; the HTTP
    /// peer overrides it (one batch request to our nodes, concurrent GETs
    /// to golang/groupcache nodes, which have no batch route).
    fn get_many(&self, group: &str, keys: &[&[u8]]) -> Vec<Result<PeerValue, PeerError>> {
        keys.iter().map(|k| self.get(group, k)).collect()
    }
    /// Stores a value at this peer (mailgun's PUT).
    fn set(&self, group: &str, key: &[u8], value: &PeerValue) -> Result<(), PeerError>;
    /// Removes a key at this peer (mailgun's DELETE).
    fn remove(&self, group: &str, key: &[u8]) -> Result<(), PeerError>;
    /// The peer's base URL, for messages.
    fn url(&self) -> &str;
}

/// Maps keys to their owners.
pub trait PeerPicker: Send + Sync {
    /// The owner of `key`, or `None` when this node owns it (or there are no
    /// peers).
    fn pick_peer(&self, key: &[u8]) -> Option<Arc<dyn PeerGetter>>;
    /// Every peer but this node, for broadcasting removes.
    fn all_peers(&self) -> Vec<Arc<dyn PeerGetter>>;
    /// (peers, membership changes) for the group's stats: distinct nodes
    /// in the membership, and how often it changed. None by default.
    fn membership(&self) -> (u64, u64) {
        (0, 0)
    }
}
