//! The HTTP peer protocol.
