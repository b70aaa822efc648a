//! Optional peer authentication under a shared secret.
//!
//! # The signature (version 2)
//!
//! Each request carries one header:
//!
//! ```text
//! x-groupcache-auth: v2.<ms>.<nonce>.<body-sha256>.<mac>
//! ```
//!
//! - `ms`: the sender's clock, Unix time in milliseconds (decimal);
//! - `nonce`: 16 lowercase hex digits, different for every request a
//!   process sends (so two identical requests in the same millisecond
//!   still differ);
//! - `body-sha256`: 64 lowercase hex digits, SHA-256 of the request body
//!   (of the empty string for GET and DELETE);
//! - `mac`: 64 lowercase hex digits, HMAC-SHA256 under the secret of
//!
//! ```text
//! groupcache-auth-v2 \n METHOD \n NODE \n TARGET \n ms \n nonce \n body-sha256
//! ```
//!
//!   (fields joined by `\n`, no trailing newline), where `TARGET` is the
//!   whole request target as sent, path and query (`/_groupcache/g/k`), and
//!   `NODE` is the node the request is addressed to: `host:port` of its URL
//!   in the peer list, host in lowercase, port 80 when the URL has none
//!   ([`node_of`]). The server compares with the same of its own URL (the
//!   pool's `self_url`, which must be its URL as the peer lists spell it;
//!   the `Host` header plays no part).
//!
//! # What the server checks, in order
//!
//! 1. Before the body is read ([`Verifier::check_head`]): the header is
//!    well-formed (anything else, including non-ASCII bytes, is a 401),
//!    `ms` is within [`WINDOW_MS`] (5 minutes) of the server's clock, and
//!    the MAC is right for this method, target, this node, and the claimed
//!    body digest (compared in constant time). A request that fails reads
//!    no body and never reaches the engine.
//! 2. After the body is read, within the usual body limits
//!    ([`Verifier::check_body`]): its SHA-256 is the claimed one, and, for
//!    every method but GET and HEAD, the signature was not seen before
//!    ([`ReplayCache`]): a replayed PUT or DELETE is a 401, like any other
//!    request that is not authentic and fresh.
//!
//! Everything refused gets the same bare 401: the request learns nothing,
//! not even whether the group exists.
//!
//! A GET may be replayed within the window: it is idempotent, and answers
//! only what a holder of the secret could read anyway; a sniffer sees the
//! answer the first time in any case. Go groupcache nodes cannot sign: a
//! cluster with a secret is a cluster of our nodes, all speaking the same
//! version (version 1 signed method, path and time only).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// How far a request's clock may be from the server's, in milliseconds.
pub const WINDOW_MS: u64 = 300_000;

/// Signatures of PUT and DELETE requests a server remembers (per pool), to
/// refuse replays: about 48 bytes each in the B-tree (measured), so 6 MiB
/// at most, and only while that many arrive within five minutes. See
/// [`ReplayCache`] for what happens when it is full.
pub const REPLAY_CAPACITY: usize = 1 << 17;

const VERSION: &str = "v2";
const DOMAIN: &[u8] = b"groupcache-auth-v2";

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The node a peer URL names, as signatures bind it: `host:port`, the
/// host in lowercase, port 80 (https: 443) when the URL has none. `None` if the URL has
/// no authority (the pool checks URLs before this is used).
pub fn node_of(url: &str) -> Option<String> {
    let uri: hyper::Uri = url.parse().ok()?;
    let auth = uri.authority()?;
    Some(format!(
        "{}:{}",
        auth.host().to_ascii_lowercase(),
        auth.port_u16().unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        })
    ))
}

/// Appends `bytes` to `out` in lowercase hex.
pub(crate) fn hex_into(bytes: &[u8], out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
}

