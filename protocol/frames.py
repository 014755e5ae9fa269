"""Wire frames between hub and agents: one frozen dataclass per kind, nothing else.

Each frame knows its wire type (``T``) and how to turn itself into the plain
msgpack map that goes on the wire (``to_wire``). Parsing and limits live in
``codec``; this module must not do I/O or import anything beyond the standard
library. docs/protocol.md is the prose version of this file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

PROTOCOL_VERSION = 1

#: Identifiers of units and operations: short, printable, safe in logs and URLs.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")

#: Delivery kinds inside an operation's log.
KIND_MESSAGE = 0
KIND_COMMIT = 1


#: Longest human message in an error frame (agents refuse longer strings).
MAX_MESSAGE = 1024


def valid_id(value: str) -> bool:
    return ID_PATTERN.fullmatch(value) is not None


def bounded(message: str) -> str:
    """Cut an error message to MAX_MESSAGE characters (it may quote the peer's input)."""
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


# --- hub -> agent -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Challenge:
    """First frame of every connection: the agent must sign ``nonce``."""

    T: ClassVar[str] = "challenge"
    nonce: bytes
    hub: str
    version: int = PROTOCOL_VERSION

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "nonce": self.nonce, "hub": self.hub, "v": self.version}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ready:
    """The handshake succeeded; ``limits`` tells the agent what the hub accepts."""

    T: ClassVar[str] = "ready"
    unit: str
    session: str
    limits: dict[str, int]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "unit": self.unit, "session": self.session, "limits": self.limits}


@dataclass(frozen=True, slots=True, kw_only=True)
class Error:
    """A request failed. ``rid`` names the request (or a publish's ``cid``) where known."""

    T: ClassVar[str] = "error"
    code: str
    message: str
    rid: int | None = None
    op: str | None = None
    cid: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.T, "code": self.code, "message": self.message}
        if self.rid is not None:
            out["rid"] = self.rid
        if self.op is not None:
            out["op"] = self.op
        if self.cid is not None:
            out["cid"] = self.cid
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Ok:
    """A request succeeded; ``info`` carries its result (e.g. a sequence number)."""

    T: ClassVar[str] = "ok"
    rid: int
    info: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "rid": self.rid, "info": self.info}


@dataclass(frozen=True, slots=True, kw_only=True)
class Acks:
    """Publishes now durable: one ``(op, cid, seq)`` per publish, in request order."""

    T: ClassVar[str] = "acks"
    items: tuple[tuple[str, int, int], ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "items": self.items}  # tuples pack as arrays


class Delivery(NamedTuple):
    """One entry of an operation's log as delivered: ciphertext plus routing facts.

    Entries of a frame (Delivery, PublishItem) are NamedTuples, not frozen dataclasses:
    thousands are built per second on the hot path and a tuple is ~4x cheaper to create.
    They are just as immutable."""

    seq: int
    sender: str
    kind: int
    header: bytes
    payload: bytes
    at_ms: int

    def to_wire(self) -> list[Any]:
        return [self.seq, self.sender, self.kind, self.header, self.payload, self.at_ms]


@dataclass(frozen=True, slots=True, kw_only=True)
class Deliver:
    """Consecutive log entries of one operation, in sequence order."""

    T: ClassVar[str] = "deliver"
    op: str
    items: tuple[Delivery, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "op": self.op, "items": self.items}  # tuples pack as arrays


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """The hub ended a subscription (the unit was removed from the operation)."""

    T: ClassVar[str] = "ended"
    op: str
    reason: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "op": self.op, "reason": self.reason}


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectedItem:
    """A message addressed to one member, kept by the hub until that member acks it."""

    id: int
    op: str
    sender: str
    payload: bytes
    at_ms: int

    def to_wire(self) -> list[Any]:
        return [self.id, self.op, self.sender, self.payload, self.at_ms]


@dataclass(frozen=True, slots=True, kw_only=True)
class Directed:
    T: ClassVar[str] = "directed"
    items: tuple[DirectedItem, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "items": [d.to_wire() for d in self.items]}


# --- agent -> hub -------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """Answer to the challenge: the credential and a signature proving the identity key."""

    T: ClassVar[str] = "hello"
    credential: bytes
    credential_sig: bytes
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.T,
            "cred": self.credential,
            "cred_sig": self.credential_sig,
            "sig": self.signature,
        }


