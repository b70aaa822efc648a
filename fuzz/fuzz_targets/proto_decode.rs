//! The protobuf bodies of the peer protocol as a peer may send them: a
//! GetResponse and GetManyResponse (client side), a SetRequest and
//! GetManyRequest (server side). Decoding
//! never panics; what decodes re-encodes to bytes that decode the same.
#![no_main]

use groupcache::peers::proto::{expire_from_wire, GetManyRequest, GetManyResponse, GetResponse, SetRequest};
use libfuzzer_sys::fuzz_target;
use prost::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = GetResponse::decode(data) {
        let again = GetResponse::decode(&m.encode_to_vec()[..]).expect("re-encoded GetResponse");
        assert_eq!(again.value, m.value);
        assert_eq!(again.expire, m.expire);
        // Equal as numbers (-0.0 is the default, not re-encoded: it comes
        // back as 0.0) or both NaN.
        assert!(
            again.minute_qps == m.minute_qps || (again.minute_qps.is_nan() && m.minute_qps.is_nan()),
            "{} vs {}",
            again.minute_qps,
            m.minute_qps
        );
        let _ = expire_from_wire(m.expire);
    }
    if let Ok(m) = SetRequest::decode(data) {
        let again = SetRequest::decode(&m.encode_to_vec()[..]).expect("re-encoded SetRequest");
        assert_eq!(again, m);
    }
    if let Ok(m) = GetManyRequest::decode(data) {
        let again = GetManyRequest::decode(&m.encode_to_vec()[..]).expect("re-encoded GetManyRequest");
        assert_eq!(again, m);
    }
    if let Ok(m) = GetManyResponse::decode(data) {
        let again = GetManyResponse::decode(&m.encode_to_vec()[..]).expect("re-encoded GetManyResponse");
        assert_eq!(again, m);
    }
});