/// SHA-256 of a body, in lowercase hex (the empty body's is computed once).
pub fn body_digest(body: &[u8]) -> String {
    fn hex(body: &[u8]) -> String {
        let mut s = String::with_capacity(64);
        hex_into(&Sha256::digest(body), &mut s);
        s
    }
    if body.is_empty() {
        static EMPTY: OnceLock<String> = OnceLock::new();
        return EMPTY.get_or_init(|| hex(b"")).clone();
    }
    hex(body)
}

/// A value no other request of this process used: a per-process random
/// start (mixed with the process id, so a forked child differs from its
/// parent) plus a counter.
pub fn next_nonce() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // std's RandomState is seeded from the OS's random source.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(now_ms());
        h.finish()
    });
    let n = start.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed));
    n ^ ((std::process::id() as u64) << 40)
}

fn mac(
    secret: &[u8],
    method: &str,
    node: &str,
    target: &str,
    ms: u64,
    nonce: &str,
    digest: &str,
) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    for field in [
        DOMAIN,
        method.as_bytes(),
        node.as_bytes(),
        target.as_bytes(),
        ms.to_string().as_bytes(),
        nonce.as_bytes(),
    ] {
        m.update(field);
        m.update(b"\n");
    }
    m.update(digest.as_bytes());
    m
}

/// The header value for a request to `node` (see [`node_of`]) with this
/// method, request target (path and query) and body digest
/// ([`body_digest`]), signed at `ms` with `nonce` ([`next_nonce`]).
pub fn sign(
    secret: &[u8],
    method: &str,
    node: &str,
    target: &str,
    digest: &str,
    ms: u64,
    nonce: u64,
) -> String {
    let nonce = format!("{nonce:016x}");
    let tag = mac(secret, method, node, target, ms, &nonce, digest)
        .finalize()
        .into_bytes();
    let mut out = String::with_capacity(3 + 20 + 17 + 65 + 65);
    out.push_str(VERSION);
    out.push('.');
    out.push_str(&ms.to_string());
    out.push('.');
    out.push_str(&nonce);
    out.push('.');
    out.push_str(digest);
    out.push('.');
    hex_into(&tag, &mut out);
    out
}

/// Why a request was refused (for the server's debug log; the request
/// itself only ever sees a bare 401).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No header, or not `v2.<ms>.<nonce>.<digest>.<mac>` as specified.
    Malformed,
    /// `ms` is more than [`WINDOW_MS`] away from the server's clock.
    Stale,
    /// The MAC is not that of this request to this node under the secret.
    BadSignature,
    /// The body is not the one the signature covers.
    BodyMismatch,
    /// A PUT or DELETE whose signature was already used (or is older than
    /// what the replay cache can still tell apart; see [`ReplayCache`]).
    Replayed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Malformed => "no or a malformed signature header",
            Refusal::Stale => "signed more than 5 minutes away from this node's clock",
            Refusal::BadSignature => "the signature does not match (another secret, request or node)",
            Refusal::BodyMismatch => "the body is not the one signed",
            Refusal::Replayed => "a replayed PUT or DELETE",
        })
    }
}

/// A request head whose signature verified: what [`Verifier::check_body`]
/// still needs.
pub struct SignedHead {
    digest: [u8; 64],
    ms: u64,
    /// The first half of the MAC: the replay cache's key.
    id: [u8; 16],
    once_only: bool,
}

/// Remembers the signatures of PUT and DELETE requests while they could
/// still pass the time check, to refuse a second use.
///
/// Bounded: at most [`REPLAY_CAPACITY`] entries, ordered by their signing
/// time. Entries older than the window are dropped as they expire. When it
/// is full, the entry with the oldest signing time is dropped and `floor`
/// rises to that time: from then on every PUT or DELETE signed at or
/// before `floor` is refused, so a dropped signature can never be
/// replayed. Only requests with a valid MAC are entered (a flood without
/// the secret cannot grow it). With clocks in step an entry lives about
/// five minutes, so 131072 entries fill only past about 430 valid
/// mutations a second; past that the effective window of PUT and DELETE
/// shrinks to about capacity ÷ rate (13 seconds at 10,000 a second), and a
/// sender whose clock lags the server's by more than that gets 401s. The
/// floor also covers a server clock that steps back: expired entries it
/// dropped stay refused.
pub struct ReplayCache {
    seen: BTreeSet<(u64, [u8; 16])>,
    floor: Option<u64>,
    capacity: usize,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> ReplayCache {
        ReplayCache {
            seen: BTreeSet::new(),
            floor: None,
            capacity: capacity.max(1),
        }
    }

