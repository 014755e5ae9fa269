"""What passes between the Router and the pump that runs it: the Peer the router queues
frames on, the store work it asks for (each carrying what the router does with the
result), its settings and its counters. Plain data; no I/O.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from protocol import frames as f
from protocol.statements import OperationState, Statement
from protocol.store import AppendMessage, Command, LogEntry

#: Deliver and directed frames are cut so that one frame stays well under max_frame.
CHUNK_BYTES = 1024 * 1024


class Peer(Protocol):
    """One authenticated connection as the router sees it."""

    @property
    def unit(self) -> str: ...

    def send(self, frame: f.ServerFrame) -> None:
        """Queue a control frame (ok, acks, error, ended, directed): always accepted."""

    def offer(self, frame: f.Deliver) -> bool:
        """Queue a delivery if the outbound queue has room. Once it says False it keeps
        saying False until the pump reports ``Router.writable`` for this peer."""


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """The limits the router enforces (the hub's HubConfig fills it in)."""

    #: Entries per deliver frame (the agents' max_batch).
    max_batch: int = 256
    max_operations_per_unit: int = 64
    #: Entries per read when a subscriber catches up from the store.
    catchup_page: int = 512
    #: One frame per entry per subscriber: the naive design, the benchmark's reference.
    per_delivery: bool = False
    #: The store is shared with other hub nodes (JetStream): what is stored reaches this
    #: node's subscribers through ``Router.observed`` and the other ``*_elsewhere`` inputs,
    #: whichever node stored it, never straight from a write's result.
    shared: bool = False
    #: Shared store: seconds a request about an operation this node has not heard of yet
    #: (or a membership it has not seen yet) waits for the store's feed before it is
    #: refused. Another node may have stored the statement a moment ago.
    catch_up_wait: float = 5.0


@dataclass(slots=True)
class Counts:
    """What the router has done, for the hub's metrics."""

    messages_in: int = 0
    duplicates: int = 0
    deliveries: int = 0
    #: live subscriptions whose queue refused a frame: they left the live path to read
    #: the log from the store at their own pace
    fell_behind: int = 0
    #: subscriptions that read the store up to the head and went live again
    caught_up: int = 0
    #: pages of the log read from the store for subscriptions catching up
    catchup_pages: int = 0
    background_failures: int = 0
    errors: Counter[str] = field(default_factory=Counter)


@dataclass(eq=False, slots=True)
class Subscription:
    peer: Peer
    op: str
    next_seq: int
    #: deliver application messages only from these senders (None: all)
    senders: frozenset[str] | None = None
    live: bool = False
    ended: bool = False
    #: a ReadLog for it is out
    reading: bool = False
    #: a page read from the store, cut in frames, waiting for room on the peer
    backlog: list[tuple[LogEntry, ...]] = field(default_factory=list)
    #: last seq of the page in ``backlog`` (a filtered page may end with skipped entries)
    page_end: int = 0
    #: removed from the operation at this seq while behind: it reads up to it, then ends
    end_at: int | None = None

    def wants(self, entry: LogEntry) -> bool:
        return self.senders is None or entry.kind != f.KIND_MESSAGE or entry.sender in self.senders


# --- store work for the pump ---------------------------------------------------------
# A Write carries what the router does with its results (``then``); the pump runs the
# commands in one transaction and hands the results back with ``Router.stored``.


@dataclass(frozen=True, slots=True)
class Publishing:
    peer: Peer
    commands: list[AppendMessage]


@dataclass(frozen=True, slots=True)
class Committing:
    peer: Peer
    rid: int
    statement: Statement
    digest: bytes
    before: OperationState | None
    after: OperationState
    entry: AppendMessage


@dataclass(frozen=True, slots=True)
class SendingDirected:
    peer: Peer
    frame: f.SendDirected
    at_ms: int


@dataclass(frozen=True, slots=True)
class PuttingKeyPackages:
    peer: Peer
    rid: int


@dataclass(frozen=True, slots=True)
class ClaimingKeyPackages:
    peer: Peer
    rid: int
    op: str


@dataclass(frozen=True, slots=True)
class Background:
    """Enrolments, directed acks and cursors: nobody waits for them; a failure is logged."""

    what: str


Then = (Publishing | Committing | SendingDirected | PuttingKeyPackages | ClaimingKeyPackages
        | Background)


@dataclass(frozen=True, slots=True, eq=False)
class Write:
    """Run ``commands`` in one durable transaction, then ``Router.stored(self, results)``."""

    commands: list[Command]
    then: Then


@dataclass(frozen=True, slots=True, eq=False)
class ReadLog:
    """Read entries of ``sub.op`` after ``after`` (at most ``limit``), then
    ``Router.log_read(self, entries)``."""

    sub: Subscription
    after: int
    limit: int


@dataclass(frozen=True, slots=True, eq=False)
class ReadDirected:
    """Read what waits for ``peer.unit`` (at most ``limit``), then
    ``Router.directed_read(self, entries)``."""

    peer: Peer
    limit: int


Action = Write | ReadLog | ReadDirected
