# The package's version: the same as the Rust crate's (Cargo.toml) and the
# library's cache_version(); a test checks the three agree.
__version__ = "0.1.0"
"""The package's version, the same as the library's (``library_version()``)."""