    fn drop_first(&mut self) {
        if let Some((ms, _)) = self.seen.pop_first() {
            self.floor = Some(self.floor.map_or(ms, |f| f.max(ms)));
        }
    }

    /// Whether a signature made at `ms` is seen for the first time; records
    /// it if so.
    pub fn admit(&mut self, ms: u64, id: [u8; 16], now: u64) -> bool {
        // Entries whose requests the time check refuses by now.
        while self
            .seen
            .first()
            .is_some_and(|&(m, _)| m.saturating_add(WINDOW_MS) < now)
        {
            self.drop_first();
        }
        if self.floor.is_some_and(|f| ms <= f) || !self.seen.insert((ms, id)) {
            return false;
        }
        if self.seen.len() > self.capacity {
            self.drop_first();
        }
        true
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// A server's side: the secret, the node it is, the replay cache.
pub struct Verifier {
    secret: Box<[u8]>,
    node: String,
    replay: Mutex<ReplayCache>,
    clock: fn() -> u64,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        f.debug_struct("Verifier").field("node", &self.node).finish()
    }
}

/// Parses exactly `N` lowercase hex digits.
fn lower_hex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let s: [u8; N] = s.try_into().ok()?;
    s.iter()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
        .then_some(s)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        _ => b - b'a' + 10,
    }
}

impl Verifier {
    /// `node`: this server's own node, [`node_of`] its URL.
    pub fn new(secret: &[u8], node: &str) -> Verifier {
        Verifier::with_clock(secret, node, now_ms, REPLAY_CAPACITY)
    }

    /// With another clock and capacity (tests, fuzzing).
    pub fn with_clock(secret: &[u8], node: &str, clock: fn() -> u64, capacity: usize) -> Verifier {
        Verifier {
            secret: secret.into(),
            node: node.to_string(),
            replay: Mutex::new(ReplayCache::new(capacity)),
            clock,
        }
    }

    /// The node this server answers as.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Step 1, before the body is read: the header's form, its time, and
    /// its MAC over this request's method and target, this node and the
    /// claimed body digest.
    pub fn check_head(
        &self,
        method: &str,
        target: &str,
        header: Option<&[u8]>,
    ) -> Result<SignedHead, Refusal> {
        let h = header.ok_or(Refusal::Malformed)?;
        // Bytes throughout: a header may hold anything but NUL, CR and LF.
        let mut parts = h.split(|&b| b == b'.');
        let (Some(version), Some(ms), Some(nonce), Some(digest), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(Refusal::Malformed);
        };
        // Decimal, canonical (no sign, no leading zero), within u64.
        if version != VERSION.as_bytes()
            || ms.is_empty()
            || ms.len() > 19
            || (ms.len() > 1 && ms[0] == b'0')
            || !ms.iter().all(u8::is_ascii_digit)
        {
            return Err(Refusal::Malformed);
        }
        let ms = ms.iter().fold(0u64, |n, &d| n * 10 + (d - b'0') as u64);
        let nonce = lower_hex::<16>(nonce).ok_or(Refusal::Malformed)?;
        let digest = lower_hex::<64>(digest).ok_or(Refusal::Malformed)?;
        let tag_hex = lower_hex::<64>(tag).ok_or(Refusal::Malformed)?;
        let mut tag = [0u8; 32];
        for (i, b) in tag.iter_mut().enumerate() {
            *b = hex_value(tag_hex[2 * i]) << 4 | hex_value(tag_hex[2 * i + 1]);
        }
        if ms.abs_diff((self.clock)()) > WINDOW_MS {
            return Err(Refusal::Stale);
        }
        // ASCII hex, checked above.
        let nonce = std::str::from_utf8(&nonce).map_err(|_| Refusal::Malformed)?;
        let digest_str = std::str::from_utf8(&digest).map_err(|_| Refusal::Malformed)?;
        let m = mac(&self.secret, method, &self.node, target, ms, nonce, digest_str);
        // verify_slice compares in constant time.
        m.verify_slice(&tag).map_err(|_| Refusal::BadSignature)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(&tag[..16]);
        Ok(SignedHead {
            digest,
            ms,
            id,
            once_only: method != "GET" && method != "HEAD",
        })
    }

