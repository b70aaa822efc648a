//! Path unescaping (the server's) and escaping (the client's): unescape
//! never panics and never grows its input; escape then unescape is the
//! identity on any bytes; what unescapes re-escapes to a string that
//! unescapes the same.
#![no_main]

use groupcache::peers::escape::{escape, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = unescape(data) {
        assert!(v.len() <= data.len());
        assert_eq!(unescape(escape(&v).as_bytes()).unwrap(), v);
    }
    let e = escape(data);
    assert!(e
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)));
    assert_eq!(unescape(e.as_bytes()).unwrap(), data);
});
