//! The groupcache engine: no FFI, no I/O.

pub mod clock;
mod error;
pub mod fork;
pub mod group;
pub mod peers;
// Deleted at merge: the `batch` branch defines Group::get_many_for_peer.
mod peer_batch_standin;
pub mod reclaim;
pub mod singleflight;
mod stats;
pub mod store;

pub use error::{panic_message, Error};
pub use group::{Getter, Group, GroupOptions, Sink, MAX_KEY_LEN, MAX_VALUE_LEN};
pub use peers::{PeerError, PeerGetter, PeerPicker, PeerValue};
pub use stats::Stats;
