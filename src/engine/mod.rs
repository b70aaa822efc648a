//! The groupcache engine: no FFI, no I/O.

mod error;
pub mod group;
pub mod peers;

pub use error::Error;
pub use group::{Getter, Group, Sink, Stats};
pub use peers::{PeerError, PeerGetter, PeerPicker, PeerValue};
