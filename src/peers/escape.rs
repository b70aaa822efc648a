//! Path escaping of group names and keys in peer URLs (the protocol is in
//! peers/mod.rs).
//!
//! Sending: every byte outside `A-Za-z0-9-._~` becomes `%XX` (upper-case
//! hex), so a space is `%20`, `+` is `%2B` and `/` is `%2F`. This is stricter
//! than Go's `url.QueryEscape` / `url.PathEscape` and every HTTP server
//! (Go's included) decodes it back to the same bytes.
//!
//! Receiving: `%XX` is decoded exactly once and `+` is read as a space,
//! because golang/groupcache's client escapes keys with `url.QueryEscape`,
//! which writes a space as `+` (and a real `+` as `%2B`). Any byte may come
//! out, UTF-8 or not: keys are bytes.

/// True for the bytes sent as they are (RFC 3986 "unreserved").
fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Appends `bytes`, escaped, to `out`.
pub fn escape_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len());
    for &b in bytes {
        if unreserved(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// `bytes`, escaped for one path segment.
pub fn escape(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + bytes.len() / 2);
    escape_into(bytes, &mut s);
    s
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Why a path segment could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadEscape {
    /// Byte offset of the offending `%`.
    pub at: usize,
}

/// Decodes `%XX` once and `+` as a space. A `%` not followed by two hex
/// digits is an error (Go's server answers 400 for it too).
pub fn unescape(s: &[u8]) -> Result<Vec<u8>, BadEscape> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex_value);
                let lo = s.get(i + 2).copied().and_then(hex_value);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(BadEscape { at: i }),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_but_unreserved() {
        assert_eq!(escape(b"aZ09-._~"), "aZ09-._~");
        assert_eq!(escape(b"a b+c/d%e"), "a%20b%2Bc%2Fd%25e");
        assert_eq!(escape("é".as_bytes()), "%C3%A9");
        assert_eq!(escape(b"\x00\xff"), "%00%FF");
        assert_eq!(escape(b""), "");
    }

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unescape(escape(&all).as_bytes()).unwrap(), all);
    }

    #[test]
    fn decodes_go_query_escape() {
        // url.QueryEscape("a b+c/d") == "a+b%2Bc%2Fd"
        assert_eq!(unescape(b"a+b%2Bc%2Fd").unwrap(), b"a b+c/d");
        // Decoded once only.
        assert_eq!(unescape(b"%2541").unwrap(), b"%41");
        assert_eq!(unescape(b"%c3%A9").unwrap(), "é".as_bytes());
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(unescape(b"%"), Err(BadEscape { at: 0 }));
        assert_eq!(unescape(b"ab%4"), Err(BadEscape { at: 2 }));
        assert_eq!(unescape(b"%zz"), Err(BadEscape { at: 0 }));
    }
}
