#![allow(non_camel_case_types)]
//! The `extern "C"` shell the header is generated from: a thin layer over
//! the engine and peers. One module per C object, plus the status enum,
//! the panic boundary and the handle table they share.

pub(crate) mod boundary;
pub mod cache;
pub(crate) mod handles;
pub mod log;
pub mod lookup;
pub mod pool;
pub mod sink;
pub mod status;
pub mod value;
pub mod version;
