//! Wall-clock time, as Unix nanoseconds: expiries travel between nodes in
//! that unit (mailgun/groupcache's `expire`).

use std::time::{SystemTime, UNIX_EPOCH};

pub fn now_unix_nanos() -> i64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// The absolute expiry of a value stored now with `ttl_ms`; `None` for
/// `ttl_ms <= 0` (no expiry).
pub fn expiry_after_ms(ttl_ms: i64) -> Option<i64> {
    (ttl_ms > 0).then(|| now_unix_nanos().saturating_add(ttl_ms.saturating_mul(1_000_000)))
}
