//! The wire of the peer protocol: the HTTP constants (base path, header
//! names, content types) and the protobuf messages, wire-compatible with
//! golang/groupcache's `groupcachepb` and mailgun/groupcache's additions.
//!
//! Declared by hand with `#[derive(prost::Message)]`, so no `protoc` is
//! needed at build time. The `.proto` equivalent:
//!
//! ```proto
//! message GetRequest  { string group = 1; string key = 2; }
//! message GetResponse { bytes value = 1; double minute_qps = 2; int64 expire = 3; }
//! message SetRequest  { string group = 1; string key = 2; bytes value = 3;
//!                       int64 expire = 4; bool hot_cache = 5; }
//! // The batch route (our nodes only; see BATCH_TOKEN).
//! message GetManyRequest  { bytes group = 1; repeated bytes keys = 2;
//!                           uint64 max_response_bytes = 3; }
//! message KeyResult       { bytes value = 1; int64 expire = 3;
//!                           uint32 status = 4; string error = 5; }
//! message GetManyResponse { repeated KeyResult results = 1; }
//! ```
//!
//! Keys are bytes on our side and need not be UTF-8. A proto `string` and
//! `bytes` field are the same on the wire (length-delimited), so group and
//! key are declared `bytes` here: we send and accept any bytes. Only the Go
//! side applies its own rules: mailgun's proto3 `SetRequest` rejects a
//! non-UTF-8 key when it decodes one; golang/groupcache never sees
//! `SetRequest`, and keys travel in the URL path for GET and DELETE anyway.
//!
//! `expire` is an absolute time in Unix nanoseconds; 0 (or absent) means no
//! expiry, as in mailgun. All fields use proto3 rules: a zero value is not
//! written, which every Go version decodes as the same zero.

use bytes::Bytes;

/// The base path peers are served under unless configured otherwise, as
/// golang/groupcache's `defaultBasePath`.
pub const DEFAULT_BASE_PATH: &str = "/_groupcache/";

/// The `Content-Type` of protobuf bodies, as Go's groupcache sends it.
pub const PROTOBUF: &str = "application/x-protobuf";

/// The `Content-Type` of our plain-text answers (errors, statuses).
pub const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

/// The `Content-Type` of `/metrics` (Prometheus' text format 0.0.4).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response header our servers send on every answer, naming the methods
/// beyond GET that they implement. golang/groupcache serves every method as
/// a GET (a DELETE would make it load the key) and sends no such header, so
/// a peer that never sent it gets no PUT or DELETE ("set and remove reach
/// our nodes only", see the protocol in peers/mod.rs: both are no-ops for
/// such a peer).
/// mailgun/groupcache implements both but does not send the header either;
/// it is treated like golang/groupcache.
pub const PEER_HEADER: &str = "x-groupcache-peer";
/// The value of [`PEER_HEADER`]: PUT, DELETE and the batch route.
pub const PEER_HEADER_VALUE: &str = "set, remove, batch";

/// The token of [`PEER_HEADER`] that says a node serves the batch route
/// (`POST {base path}{group}` with a [`GetManyRequest`]). Nodes of 0.x
/// before it sent "set, remove": their answer to a batch, like
/// golang/groupcache's (a 400 "bad request"), lacks the token, and the
/// client falls back to one GET per key.
pub const BATCH_TOKEN: &str = "batch";

/// Whether a [`PEER_HEADER`] value names [`BATCH_TOKEN`] (a comma-separated
/// list, spaces around items ignored).
pub fn header_has_batch(value: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii() == BATCH_TOKEN.as_bytes())
}

/// The most keys one batch request may carry unless configured otherwise
/// (`max_batch_keys`).
pub const DEFAULT_MAX_BATCH_KEYS: usize = 1024;

/// The request header that carries a signature when the pool has a secret
/// (its format: [`super::auth`]).
pub const AUTH_HEADER: &str = "x-groupcache-auth";

/// Go's `GetRequest`. Unused on the wire by the HTTP protocol (group and key
/// travel in the path); kept for completeness and for other transports.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub group: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub key: Bytes,
}

/// The body of a 200 answer to a GET.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResponse {
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
    /// Never set by Go's servers nor ours; carried for compatibility.
    #[prost(double, tag = "2")]
    pub minute_qps: f64,
    /// mailgun's expiry, Unix nanoseconds; 0: none.
    #[prost(int64, tag = "3")]
    pub expire: i64,
}

/// The body of a PUT (mailgun's set).
#[derive(Clone, PartialEq, prost::Message)]
pub struct SetRequest {
    #[prost(bytes = "bytes", tag = "1")]
    pub group: Bytes,
    #[prost(bytes = "bytes", tag = "2")]
    pub key: Bytes,
    #[prost(bytes = "bytes", tag = "3")]
    pub value: Bytes,
    /// Unix nanoseconds; 0: no expiry.
    #[prost(int64, tag = "4")]
    pub expire: i64,
    /// mailgun's "store in the hot cache" flag. We never send it and store a
    /// peer's PUT in the main cache regardless (the PUT is sent to the owner).
    #[prost(bool, tag = "5")]
    pub hot_cache: bool,
}

