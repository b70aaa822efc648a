//! Raw bytes as one client connection to the peer server: HTTP/1.1 parsing
//! (hyper with the server's settings), routing, unescaping, SetRequest
//! decoding, the engine's peer entry points. Every connection must end
//! (no hang), and whatever the server wrote must be HTTP responses.
#![no_main]

use std::sync::{Arc, OnceLock};

use groupcache::engine::{Error, Getter, Group, Sink};
use libfuzzer_sys::fuzz_target;

struct Loader;

impl Getter for Loader {
    fn get(&self, key: &[u8], sink: &mut Sink) -> Result<(), Error> {
        if key.starts_with(b"missing") {
            return Err(Error::NotFound);
        }
        if key.starts_with(b"fail") {
            return Err(Error::LoaderFailed("no".into()));
        }
        let mut v = b"v:".to_vec();
        v.extend_from_slice(key);
        sink.set(&v, if key.starts_with(b"ttl") { 1000 } else { 0 })
    }
}

fn group() -> &'static Arc<Group> {
    static G: OnceLock<Arc<Group>> = OnceLock::new();
    // Small, so evictions run too.
    G.get_or_init(|| Group::new("g", 64 << 10, Some(Arc::new(Loader))))
}

fuzz_target!(|data: &[u8]| {
    let out = groupcache::peers::fuzzing::serve_raw(group(), data);
    if !out.is_empty() {
        // HTTP/1.0 requests get HTTP/1.0 answers.
        assert!(
            out.starts_with(b"HTTP/1.1 ") || out.starts_with(b"HTTP/1.0 "),
            "not an HTTP response: {:?}",
            &out[..out.len().min(64)]
        );
    }
    assert!(
        !out.windows(19).any(|w| w == b"the engine panicked"),
        "the engine panicked"
    );
    let s = group().stats();
    assert!(s.main_bytes + s.hot_bytes <= 64 << 10, "{s:?}");
});