    /// [`Verifier::check_head`] for a request as hyper parsed it: the
    /// target is its path and query as sent; a second header is malformed.
    pub fn check_request(
        &self,
        method: &hyper::Method,
        uri: &hyper::Uri,
        headers: &hyper::HeaderMap,
    ) -> Result<SignedHead, Refusal> {
        let target = uri.path_and_query().map_or("", |pq| pq.as_str());
        let mut values = headers.get_all(super::proto::AUTH_HEADER).iter();
        let (Some(h), None) = (values.next(), values.next()) else {
            return Err(Refusal::Malformed);
        };
        self.check_head(method.as_str(), target, Some(h.as_bytes()))
    }

    /// Step 2, with the whole body: it is the one signed, and a PUT or
    /// DELETE is not a replay.
    pub fn check_body(&self, head: SignedHead, body: &[u8]) -> Result<(), Refusal> {
        if body_digest(body).as_bytes() != head.digest {
            return Err(Refusal::BodyMismatch);
        }
        if head.once_only {
            let now = (self.clock)();
            let mut r = self.replay.lock().unwrap_or_else(|e| e.into_inner());
            if !r.admit(head.ms, head.id, now) {
                return Err(Refusal::Replayed);
            }
        }
        Ok(())
    }

    /// Entries in the replay cache (tests).
    pub fn remembered(&self) -> usize {
        self.replay.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000_000;
    const NODE: &str = "10.0.0.1:8000";

    fn clock() -> u64 {
        NOW
    }

    fn verifier() -> Verifier {
        Verifier::with_clock(b"s3cret", NODE, clock, 1000)
    }

    fn signed(method: &str, target: &str, body: &[u8], ms: u64) -> String {
        sign(
            b"s3cret",
            method,
            NODE,
            target,
            &body_digest(body),
            ms,
            next_nonce(),
        )
    }

    fn check(v: &Verifier, method: &str, target: &str, header: &str, body: &[u8]) -> Result<(), Refusal> {
        let head = v.check_head(method, target, Some(header.as_bytes()))?;
        v.check_body(head, body)
    }

    #[test]
    fn node_of_normalises_host_and_port() {
        assert_eq!(node_of("http://10.0.0.1:8000").as_deref(), Some("10.0.0.1:8000"));
        assert_eq!(
            node_of("http://Node-A.Example/x/").as_deref(),
            Some("node-a.example:80")
        );
        assert_eq!(node_of("http://[::1]:9").as_deref(), Some("[::1]:9"));
        assert_eq!(node_of("http://u:p@h:1").as_deref(), Some("h:1"));
        assert_eq!(node_of("https://h/").as_deref(), Some("h:443"));
        assert_eq!(node_of("https://h:8443").as_deref(), Some("h:8443"));
        assert_eq!(node_of("/no/authority"), None);
    }

    #[test]
    fn the_documented_format() {
        let h = sign(
            b"k",
            "PUT",
            "h:80",
            "/_groupcache/g/k?q",
            &body_digest(b"body"),
            1234,
            0xab,
        );
        let parts: Vec<&str> = h.split('.').collect();
        assert_eq!(parts.len(), 5, "{h}");
        assert_eq!(parts[0], "v2");
        assert_eq!(parts[1], "1234");
        assert_eq!(parts[2], "00000000000000ab");
        assert_eq!(
            parts[3],
            "230d8358dc8e8890b4c58deeb62912ee2f20357ae92a5cc861b98e68fe31acb5"
        );
        // HMAC-SHA256(k, "groupcache-auth-v2\nPUT\nh:80\n/_groupcache/g/k?q\n1234\n00000000000000ab\n<digest>")
        let mut m = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        m.update(
            format!(
                "groupcache-auth-v2\nPUT\nh:80\n/_groupcache/g/k?q\n1234\n00000000000000ab\n{}",
                parts[3]
            )
            .as_bytes(),
        );
        let mut want = String::new();
        hex_into(&m.finalize().into_bytes(), &mut want);
        assert_eq!(parts[4], want);
    }

    #[test]
    fn signatures_verify_only_for_their_request_node_secret_body_and_time() {
        let v = verifier();
        let t = "/_groupcache/g/k";
        let h = signed("GET", t, b"", NOW);
        assert_eq!(check(&v, "GET", t, &h, b""), Ok(()));
        assert_eq!(check(&v, "GET", t, &h, b""), Ok(()), "a GET may be replayed");
        for (ms, want) in [
            (NOW - WINDOW_MS, Ok(())),
            (NOW + WINDOW_MS, Ok(())),
            (NOW - WINDOW_MS - 1, Err(Refusal::Stale)),
            (NOW + WINDOW_MS + 1, Err(Refusal::Stale)),
        ] {
            assert_eq!(check(&v, "GET", t, &signed("GET", t, b"", ms), b""), want, "{ms}");
        }
        let bad = Err(Refusal::BadSignature);
        assert_eq!(check(&v, "DELETE", t, &h, b""), bad, "another method");
        assert_eq!(check(&v, "GET", "/_groupcache/g/x", &h, b""), bad, "another path");
        assert_eq!(
            check(&v, "GET", "/_groupcache/g/k?x=1", &h, b""),
            bad,
            "a query added"
        );
        let other_node = Verifier::with_clock(b"s3cret", "10.0.0.2:8000", clock, 10);
        assert_eq!(check(&other_node, "GET", t, &h, b""), bad, "another node");
        let other_secret = Verifier::with_clock(b"other", NODE, clock, 10);
        assert_eq!(check(&other_secret, "GET", t, &h, b""), bad, "another secret");
        assert_eq!(
            check(&v, "GET", t, &h, b"x"),
            Err(Refusal::BodyMismatch),
            "a body the signature does not cover"
        );
        // The digest in the header is covered by the MAC: swapping it for
        // the digest of another body breaks the signature.
        let p = signed("PUT", t, b"good", NOW);
        let swapped = p.replace(&body_digest(b"good"), &body_digest(b"evil"));
        assert_eq!(check(&v, "PUT", t, &swapped, b"evil"), bad);
        assert_eq!(check(&v, "PUT", t, &p, b"evil"), Err(Refusal::BodyMismatch));
        assert_eq!(check(&v, "PUT", t, &p, b"good"), Ok(()));
    }

    #[test]
    fn put_and_delete_signatures_work_once() {
        let v = verifier();
        let t = "/_groupcache/g/k";
        for m in ["PUT", "DELETE"] {
            let h = signed(m, t, b"body", NOW);
            // A wrong body does not use the signature up.
            assert_eq!(check(&v, m, t, &h, b"other"), Err(Refusal::BodyMismatch));
            assert_eq!(check(&v, m, t, &h, b"body"), Ok(()));
            assert_eq!(check(&v, m, t, &h, b"body"), Err(Refusal::Replayed), "{m}");
        }
        // Identical requests signed in the same millisecond differ by nonce.
        let a = signed("PUT", t, b"same", NOW);
        let b = signed("PUT", t, b"same", NOW);
        assert_ne!(a, b);
        assert_eq!(check(&v, "PUT", t, &a, b"same"), Ok(()));
        assert_eq!(check(&v, "PUT", t, &b, b"same"), Ok(()));
        assert_eq!(v.remembered(), 4);
    }

    #[test]
    fn malformed_headers_are_refused_never_a_panic() {
        let v = verifier();
        let t = "/_groupcache/g/k";
        let good = signed("GET", t, b"", NOW);
        let digest = body_digest(b"");
        let mut cases: Vec<Vec<u8>> = [
            "",
            ".",
            "....",
            "v2",
            "v2.....",
            "1800000000.zz",
            "v1.1800000000000.0000000000000000.x.y",
            "v2.-1.0000000000000000.a.b",
            "v2.+1800000000000.0000000000000000.a.b",
            "v2.99999999999999999999.0000000000000000.a.b",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        cases.push(good.as_bytes()[..good.len() - 1].to_vec());
        cases.push(format!("{good}0").into_bytes());
        cases.push(format!("{good}.").into_bytes());
        cases.push(good.to_uppercase().into_bytes());
        cases.push(good.replacen("v2", "V2", 1).into_bytes());
        cases.push(good.replacen("v2.", "v2.0", 1).into_bytes());
        // The panic of version 1: multi-byte UTF-8 where hex belongs, so
        // that byte offsets fall inside characters.
        cases.push(format!("v2.{NOW}.0000000000000000.{digest}.a{}a", "é".repeat(31)).into_bytes());
        cases.push(format!("v2.{NOW}.a{}a.{digest}.{}", "é".repeat(7), "0".repeat(64)).into_bytes());
        // Not UTF-8 at all, and every byte value.
        let mut raw = format!("v2.{NOW}.0000000000000000.{digest}.").into_bytes();
        raw.extend(std::iter::repeat_n(0xff, 64));
        cases.push(raw);
        cases.push((1..=255u8).collect());
        for c in &cases {
            let r = v.check_head("GET", t, Some(c));
            assert!(
                matches!(r, Err(Refusal::Malformed) | Err(Refusal::BadSignature)),
                "{:?}: {:?}",
                String::from_utf8_lossy(c),
                r.err()
            );
        }
        assert!(matches!(v.check_head("GET", t, None), Err(Refusal::Malformed)));
    }

    #[test]
    fn the_replay_cache_is_bounded_and_never_forgets_a_signature_it_dropped() {
        let mut r = ReplayCache::new(3);
        let id = |i: u8| [i; 16];
        assert!(r.admit(NOW, id(1), NOW));
        assert!(!r.admit(NOW, id(1), NOW));
        assert!(r.admit(NOW + 1, id(2), NOW));
        assert!(r.admit(NOW + 2, id(3), NOW));
        // Full: the oldest (NOW, 1) is dropped and the floor rises to NOW.
        assert!(r.admit(NOW + 3, id(4), NOW));
        assert_eq!(r.len(), 3);
        assert!(!r.admit(NOW, id(1), NOW), "dropped, still refused");
        assert!(!r.admit(NOW, id(9), NOW), "at or below the floor");
        assert!(!r.admit(NOW + 2, id(3), NOW), "still remembered");
        assert!(r.admit(NOW + 4, id(5), NOW), "newer ones still pass");
        // A flood of new signatures keeps it at capacity.
        for i in 0..10_000u64 {
            assert!(r.admit(NOW + 10 + i, [(i % 251) as u8; 16], NOW));
            assert!(r.len() <= 3);
        }
        // Expiry: past the window, entries go (their requests fail the time
        // check); a clock stepping back does not make them new again.
        let later = NOW + 10 + 10_000 + WINDOW_MS + 1;
        assert!(r.admit(later, id(7), later));
        assert_eq!(r.len(), 1);
        assert!(!r.admit(NOW + 10_009, [(9_999 % 251) as u8; 16], NOW));
    }

    #[test]
    fn nonces_differ() {
        let a: std::collections::HashSet<u64> = (0..1000).map(|_| next_nonce()).collect();
        assert_eq!(a.len(), 1000);
    }
}
