//! The HTTP peer protocol: golang/groupcache's `HTTPPool`, with mailgun's
//! set and remove, interoperable with Go nodes (API.md, "Peer protocol").
//!
//! - [`escape`]: group and key escaping in URLs.
//! - [`proto`]: the protobuf bodies (prost, declared by hand).
//! - [`client`]: [`HttpPeer`], the engine's `PeerGetter` over HTTP/1.1.
//! - `server`: the hyper server that answers peers.
//! - [`pool`]: [`Pool`], one node: server + membership + picker + groups.
//!
//! Where the time of a remote fetch goes decided the threading. On a
//! loopback or LAN the round trip is tens of microseconds, about what it
//! costs to wake a sleeping thread, so the design avoids handing a request
//! from thread to thread: the calling thread drives its own request over a
//! keep-alive connection of its own, and the server answers on the thread
//! that serves that connection, calling the engine inline. A fetch then
//! wakes exactly two threads, one per side, as Go's goroutines do.

pub mod auth;
pub mod client;
pub mod escape;
pub mod metrics;
pub mod pool;
pub mod proto;
mod server;

#[cfg(test)]
mod tests;

/// Entry points for fuzz/ (not an API; may change at any time).
#[doc(hidden)]
pub mod fuzzing {
    pub use super::server::serve_raw_for_fuzzing as serve_raw;
    pub use super::server::serve_raw_signed_for_fuzzing as serve_raw_signed;
    pub use super::server::{FUZZ_NODE, FUZZ_NOW_MS};
}

pub use client::HttpPeer;
pub use pool::{Pool, PoolError, PoolOptions};
