"""The store contract: the write commands, their results, and the Store protocol.

The hub core speaks only this vocabulary, so a second implementation (NATS
JetStream, a later issue) fits without touching it. A store is synchronous and
single-writer: ``apply`` runs a batch of commands as one durable transaction
(group commit) and is called from one worker thread; reads may run on another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from protocol.errors import StoreError
from protocol.frames import Delivery


class AppendMessage(NamedTuple):
    """Append to an operation's log; the store assigns the next sequence number
    unless (op, sender, kind, cid) is already stored, in which case it returns that entry.

    A NamedTuple, not a frozen dataclass: one is built per message on the hot path and
    a tuple is ~4x cheaper to create."""

    op: str
    sender: str
    cid: int
    kind: int
    header: bytes
    payload: bytes
    at_ms: int


@dataclass(frozen=True, slots=True)
class ApplyStatement:
    """Record an accepted membership statement and the resulting operation state.
    The statement is also appended to the operation's log as ``message``."""

    op: str
    epoch: int
    name: str
    admin: str
    admin_key: bytes
    head: bytes
    members: frozenset[str]
    body: bytes
    signature: bytes
    message: AppendMessage


@dataclass(frozen=True, slots=True)
class Enroll:
    """Add or replace a unit's authority-signed credential in the directory."""

    unit: str
    body: bytes
    signature: bytes
    issued_at: int


@dataclass(frozen=True, slots=True)
class StoreDirected:
    """Keep a message for one recipient; with a cid, a retry (same sender, operation,
    recipient and cid) returns the first copy's id instead of storing a second."""

    op: str
    sender: str
    recipient: str
    payload: bytes
    at_ms: int
    cid: int | None = None


@dataclass(frozen=True, slots=True)
class AckDirected:
    recipient: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SaveCursor:
    unit: str
    op: str
    seq: int


@dataclass(frozen=True, slots=True)
class PutKeyPackages:
    """Keep a unit's verified key packages: (package id, signed bytes, last_resort). A
    last-resort package replaces the unit's previous one; a known id is ignored."""

    unit: str
    packages: tuple[tuple[bytes, bytes, bool], ...]
    replace: bool = False  # delete the unit's packages first


@dataclass(frozen=True, slots=True)
class ClaimKeyPackages:
    """Hand out one package per distinct unit: the oldest one-time package (deleted), else
    the unit's last-resort package (kept). With a ``cid`` the answer is recorded under
    (claimer, op, cid), and a claim with a recorded key returns that first answer and
    takes nothing (whatever its ``units``). SQLite records it in the transaction that
    takes the packages; JetStream records it just after, first writer winning across
    nodes (hub/store/jetstream_keys.py). The router has checked who may claim."""

    claimer: str
    op: str
    units: tuple[str, ...]
    cid: int | None = None


class KeyPackagesStored(NamedTuple):
    available: int  # one-time packages of the unit now held


class KeyPackagesClaimed(NamedTuple):
    packages: dict[str, bytes]  # unit -> signed package; units with none are absent
    missing: tuple[str, ...] = ()  # units with none, in claim order, once each
    duplicate: bool = False  # the recorded answer of an earlier claim with this key


Command = (AppendMessage | ApplyStatement | Enroll | StoreDirected | AckDirected | SaveCursor
           | PutKeyPackages | ClaimKeyPackages)


class Appended(NamedTuple):
    """Result of AppendMessage/ApplyStatement: the entry's seq; ``duplicate`` for retries.
    (A NamedTuple for the same reason as AppendMessage.)"""

    op: str
    seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class DirectedStored:
    id: int
    duplicate: bool = False


Result = Appended | DirectedStored | KeyPackagesStored | KeyPackagesClaimed | None


#: A stored log entry is exactly what goes on the wire in a deliver frame.
LogEntry = Delivery


@dataclass(frozen=True, slots=True)
class DirectedEntry:
    id: int
    op: str
    sender: str
    payload: bytes
    at_ms: int


@dataclass(frozen=True, slots=True)
class OperationRecord:
    op: str
    name: str
    admin: str
    admin_key: bytes
    epoch: int
    head: bytes
    members: frozenset[str]
    last_seq: int


@dataclass(slots=True)
class Snapshot:
    """Everything the hub keeps in memory, as loaded at start-up."""

    operations: dict[str, OperationRecord] = field(default_factory=dict)
    directory: dict[str, tuple[bytes, bytes]] = field(default_factory=dict)
    cursors: dict[tuple[str, str], int] = field(default_factory=dict)


class Store(Protocol):
    def load(self) -> Snapshot:
        """Read the state the hub keeps in memory. Raises StoreError."""

    def apply(self, commands: list[Command]) -> list[Result]:
        """Run ``commands`` in one durable transaction; one result per command, in order.
        Raises StoreError, in which case nothing of the batch is stored."""

    def read_log(self, op: str, after: int, limit: int) -> list[LogEntry]:
        """Entries of ``op`` with seq > after, ascending, at most ``limit``."""

    def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]:
        """Directed messages not yet acknowledged by ``recipient``, oldest first."""

    def close(self) -> None: ...


class AsyncStore(Protocol):
    """A store on the event loop (hub/store/jetstream.py: several hub nodes share it). The
    same commands and results; ``apply`` may fail single commands (a StoreError in that
    command's place) since it has no transaction across them, which is safe because
    every command is idempotent: the agents retry what failed."""

    async def apply(self, commands: list[Command]) -> list[Result | StoreError]: ...

    async def read_log(self, op: str, after: int, limit: int) -> list[LogEntry]: ...

    async def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]: ...

    async def close(self) -> None: ...
