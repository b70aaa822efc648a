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

// Handles given to C pack a 32-bit generation and a 32-bit slot into one
// pointer-sized integer (ffi/handles.rs), and the cache tables keep a hash
// tag in the top 16 bits of each 64-bit entry address (engine/store.rs).
#[cfg(not(target_pointer_width = "64"))]
compile_error!(
    "groupcache supports 64-bit targets only: its C handles pack a 32-bit generation and a 32-bit \
     slot into a pointer-sized integer, and its cache tables tag 48-bit entry addresses"
);

pub mod engine;
pub mod ffi;
pub mod peers;
pub mod ring;
