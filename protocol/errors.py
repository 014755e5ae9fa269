"""The one error tree of opshub, and the stable codes that cross the wire.

Nothing here performs I/O. Every error a peer can cause maps to a stable string
code (sent in an ``error`` frame) and, where the connection cannot go on, a
WebSocket close code::

    OpshubError
    ├── ProtocolError            the peer broke the protocol (remote)
    │   ├── DecodeError          bytes that are not a valid frame      close 4400
    │   ├── FrameTooLarge        frame over the size limit             close 1009
    │   ├── UnexpectedMessage    frame not allowed in this state       close 4409
    │   └── AuthError            handshake refused                     close 4401
    ├── RequestError             a valid frame that cannot be served; the
    │                            connection stays open (forbidden, unknown
    │                            operation, bad statement, limit reached)
    ├── CryptoError              a message or commit failed an end-to-end check
    │                            (client/e2ee); the agent drops it and goes on
    ├── SchemaError              a message's content fails its JSON Schema (client side;
    │                            ``problems`` lists every one with its JSON path)
    ├── ScenarioError            a scenario file is not valid (``problems``: file, line,
    │                            path and reason of each); nothing runs
    ├── StoreError               the store failed; the request is not acked
    ├── TlsError                 a wss:// or https:// hub failed TLS: its certificate did
    │                            not verify against the CAs this side trusts, or the
    │                            handshake failed (client side; not retried)
    ├── StateError               an agent's state file cannot be read (not one, a wrong
    │                            key, altered, another unit's) or written (client side)
    └── UsageError               this side misused the API (local)
"""

from __future__ import annotations

from typing import Any


class Code:
    """Stable error codes; clients may switch on these strings."""

    MALFORMED = "malformed_frame"
    TOO_LARGE = "frame_too_large"
    UNEXPECTED = "unexpected_frame"
    UNKNOWN_UNIT = "unknown_unit"
    BAD_CREDENTIAL = "bad_credential"
    EXPIRED_CREDENTIAL = "expired_credential"
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_AUTHORITY = "unknown_authority"
    NOT_MEMBER = "not_member"
    UNKNOWN_OPERATION = "unknown_operation"
    NOT_ADMIN = "not_admin"
    BAD_STATEMENT = "bad_statement"
    WRONG_EPOCH = "wrong_epoch"
    OPERATION_EXISTS = "operation_exists"
    LIMIT = "limit_exceeded"
    SLOW_CONSUMER = "slow_consumer"  # a close reason (1013), never in an error frame
    STORE = "store_failure"
    UNSUPPORTED_VERSION = "unsupported_version"  # raised by agents, never sent by the hub
    SHUTTING_DOWN = "shutting_down"
    BAD_KEY_PACKAGE = "bad_key_package"
    # the HTTP API (hub/api.py): an unsigned request, one signed too far from the hub's
    # clock, a caller the configuration does not allow, too many requests from one source
    UNAUTHENTICATED = "unauthenticated"
    STALE_REQUEST = "stale_request"
    FORBIDDEN = "forbidden"
    RATE_LIMITED = "rate_limited"
    # raised by agents (client/e2ee) when a message or commit fails a check
    DECRYPT_FAILED = "decrypt_failed"
    REPLAYED = "replayed"
    TOO_FAR_AHEAD = "too_far_ahead"
    BAD_SENDER = "bad_sender_signature"
    UNKNOWN_EPOCH = "unknown_epoch"
    BAD_CONFIRMATION = "bad_confirmation_tag"
    NO_KEY = "no_key_for_member"
    # raised by agents when decrypted content is not a valid message (schemas/)
    INVALID_MESSAGE = "invalid_message"
    # raised by agents for their own state file (client/state_file.py), never sent
    STATE_UNREADABLE = "state_unreadable"  # not a state file, or one this version cannot read
    STATE_WRONG_KEY = "state_wrong_key"  # does not decrypt: a wrong key, or the file was altered
    STATE_MISMATCH = "state_mismatch"  # another unit's, identity key's or cipher suite's
    STATE_WRITE = "state_write_failed"  # the new state could not be written


class CloseCode:
    """WebSocket close codes the hub uses (RFC 6455 7.4; 4000-4999 are private use)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    TOO_LARGE = 1009
    TRY_AGAIN_LATER = 1013
    MALFORMED = 4400
    AUTH = 4401
    UNEXPECTED = 4409


class OpshubError(Exception):
    """Base of every error opshub raises on purpose."""

    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None, ref: Any = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.ref = ref


class ProtocolError(OpshubError):
    """The peer broke the protocol; the connection is closed with ``close_code``."""

    close_code: int = CloseCode.MALFORMED


class DecodeError(ProtocolError):
    """Bytes that do not decode to a valid frame. ``ref`` holds the offending path."""

    code = Code.MALFORMED
    close_code = CloseCode.MALFORMED


class FrameTooLarge(DecodeError):
    """A frame larger than the configured maximum."""

    code = Code.TOO_LARGE
    close_code = CloseCode.TOO_LARGE


class UnexpectedMessage(ProtocolError):
    """A well-formed frame that the session state does not allow."""

    code = Code.UNEXPECTED
    close_code = CloseCode.UNEXPECTED


class AuthError(ProtocolError):
    """The handshake failed: unknown unit, bad credential, bad signature, expired."""

    close_code = CloseCode.AUTH


class RequestError(OpshubError):
    """A valid frame that cannot be served; answered with an error frame, connection kept."""


class CryptoError(OpshubError):
    """A signature, credential or ciphertext failed verification."""

    code = Code.BAD_SIGNATURE


class SchemaError(OpshubError):
    """A message's content does not match its schema. ``problems`` holds every problem
    found (each with a JSON path), not only the first."""

    code = Code.INVALID_MESSAGE

    def __init__(self, message: str, *, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class ScenarioError(OpshubError):
    """A scenario cannot be replayed. ``problems`` holds every problem found."""

    code = "invalid_scenario"

    def __init__(self, message: str, *, problems: list[Any] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


class StoreError(OpshubError):
    """The store could not complete a write or read."""

    code = Code.STORE


class TlsError(OpshubError):
    """TLS with a hub failed before any frame: a certificate that does not verify (an
    unknown CA, the wrong host name, expired) or a failed handshake (a plain ws:// hub
    at a wss:// URL). The message names the URL and the reason."""

    code = "tls_failed"


class StateError(OpshubError):
    """An agent's state file could not be read or written. The message names the file;
    ``code`` says why (``Code.STATE_*``)."""

    code = Code.STATE_UNREADABLE


class UsageError(OpshubError):
    """This side called the API wrongly (a bug here, not the peer's fault)."""

    code = "usage"
