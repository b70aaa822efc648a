//! A batch request body as a peer may send it: `POST /_groupcache/g` with
//! the input as its body, through the server's real routing
//! (`groupcache::peers::fuzzing::serve_raw`), a real engine `Group` behind
//! it. No panic or hang; a body that decodes as a `GetManyRequest` of this
//! group within `max_batch_keys` gets a 200 whose `GetManyResponse` has one
//! result per key, each what the getter says of that key (or 413 past the
//! request's values budget); any other body gets a 400.
#![no_main]

use std::sync::{Arc, OnceLock};

use groupcache::engine::{Error, Getter, Group, Sink};
use groupcache::peers::fuzzing::FUZZ_MAX_BATCH_KEYS;
use groupcache::peers::proto::{GetManyRequest, GetManyResponse};
use libfuzzer_sys::fuzz_target;
use prost::Message;

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
        sink.set(&v, 0)
    }
}

fn group() -> &'static Arc<Group> {
    static G: OnceLock<Arc<Group>> = OnceLock::new();
    // Small, so evictions run too.
    G.get_or_init(|| Group::new("g", 64 << 10, Some(Arc::new(Loader))))
}

fuzz_target!(|data: &[u8]| {
    let mut req = format!(
        "POST /_groupcache/g HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    req.extend_from_slice(data);
    let out = groupcache::peers::fuzzing::serve_raw(group(), &req);
    assert!(out.starts_with(b"HTTP/1.1 "), "not an HTTP response: {out:?}");
    let status = &out[9..12];
    let head_end = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head")
        + 4;
    let body = &out[head_end..];
    let expected = GetManyRequest::decode(data)
        .ok()
        .filter(|m| (m.group.is_empty() || &m.group[..] == b"g") && m.keys.len() <= FUZZ_MAX_BATCH_KEYS);
    let Some(m) = expected else {
        assert_eq!(status, b"400", "{}", String::from_utf8_lossy(&out));
        return;
    };
    assert_eq!(status, b"200", "{}", String::from_utf8_lossy(&out));
    let r = GetManyResponse::decode(body).expect("the answer decodes");
    assert_eq!(r.results.len(), m.keys.len());
    // The values' budget: the request's, within the server's max_body_bytes
    // (64 KiB in the fuzzing server).
    let budget = match m.max_response_bytes {
        0 => 64 << 10,
        n => n.min(64 << 10) as usize,
    };
    let mut values = 0usize;
    for (k, r) in m.keys.iter().zip(&r.results) {
        let fits = values + 2 + k.len() <= budget;
        if k.starts_with(b"missing") {
            assert_eq!((r.status, &r.error[..]), (404, "not found"), "{k:?}");
        } else if k.starts_with(b"fail") {
            assert_eq!((r.status, &r.error[..]), (500, "loader failed"), "{k:?}");
        } else if !fits {
            assert_eq!(r.status, 413, "{k:?}");
            assert!(r.value.is_empty());
        } else {
            values += 2 + k.len();
            assert_eq!(r.status, 0, "{k:?}: {}", r.error);
            assert_eq!(&r.value[..], &[&b"v:"[..], k].concat()[..]);
            assert_eq!(r.expire, 0);
        }
    }
    let s = group().stats();
    assert!(s.main_bytes + s.hot_bytes <= 64 << 10, "{s:?}");
});
