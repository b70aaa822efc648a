//! The groupcache engine: no FFI, no I/O.

pub mod clock;
mod error;
pub mod fork;
pub mod group;
pub mod peers;
pub mod reclaim;
pub mod singleflight;
mod stats;
pub mod store;
mod tasks;

pub use error::{panic_message, Error};
pub use group::{
    BatchGetter, BatchSink, Getter, Group, GroupOptions, Sink, DEFAULT_BATCH_CHUNK_KEYS,
    DEFAULT_MISS_CONCURRENCY, MAX_BATCH_CHUNK_KEYS, MAX_KEY_LEN, MAX_MISS_CONCURRENCY, MAX_VALUE_LEN,
};
pub use peers::{PeerBatch, PeerError, PeerGetter, PeerPicker, PeerValue};
pub use stats::Stats;
