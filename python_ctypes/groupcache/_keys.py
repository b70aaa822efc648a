"""Keys are str in Python and bytes in the library: one encoding for every
way in (``Cache``, ``Pool.owner``, ``memoize``) and out."""

from __future__ import annotations


def encode_key(key: object, wrong_type: str = "keys are str") -> bytes:
    """UTF-8, with surrogateescape: a key that came back from the library
    as a str (it was not UTF-8) encodes to its bytes again; other lone
    surrogates cannot be sent (``UnicodeEncodeError``). Anything but a str
    is a ``TypeError`` saying ``wrong_type``."""
    if isinstance(key, str):
        # str.encode, not key.encode: a subclass's override would make a
        # key other than the one the library's fast paths see.
        return str.encode(key, "utf-8", "surrogateescape")
    raise TypeError("%s, not %s" % (wrong_type, type(key).__name__))


def decode_key(key: bytes) -> str:
    """The str of a key the library hands back (see ``encode_key``)."""
    return key.decode("utf-8", "surrogateescape")
