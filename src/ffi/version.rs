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

/// The major version of this header. 0.x releases may change the ABI
/// between minor versions, so the library's soname carries major.minor
/// (libgroupcache.so.0.1); from 1.0 on it carries the major alone.
pub const GROUPCACHE_VERSION_MAJOR: u32 = 0;
/// The minor version of this header.
pub const GROUPCACHE_VERSION_MINOR: u32 = 1;
/// The patch version of this header.
pub const GROUPCACHE_VERSION_PATCH: u32 = 0;
/// This header's version as one number, MAJOR * 1000000 + MINOR * 1000 +
/// PATCH (0.1.0 is 1000), for `#if` and for comparing with
/// cache_version_number() at run time.
pub const GROUPCACHE_VERSION_NUMBER: u32 =
    GROUPCACHE_VERSION_MAJOR * 1_000_000 + GROUPCACHE_VERSION_MINOR * 1_000 + GROUPCACHE_VERSION_PATCH;

// The header's macros are the constants above, which cbindgen can read
// (it cannot evaluate env!): the build fails when they disagree with
// Cargo.toml's version.
const fn parse(s: &str) -> u32 {
    let b = s.as_bytes();
    assert!(!b.is_empty() && b.len() <= 3, "a version part of 1 to 3 digits");
    let mut n = 0;
    let mut i = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "a version part of 1 to 3 digits");
        n = n * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    n
}
const _: () = assert!(
    GROUPCACHE_VERSION_MAJOR == parse(env!("CARGO_PKG_VERSION_MAJOR"))
        && GROUPCACHE_VERSION_MINOR == parse(env!("CARGO_PKG_VERSION_MINOR"))
        && GROUPCACHE_VERSION_PATCH == parse(env!("CARGO_PKG_VERSION_PATCH")),
    "Cargo.toml's version changed: set GROUPCACHE_VERSION_MAJOR/MINOR/PATCH in src/ffi/version.rs to it"
);

/// The library version, e.g. "0.1.0": a static string, never freed.
#[no_mangle]
pub extern "C" fn cache_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr() as *const c_char
}

/// The library's version as one number, as GROUPCACHE_VERSION_NUMBER is
/// the header's: a program can check at run time that the library it
/// loaded is the one it was compiled against, e.g.
/// `cache_version_number() / 1000 == GROUPCACHE_VERSION_NUMBER / 1000` for
/// the same major and minor version. Never fails; never blocks.
#[no_mangle]
pub extern "C" fn cache_version_number() -> u32 {
    GROUPCACHE_VERSION_NUMBER
}
