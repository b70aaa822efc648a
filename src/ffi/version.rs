//! The greeting from the article this project grew from, and the version.

use std::ffi::c_char;
use std::io::Write;

use super::boundary::guard;

/// Prints one greeting line to stdout (the demo of the Go c-shared article
/// this project grew from). Never fails; never blocks beyond the write.
#[no_mangle]
pub extern "C" fn say_hi() {
    guard(|| {
        let mut out = std::io::stdout().lock();
        // A closed stdout is not worth a crash.
        let _ = writeln!(
            out,
            "Hi from groupcache {} (Rust, through the C ABI)!",
            env!("CARGO_PKG_VERSION")
        );
        let _ = out.flush();
    })
}

/// The library version, e.g. "0.1.0": a static string, never freed.
#[no_mangle]
pub extern "C" fn cache_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}
