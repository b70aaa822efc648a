//! The HTTP peer protocol: golang/groupcache's `HTTPPool`, with mailgun's
//! set and remove, interoperable with Go nodes (API.md, "Peer protocol").
//!
//! - [`escape`]: group and key escaping in URLs.
//! - [`proto`]: the protobuf bodies (prost, declared by hand).
//! - [`client`]: [`HttpPeer`], the engine's `PeerGetter` over HTTP/1.1.
//! - `server`: the hyper server that answers peers.
//! - [`pool`]: [`Pool`], one node: server + membership + picker + groups.

pub mod client;
pub mod escape;
pub mod pool;
pub mod proto;
mod server;

#[cfg(test)]
mod tests;

pub use client::HttpPeer;
pub use pool::{Pool, PoolError, PoolOptions};