/// The body of a batch request: `POST {base path}{escaped group}`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetManyRequest {
    /// The group, or empty; when set it must be the path's.
    #[prost(bytes = "bytes", tag = "1")]
    pub group: Bytes,
    /// The keys, exact bytes (no escaping); at most the server's
    /// `max_batch_keys`. Duplicates are allowed and answered each.
    #[prost(bytes = "bytes", repeated, tag = "2")]
    pub keys: Vec<Bytes>,
    /// The most bytes of answer the sender reads; 0: the server's own
    /// `max_body_bytes`. The server answers values that would not fit with
    /// [`STATUS_TOO_LARGE`], which the sender then fetches one by one.
    #[prost(uint64, tag = "3")]
    pub max_response_bytes: u64,
}

/// One key's answer in a [`GetManyResponse`].
#[derive(Clone, PartialEq, prost::Message)]
pub struct KeyResult {
    /// The value when `status` is 0.
    #[prost(bytes = "bytes", tag = "1")]
    pub value: Bytes,
    /// Unix nanoseconds; 0: no expiry (as `GetResponse.expire`, same tag).
    #[prost(int64, tag = "3")]
    pub expire: i64,
    /// 0 (absent): found, `value` and `expire` hold it. Otherwise the HTTP
    /// status the single GET of the key would have answered (404 not
    /// found, final; 400 a bad key; 500 loader failed; 503 closed; 504
    /// timed out), or [`STATUS_TOO_LARGE`].
    #[prost(uint32, tag = "4")]
    pub status: u32,
    /// With a non-zero status: the one-line text the single GET would have
    /// sent ("not found", "loader failed", ...).
    #[prost(string, tag = "5")]
    pub error: String,
}

/// The body of a 200 answer to a batch: `results[i]` answers `keys[i]`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetManyResponse {
    #[prost(message, repeated, tag = "1")]
    pub results: Vec<KeyResult>,
}

/// A key's status in a batch answer: found.
pub const STATUS_FOUND: u32 = 0;
/// A key's status in a batch answer: its value did not fit in the answer's
/// byte budget (`max_response_bytes`); fetch it with a GET.
pub const STATUS_TOO_LARGE: u32 = 413;

/// `Option<i64>` expiry to the wire's "0 means none".
pub fn expire_to_wire(e: Option<i64>) -> i64 {
    e.unwrap_or(0)
}

/// The wire's expiry to `Option<i64>`: 0 (and, defensively, negatives) is none.
pub fn expire_from_wire(e: i64) -> Option<i64> {
    (e > 0).then_some(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn get_response_wire_format() {
        // value "hi" (field 1, wire type 2), expire 1 (field 3, varint).
        let m = GetResponse {
            value: Bytes::from_static(b"hi"),
            minute_qps: 0.0,
            expire: 1,
        };
        assert_eq!(m.encode_to_vec(), b"\x0a\x02hi\x18\x01");
        assert_eq!(GetResponse::decode(&b"\x0a\x02hi\x18\x01"[..]).unwrap(), m);
        // Zero fields are omitted entirely.
        assert_eq!(GetResponse::default().encode_to_vec(), b"");
    }

    #[test]
    fn set_request_carries_non_utf8_keys() {
        let m = SetRequest {
            group: Bytes::from_static(b"g"),
            key: Bytes::from_static(b"\xff\x00k"),
            value: Bytes::from_static(b"v"),
            expire: 5,
            hot_cache: false,
        };
        let wire = m.encode_to_vec();
        assert_eq!(wire, b"\x0a\x01g\x12\x03\xff\x00k\x1a\x01v\x20\x05");
        assert_eq!(SetRequest::decode(&wire[..]).unwrap(), m);
    }

    #[test]
    fn batch_messages_wire_format() {
        let m = GetManyRequest {
            group: Bytes::from_static(b"g"),
            keys: vec![
                Bytes::from_static(b"a"),
                Bytes::new(),
                Bytes::from_static(b"\xff"),
            ],
            max_response_bytes: 0,
        };
        let wire = m.encode_to_vec();
        assert_eq!(wire, b"\x0a\x01g\x12\x01a\x12\x00\x12\x01\xff");
        assert_eq!(GetManyRequest::decode(&wire[..]).unwrap(), m);
        let r = GetManyResponse {
            results: vec![
                KeyResult {
                    value: Bytes::from_static(b"hi"),
                    expire: 1,
                    ..Default::default()
                },
                KeyResult {
                    status: 404,
                    error: "not found".into(),
                    ..Default::default()
                },
            ],
        };
        let wire = r.encode_to_vec();
        assert_eq!(
            wire,
            b"\x0a\x06\x0a\x02hi\x18\x01\x0a\x0e\x20\x94\x03\x2a\x09not found"
        );
        assert_eq!(GetManyResponse::decode(&wire[..]).unwrap(), r);
    }

    #[test]
    fn batch_token() {
        assert!(header_has_batch(PEER_HEADER_VALUE.as_bytes()));
        assert!(header_has_batch(b"batch"));
        assert!(header_has_batch(b"set,batch ,x"));
        assert!(!header_has_batch(b"set, remove"));
        assert!(!header_has_batch(b"batches"));
        assert!(!header_has_batch(b""));
    }

    #[test]
    fn expire_mapping() {
        assert_eq!(expire_to_wire(None), 0);
        assert_eq!(expire_from_wire(0), None);
        assert_eq!(expire_from_wire(-3), None);
        assert_eq!(expire_from_wire(7), Some(7));
    }
}
