//! Optional peer authentication under a shared secret.
//!
//! Each request carries `x-groupcache-auth: <unix seconds>.<hex HMAC-SHA256
//! of "METHOD path seconds" under the secret>`. The server accepts a
//! signature from within `WINDOW_SECS` of its clock, compared in constant
//! time, and answers anything else with a bare 401: the request learns
//! nothing, not even whether the group exists. A sniffed header does not
//! reveal the secret; it can be replayed for the same method and path only
//! within the window. Go groupcache nodes cannot sign: a cluster with a
//! secret is a cluster of our nodes.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const AUTH_HEADER: &str = "x-groupcache-auth";

/// How far a request's clock may be from the server's.
pub const WINDOW_SECS: u64 = 300;

fn mac(secret: &[u8], method: &str, path: &str, secs: u64) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    m.update(method.as_bytes());
    m.update(b" ");
    m.update(path.as_bytes());
    m.update(b" ");
    m.update(secs.to_string().as_bytes());
    m
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The header value for a request.
pub fn sign(secret: &[u8], method: &str, path: &str, secs: u64) -> String {
    let tag = mac(secret, method, path, secs).finalize().into_bytes();
    let mut out = format!("{secs}.");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Whether `header` is a valid signature of this request now.
pub fn verify(secret: &[u8], method: &str, path: &str, header: Option<&[u8]>, now: u64) -> bool {
    let Some(h) = header.and_then(|h| std::str::from_utf8(h).ok()) else {
        return false;
    };
    let Some((secs, hex)) = h.split_once('.') else {
        return false;
    };
    let Ok(secs) = secs.parse::<u64>() else {
        return false;
    };
    if secs.abs_diff(now) > WINDOW_SECS || hex.len() != 64 {
        return false;
    }
    let mut tag = [0u8; 32];
    for (i, b) in tag.iter_mut().enumerate() {
        match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(v) => *b = v,
            Err(_) => return false,
        }
    }
    // verify_slice compares in constant time.
    mac(secret, method, path, secs).verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_for_their_request_secret_and_time() {
        let now = 1_800_000_000;
        let h = sign(b"s3cret", "GET", "/_groupcache/g/k", now);
        let ok = |secret: &[u8], m: &str, p: &str, t| verify(secret, m, p, Some(h.as_bytes()), t);
        assert!(ok(b"s3cret", "GET", "/_groupcache/g/k", now));
        assert!(ok(b"s3cret", "GET", "/_groupcache/g/k", now + WINDOW_SECS));
        assert!(
            !ok(b"s3cret", "GET", "/_groupcache/g/k", now + WINDOW_SECS + 1),
            "too old"
        );
        assert!(!ok(b"other", "GET", "/_groupcache/g/k", now), "another secret");
        assert!(
            !ok(b"s3cret", "DELETE", "/_groupcache/g/k", now),
            "another method"
        );
        assert!(!ok(b"s3cret", "GET", "/_groupcache/g/x", now), "another path");
        for bad in [
            "",
            "x",
            "1.2",
            "1800000000.zz",
            &h[..h.len() - 1],
            &format!("{h}0"),
        ] {
            assert!(
                !verify(b"s3cret", "GET", "/_groupcache/g/k", Some(bad.as_bytes()), now),
                "{bad:?}"
            );
        }
        assert!(!verify(b"s3cret", "GET", "/_groupcache/g/k", None, now));
    }
}
