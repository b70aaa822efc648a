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
/// The value of [`PEER_HEADER`].
pub const PEER_HEADER_VALUE: &str = "set, remove";

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
    fn expire_mapping() {
        assert_eq!(expire_to_wire(None), 0);
        assert_eq!(expire_from_wire(0), None);
        assert_eq!(expire_from_wire(-3), None);
        assert_eq!(expire_from_wire(7), Some(7));
    }
}
