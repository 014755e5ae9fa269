"""An in-memory pump for protocol.router.Router: FakePeer and Hub, the tests' ConnectionPair.

``Hub`` does what hub/broker.py and hub/store/worker.py do, one explicit step at a time and
on the calling thread: it collects the router's actions, runs every Write submitted so far
in one transaction (the worker's group commit), hands each Write its slice of the results
and then calls ``flush`` (the worker's ``after_commit``), and runs ReadLog/ReadDirected
against the store. A store failure is handed over as the ``StoreError`` the worker would
pass on, with nothing applied (the store's contract: a failed batch stores nothing).

The store is the real ``hub.store.sqlite.SQLiteStore`` on a temporary file, called
synchronously. It blocks, but there is no event loop here to stall, and it keeps the tests
honest: seqs, idempotency keys (cid runs), directed ids and key-package rules are the ones
production uses, not a second implementation that could agree with the router's
assumptions by construction. The cost is ~30 ms to create a database and ~0.5 ms per
transaction (fsync), a few seconds for the whole file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from client.identity import Authority, UnitIdentity, UnitSpec
from client.membership import OperationAdmin
from hub.store.sqlite import SQLiteStore
from protocol import frames as f
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import StoreError
from protocol.router import Router
from protocol.router_io import ReadDirected, ReadLog, RouterConfig, Write
from protocol.session import Authenticated, Event
from protocol.store import DirectedEntry, LogEntry, Result

#: The hub's clock (seconds); credentials are issued a minute before it.
NOW = 1_700_000_000.0
ISSUED = int(NOW) - 60

UNITS = (
    UnitSpec("OCU-BB", "BB", "customs", "ocu"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
    UnitSpec("INTERPOL-LO", "FR", "INTERPOL", "liaison"),
)
SPECS = {s.unit: s for s in UNITS}

F = TypeVar("F", bound=f.ServerFrame)


@dataclass
class Keys:
    """An authority and one identity per unit of UNITS, with real Ed25519 keys."""

    authority: Authority = field(default_factory=Authority.generate)
    units: dict[str, UnitIdentity] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for spec in UNITS:
            self.units[spec.unit] = self.authority.enroll(spec, now=ISSUED)

    def __getitem__(self, unit: str) -> UnitIdentity:
        return self.units[unit]

    def ring(self) -> AuthorityRing:
        return AuthorityRing([self.authority.public_key])


@dataclass(eq=False)
class FakePeer:
    """A Peer that records what the router queues on it, in order.

    ``room`` is how many more delivery frames it takes (None: no limit). Once ``offer``
    has refused one it refuses every one (the Peer contract) until ``Hub.writable``.
    A Deliver without entries is a router bug (``chunks``: no entries, no chunks), so it
    fails the test at once."""

    unit: str
    frames: list[f.ServerFrame] = field(default_factory=list)
    room: int | None = None
    refused: bool = False

    def send(self, frame: f.ServerFrame) -> None:
        self.frames.append(frame)

    def offer(self, frame: f.Deliver) -> bool:
        assert frame.items, f"an empty deliver frame for {frame.op!r} offered to {self.unit!r}"
        if self.room == 0:
            self.refused = True
        if self.refused:
            return False
        if self.room is not None:
            self.room -= 1
        self.frames.append(frame)
        return True

    def fill(self) -> None:
        """From now on refuse deliveries."""
        self.room = 0

    # --- views ----------------------------------------------------------------------

    def take(self) -> list[f.ServerFrame]:
        out, self.frames = self.frames, []
        return out

    def of(self, kind: type[F]) -> list[F]:
        return [x for x in self.frames if isinstance(x, kind)]

    def delivers(self, op: str) -> list[f.Deliver]:
        return [x for x in self.of(f.Deliver) if x.op == op]

    def entries(self, op: str) -> list[LogEntry]:
        return [e for frame in self.delivers(op) for e in frame.items]

    def seqs(self, op: str) -> list[int]:
        return [e.seq for e in self.entries(op)]

    def answer(self, rid: int) -> f.Ok | f.Error:
        """The one ok or error that answers request ``rid``."""
        [out] = [x for x in self.frames if isinstance(x, f.Ok | f.Error) and x.rid == rid]
        return out

    def ok(self, rid: int) -> f.Ok:
        out = self.answer(rid)
        assert isinstance(out, f.Ok), out
        return out

    def error(self, rid: int) -> f.Error:
        out = self.answer(rid)
        assert isinstance(out, f.Error), out
        return out

    def acks(self) -> list[tuple[str, int, int]]:
        return [item for frame in self.of(f.Acks) for item in frame.items]

    def directed(self) -> list[f.DirectedItem]:
        return [item for frame in self.of(f.Directed) for item in frame.items]


class Hub:
    """The router, its store and the pump between them, stepped by hand."""

    def __init__(self, path: Path, keys: Keys, *, config: RouterConfig | None = None) -> None:
        self.keys = keys
        self.store = SQLiteStore(path)
        self.clock = NOW
        self.router = Router(keys.ring(), now=lambda: self.clock, config=config)
        #: submitted, waiting for the next transaction
        self.writes: list[Write] = []
        #: a transaction run by the store whose results the router has not had yet
        self.applied: tuple[list[Write], list[Result] | StoreError] | None = None
        self.reads: list[ReadLog | ReadDirected] = []
        #: reads run against the store whose rows the router has not had yet
        self.read_rows: list[tuple[ReadLog | ReadDirected, list[LogEntry] | list[DirectedEntry]]]
        self.read_rows = []
        self._rid = 0

    def close(self) -> None:
        self.store.close()

    def rid(self) -> int:
        self._rid += 1
        return self._rid

    def _collect(self) -> None:
        for action in self.router.actions():
            if isinstance(action, Write):
                self.writes.append(action)
            else:
                self.reads.append(action)

    # --- inputs, as the broker feeds them -------------------------------------------

    def handle(self, peer: FakePeer, event: Event) -> None:
        self.router.handle(peer, event)
        self._collect()

    def connect(self, unit: str, identity: UnitIdentity | None = None) -> FakePeer:
        """A connection of ``unit`` that finished its handshake (nothing run yet)."""
        ident = identity or self.keys[unit]
        peer = FakePeer(unit)
        self.handle(peer, Authenticated(ident.credential, ident.signed))
        return peer

    def enroll(self, signed: SignedCredential) -> str:
        """The HTTP directory upload / roster preload path. Raises AuthError."""
        unit = self.router.enroll(signed)
        self._collect()
        return unit

    def writable(self, peer: FakePeer) -> None:
        peer.room, peer.refused = None, False
        self.router.writable(peer)
        self._collect()

    def disconnect(self, peer: FakePeer) -> None:
        self.router.disconnected(peer)
        self._collect()

    def flush_cursors(self) -> None:
        self.router.flush_cursors()
        self._collect()

    # --- the store ------------------------------------------------------------------

    def apply(self, *, fail: str | None = None) -> None:
        """The writer thread: run every pending write in one transaction (results held).
        With ``fail``, the transaction fails instead and stores nothing."""
        assert self.applied is None, "the worker runs one transaction at a time"
        batch, self.writes = self.writes, []
        commands = [c for w in batch for c in w.commands]
        if fail is None:
            results: list[Result] | StoreError = self.store.apply(commands)
        else:
            results = StoreError(f"batch of {len(commands)} commands not stored: {fail}")
        self.applied = (batch, results)

    def finish(self, *, flush: bool = True) -> None:
        """Back on the loop: each write's results (or the error), then the fan-out (which
        a test may hold back to call ``router.flush()`` itself)."""
        assert self.applied is not None
        (batch, results), self.applied = self.applied, None
        i = 0
        for write in batch:
            if isinstance(results, StoreError):
                self.router.stored(write, results)
            else:
                self.router.stored(write, results[i : i + len(write.commands)])
            i += len(write.commands)
        if flush:
            self.router.flush()
        self._collect()

    def commit(self) -> None:
        """One transaction of every pending write, and its fan-out."""
        self.apply()
        self.finish()

    def fail(self, message: str = "disk I/O error (simulated)") -> None:
        """One transaction of every pending write that fails: nothing stored, each write
        gets the StoreError the worker hands on."""
        self.apply(fail=message)
        self.finish()

    def execute_reads(self) -> None:
        """The reader thread: run the pending reads (rows held)."""
        reads, self.reads = self.reads, []
        for read in reads:
            if isinstance(read, ReadLog):
                rows: list[LogEntry] | list[DirectedEntry] = self.store.read_log(
                    read.sub.op, read.after, read.limit)
            else:
                rows = self.store.pending_directed(read.peer.unit, read.limit)
            self.read_rows.append((read, rows))

    def deliver_reads(self) -> None:
        """Back on the loop: hand each read its rows."""
        done, self.read_rows = self.read_rows, []
        for read, rows in done:
            self._read_done(read, rows)

    def read(self) -> None:
        self.execute_reads()
        self.deliver_reads()

    def fail_reads(self, message: str = "disk I/O error (simulated)") -> None:
        reads, self.reads = self.reads, []
        for read in reads:
            self._read_done(read, StoreError(message))

    def _read_done(self, read: ReadLog | ReadDirected,
                   rows: Sequence[LogEntry] | Sequence[DirectedEntry] | StoreError) -> None:
        if isinstance(read, ReadLog):
            self.router.log_read(read, rows)  # type: ignore[arg-type]
        else:
            self.router.directed_read(read, rows)  # type: ignore[arg-type]
        self._collect()

    def settle(self) -> None:
        """Run transactions and reads until the router asks for nothing more."""
        for _ in range(1000):
            if self.applied is not None:
                self.finish()
            elif self.writes:
                self.commit()
            elif self.reads or self.read_rows:
                self.read()
            else:
                return
        raise AssertionError("the router keeps asking for store work")

    # --- membership, with the project's own admin -----------------------------------

    def admin(self, op: str) -> OperationAdmin:
        return OperationAdmin(self.keys["OCU-BB"], op, now=lambda: self.clock)

    def commit_frame(self, signed: tuple[bytes, bytes]) -> f.Commit:
        return f.Commit(rid=self.rid(), statement=signed[0], signature=signed[1])

    def accept(self, peer: FakePeer, admin: OperationAdmin,
               signed: tuple[bytes, bytes]) -> f.Ok:
        """Send a signed statement, run the store, and advance the admin's chain on ok
        (what ``OperationAdmin.send`` does over a real connection)."""
        frame = self.commit_frame(signed)
        self.handle(peer, frame)
        self.settle()
        ok = peer.ok(frame.rid)
        admin.state = admin._proposed
        return ok

    def create(self, peer: FakePeer, op: str, members: Sequence[str]) -> OperationAdmin:
        """``peer`` (the OCU) creates ``op`` with ``members``, their credentials carried."""
        admin = self.admin(op)
        self.accept(peer, admin, admin.create(f"Operation {op}",
                                              [self.keys[m].signed for m in members]))
        return admin

    def publish(self, peer: FakePeer, op: str, *cids: int, payload: bytes = b"p") -> None:
        """A pub frame with one item per cid (the store is not run)."""
        self.handle(peer, f.Publish(items=tuple(
            f.PublishItem(op, cid, b"h", payload + b"%d" % cid) for cid in cids)))

    def subscribe(self, peer: FakePeer, op: str, after: int | None = 0,
                  senders: tuple[str, ...] | None = None) -> int:
        """Send a sub frame (nothing run); its rid."""
        rid = self.rid()
        self.handle(peer, f.Subscribe(rid=rid, op=op, after=after, senders=senders))
        return rid
