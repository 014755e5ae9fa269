"""What a parser or ``cryptography`` raises for a peer's bytes, turned into CryptoError here.

Commit entries, directed messages, welcomes, key material and sealed secrets are bytes
written by another member (or by whoever controls the hub's database). The exceptions
that third-party code raises for such bytes (msgpack's errors, a wrong type or shape,
``struct.error``, ``InvalidTag``) become one CryptoError with a stable code in
``peer_input``, and nowhere else. So client/e2ee raises only CryptoError for a peer's bad
input, and the agent (``client.secure``) catches CryptoError and nothing broader: any
other exception is a bug, and stops it. Pure: no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from contextlib import contextmanager

import msgpack
from cryptography.exceptions import InvalidTag

from protocol.errors import Code, CryptoError

#: What parsing or opening a peer's bytes may raise, besides CryptoError itself.
PEER_FAULTS: tuple[type[Exception], ...] = (
    ValueError,  # msgpack's errors (FormatError, ExtraData, ...), UnicodeDecodeError, bad sizes
    TypeError,  # a field of the wrong type, a non-map indexed as a map
    KeyError,  # a missing field
    IndexError,
    struct.error,
    msgpack.UnpackException,
    InvalidTag,  # an AEAD (HPKE) that does not open
)


@contextmanager
def peer_input(what: str, code: str) -> Iterator[None]:
    """Run the block; a PEER_FAULTS exception in it becomes CryptoError(``code``) saying
    ``what`` (and the parser's reason, if it gave one). CryptoError passes through;
    anything else is a bug and propagates as it is."""
    try:
        yield
    except PEER_FAULTS as exc:
        reason = str(exc)
        raise CryptoError(f"{what}: {reason}" if reason else what, code=code) from None


def commit_entry(payload: bytes) -> tuple[bytes, bytes]:
    """The (statement, signature) of a commit entry of an operation's log. The hub checks
    a commit before storing it, but not one written into its database behind its back.
    Raises CryptoError(bad_statement) for anything but a list of two byte strings."""
    with peer_input("malformed commit entry", Code.BAD_STATEMENT):
        body, signature = msgpack.unpackb(payload)
        if not isinstance(body, bytes) or not isinstance(signature, bytes):
            raise TypeError("expected [statement bytes, signature bytes]")
    return body, signature


def directed_kind(payload: bytes) -> object:
    """The ``t`` field of a directed message (``"welcome"``, ``"welcome_request"``; any
    other value is the caller's to refuse). Raises CryptoError(bad_statement) for a
    payload that is not a msgpack map."""
    with peer_input("malformed directed message", Code.BAD_STATEMENT):
        m = msgpack.unpackb(payload, raw=False)
        if not isinstance(m, dict):
            raise TypeError(f"expected a map, got {type(m).__name__}")
    return m.get("t")
