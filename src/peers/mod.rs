//! The HTTP peer protocol: golang/groupcache's `HTTPPool`, with mailgun's
//! set and remove, interoperable with Go nodes.
//!
//! # The protocol
//!
//! - Ownership: golang/groupcache's consistent hash (crate::ring): crc32
//!   (IEEE) of `decimal(i) + peer URL` for i in 0..replicas (default 50),
//!   sorted; a key belongs to the first point >= crc32(key), wrapping.
//! - Get: `GET {peer}{base path}{escaped group}/{escaped key}` (base path
//!   `/_groupcache/` by default), answered with `Content-Type:
//!   application/x-protobuf` and a `GetResponse` body (`bytes value = 1;
//!   double minute_qps = 2; int64 expire = 3`, the last mailgun's expiry
//!   in Unix nanoseconds, sent when the value has a TTL). "Not found" is
//!   404 and final; other failures are 5xx.
//! - Escaping ([`escape`]): our client percent-encodes every byte outside
//!   `A-Za-z0-9-._~`; our server decodes `%XX` once and reads `+` as a
//!   space, as Go's client sends spaces. Group names cannot contain `/`;
//!   keys can.
//! - Set and remove: `PUT` with a protobuf `SetRequest` body (`string group
//!   = 1; string key = 2; bytes value = 3; int64 expire = 4`) and `DELETE`
//!   on the same path, as mailgun/groupcache. golang/groupcache nodes know
//!   neither, so set and remove reach our nodes only (see
//!   [`proto::PEER_HEADER`]).
//! - A peer that fails or times out: the get loads locally (groupcache's
//!   rule). Values fetched from a peer may be kept in the hot cache.
//!
//! - [`escape`]: group and key escaping in URLs.
//! - [`proto`]: the wire: the protobuf bodies (prost, declared by hand),
//!   the base path, header names and content types.
//! - [`client`]: [`HttpPeer`], the engine's `PeerGetter` over HTTP/1.1.
//! - `server`: the hyper server that answers peers, with its limits
//!   (connections, deadlines, body budget, worker threads).
//! - [`pool`]: [`Pool`], one node: server + membership + picker + groups.
//! - `tls`: https between nodes (rustls), optional mutual TLS, and the
//!   certificate files read again when they change.
//!
//! Where the time of a remote fetch goes decided the threading. On a
//! loopback or LAN the round trip is tens of microseconds, about what it
//! costs to wake a sleeping thread, so the design avoids handing a request
//! from thread to thread. The calling thread drives its own request over a
//! keep-alive connection of its own. The server serves every connection as
//! a task on the pool's runtime, so an idle or stalled connection costs a
//! socket and a small buffer, never a thread; the runtime thread the kernel
//! wakes for a request answers it when it is a cache hit, or a miss of a
//! group whose loads are fast (one at a time); other misses, whose getters
//! may block for seconds, go to a bounded pool of worker threads, at the
//! price of two more wake-ups. A fetch of the first kind wakes one thread
//! per side, as Go's goroutines do.

pub mod auth;
pub mod client;
pub mod dns;
pub mod escape;
pub mod metrics;
pub mod pool;
pub mod proto;
mod server;
mod tls;

#[cfg(test)]
mod tests;

/// Entry points for fuzz/ (not an API; may change at any time).
#[doc(hidden)]
pub mod fuzzing {
    pub use super::server::fuzzing::serve_raw_for_fuzzing as serve_raw;
    pub use super::server::fuzzing::serve_raw_signed_for_fuzzing as serve_raw_signed;
    pub use super::server::fuzzing::{FUZZ_MAX_BATCH_KEYS, FUZZ_NODE, FUZZ_NOW_MS};
}

pub use client::HttpPeer;
pub use pool::{Pool, PoolError, PoolOptions};

/// Checks a `tls_server_name` (for the C options' setter and environment).
pub(crate) fn check_tls_server_name(name: &str) -> Result<(), String> {
    tls::checked_server_name(name).map(|_| ())
}
