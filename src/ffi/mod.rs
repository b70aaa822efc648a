#![allow(non_camel_case_types)]
//! The `extern "C"` shell the header is generated from: a thin layer over
//! the engine and peers. One module per C object, plus the status enum,
//! the panic boundary and the handle table they share.

// The order of these modules is the order of the header's functions
// (cbindgen follows it); blank lines keep rustfmt from re-sorting them.
pub mod status; // cache_last_error
pub mod version; // say_hi, cache_version

pub mod cache; // cache_new ... cache_stats_get

pub mod options; // cache_options: what cache_new_with_options takes

pub mod value; // what cache_get returns

pub mod sink; // what a getter fills

pub mod pool_options; // cache_pool_options: what cache_pool_new_with_options takes

pub mod pool; // cluster nodes

pub mod lookup; // hit paths for language bindings

pub mod pyview; // the zero-copy hit path for CPython

pub mod log; // library messages to the application

pub(crate) mod boundary;
pub(crate) mod handles;
