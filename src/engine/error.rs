//! The engine's error type. Every variant maps to one `cache_status`.

use std::fmt;

/// Why a get, set or remove did not succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The getter (locally or at the owner) said the key does not exist.
    NotFound,
    /// The getter failed, panicked, or set nothing; the message says why.
    LoaderFailed(String),
    /// A peer failed and no fallback applied (e.g. a set at the owner).
    PeerFailed(String),
    /// A wait exceeded its deadline.
    Timeout(String),
    /// The caller's wait slice (see `singleflight::with_wait_slice`) ended
    /// while another thread's load of the key goes on: call again to wait
    /// more. Only calls made with a wait slice see it.
    InProgress,
    /// The group (or its pool) is closed.
    Closed,
    /// Bad input: too long a key, a getter re-entering its own load, ...
    InvalidArgument(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::LoaderFailed(m) => write!(f, "loader failed: {m}"),
            Error::PeerFailed(m) => write!(f, "peer failed: {m}"),
            Error::Timeout(m) => write!(f, "timeout: {m}"),
            Error::InProgress => f.write_str("another thread's load of this key is still in progress"),
            Error::Closed => f.write_str("closed"),
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// The message of a caught panic (`catch_unwind`'s payload): the text given
/// to `panic!`, or "unknown panic" for a payload of another type.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}

#[cfg(test)]
mod tests {
    use super::panic_message;
    use std::panic::catch_unwind;

    #[test]
    fn panic_messages() {
        let literal = catch_unwind(|| panic!("plain")).unwrap_err();
        assert_eq!(panic_message(&*literal), "plain");
        let formatted = catch_unwind(|| panic!("key {}", 7)).unwrap_err();
        assert_eq!(panic_message(&*formatted), "key 7");
        let other = catch_unwind(|| std::panic::panic_any(42u8)).unwrap_err();
        assert_eq!(panic_message(&*other), "unknown panic");
    }
}