class PublishItem(NamedTuple):
    """One message for an operation's log. ``cid`` is the sender's idempotency key.
    (A NamedTuple for the same reason as Delivery.)"""

    op: str
    cid: int
    header: bytes
    payload: bytes

    def to_wire(self) -> list[Any]:
        return [self.op, self.cid, self.header, self.payload]


@dataclass(frozen=True, slots=True, kw_only=True)
class Publish:
    T: ClassVar[str] = "pub"
    items: tuple[PublishItem, ...]

    def to_wire(self) -> dict[str, Any]:
        # PublishItem is a tuple, which msgpack packs as an array: no conversion needed.
        return {"t": self.T, "items": self.items}


@dataclass(frozen=True, slots=True, kw_only=True)
class Subscribe:
    """Stream an operation's log from ``after + 1``; ``after=None`` resumes from the cursor.
    ``senders``: deliver application messages only from these units (every other kind of
    entry, such as membership commits, always); the stream then skips seqs."""

    T: ClassVar[str] = "sub"
    rid: int
    op: str
    after: int | None = None
    senders: tuple[str, ...] | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"t": self.T, "rid": self.rid, "op": self.op,
                                "after": self.after}
        if self.senders is not None:
            wire["senders"] = list(self.senders)
        return wire


@dataclass(frozen=True, slots=True, kw_only=True)
class Unsubscribe:
    T: ClassVar[str] = "unsub"
    rid: int
    op: str

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "rid": self.rid, "op": self.op}


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack:
    """Cumulative: every entry of ``op`` up to and including ``seq`` has been processed."""

    T: ClassVar[str] = "ack"
    op: str
    seq: int

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "op": self.op, "seq": self.seq}


@dataclass(frozen=True, slots=True, kw_only=True)
class Commit:
    """A signed membership statement (see ``statements``): create or change an operation."""

    T: ClassVar[str] = "commit"
    rid: int
    statement: bytes
    signature: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "rid": self.rid, "stmt": self.statement, "sig": self.signature}


@dataclass(frozen=True, slots=True, kw_only=True)
class SendDirected:
    """Store ``payload`` for member ``to`` of ``op`` until it acknowledges it. With a
    ``cid``, a retry (same sender and cid) returns the first copy's id instead of a new one."""

    T: ClassVar[str] = "send"
    rid: int
    op: str
    to: str
    payload: bytes
    cid: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out = {"t": self.T, "rid": self.rid, "op": self.op, "to": self.to,
               "payload": self.payload}
        if self.cid is not None:
            out["cid"] = self.cid
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectedAck:
    T: ClassVar[str] = "dack"
    ids: tuple[int, ...]

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.T, "ids": list(self.ids)}


@dataclass(frozen=True, slots=True, kw_only=True)
class PutKeyPackages:
    """Publish this unit's signed key packages (``SignedKeyPackage.to_bytes()``): one-time
    ones, and at most one marked last-resort, which replaces the previous one."""

    T: ClassVar[str] = "kp_put"
    rid: int
    packages: tuple[bytes, ...]
    #: drop every package of this unit held so far (an agent that lost its private halves)
    replace: bool = False

    def to_wire(self) -> dict[str, Any]:
        out = {"t": self.T, "rid": self.rid, "packages": list(self.packages)}
        if self.replace:
            out["replace"] = True
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ClaimKeyPackages:
    """Take one key package of each unit, for the next statement of ``op`` (its admin only;
    protocol.md 12.3). The answer's ``info`` holds ``packages`` (unit -> signed package)
    and ``missing``."""

    T: ClassVar[str] = "kp_claim"
    rid: int
    units: tuple[str, ...]
    #: the operation whose next statement seals to these units. Optional on the wire only
    #: so that an older agent's claim decodes: the hub refuses a claim without it.
    op: str | None = None
    #: idempotency key, with the claimer and ``op``: a retry gets the first answer
    cid: int | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"t": self.T, "rid": self.rid, "units": list(self.units)}
        if self.op is not None:
            out["op"] = self.op
        if self.cid is not None:
            out["cid"] = self.cid
        return out


ServerFrame = Challenge | Ready | Error | Ok | Acks | Deliver | Ended | Directed
ClientFrame = (Hello | Publish | Subscribe | Unsubscribe | Ack | Commit | SendDirected | DirectedAck
               | PutKeyPackages | ClaimKeyPackages)
Frame = ServerFrame | ClientFrame
