//! Raw bytes as one client connection to a peer server that requires
//! signed requests (a shared secret): the header parsing, the time and MAC
//! checks before the body is read, the body digest and the replay cache
//! after it, then routing and the engine as in `http_request`. The seeds
//! (fuzz/seeds/http_request_signed/, written by the test
//! `write_signed_fuzz_seeds`) carry valid signatures for the server's
//! fixed clock and node, so mutations start from requests that get through.
//!
//! Checks: no panic or hang; the output is HTTP responses; and the same
//! input served under another secret gets no request past authentication
//! (none reaches a group lookup, the engine's counters do not move): the
//! fuzzer cannot forge a MAC, so anything that got through there would be
//! a bypass.
#![no_main]

use std::sync::{Arc, OnceLock};

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::fuzzing::serve_raw_signed;
use libfuzzer_sys::fuzz_target;

/// The secret the seeds are signed with.
const SECRET: &[u8] = b"fuzz-secret";

struct Loader;

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        if key.starts_with(b"missing") {
            return Err(Error::NotFound);
        }
        let mut v = b"v:".to_vec();
        v.extend_from_slice(key);
        sink.set(&v, 0)
    }
}

fn group() -> &'static Arc<Group> {
    static G: OnceLock<Arc<Group>> = OnceLock::new();
    G.get_or_init(|| Group::new("g", 64 << 10, Some(Arc::new(Loader))))
}

fn is_http(out: &[u8]) -> bool {
    out.is_empty() || out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 ")
}

fuzz_target!(|data: &[u8]| {
    let (out, _) = serve_raw_signed(group(), data, SECRET);
    assert!(
        is_http(&out),
        "not an HTTP response: {:?}",
        &out[..out.len().min(64)]
    );
    let before = group().stats();
    let (out, reached) = serve_raw_signed(group(), data, b"not the secret");
    assert!(
        is_http(&out),
        "not an HTTP response: {:?}",
        &out[..out.len().min(64)]
    );
    assert_eq!(reached, 0, "a request got past authentication without the secret");
    assert_eq!(
        group().stats(),
        before,
        "the engine was reached without the secret"
    );
    let s = group().stats();
    assert!(s.main_bytes + s.hot_bytes <= 64 << 10, "{s:?}");
});
