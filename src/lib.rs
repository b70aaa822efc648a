//! groupcache: a caching and cache-filling library that shards keys across
//! its peers, after golang/groupcache, shipped as a C-ABI shared library.
//!
//! Layers, with dependencies pointing one way:
//! - [`engine`]: the group (load algorithm), byte-bounded caches,
//!   single-flight, stats. No FFI, no I/O; it knows peers only through
//!   [`engine::PeerPicker`].
//! - [`ring`]: golang/groupcache's consistent hash.
//! - [`peers`]: the HTTP peer protocol (server, client, pool).
//! - [`ffi`]: the `extern "C"` shell the header is generated from.

pub mod engine;
pub mod ffi;
pub mod peers;
pub mod ring;
