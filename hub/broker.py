"""Broker: the async pump around the hub's Router (protocol/router.py).

It hands the router each authenticated frame, runs the store work the router asks for
(writes through the group-committing ``StoreWorker``, log and directed reads as tasks
owned by the connection they serve), feeds the results back, and tells the router when
a transaction has committed (the fan-out) and when a full connection has room again.
Every decision is the router's; nothing here looks inside a frame. What the router
reports for the audit trail goes to ``audit`` (hub/audit.py) as it happens.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Protocol, assert_never, cast

from hub.audit import AuditTrail, NoAudit
from hub.config import HubConfig
from hub.metrics import Metrics
from hub.store.jetstream import JetStreamStore
from hub.store.sqlite import SQLiteStore
from hub.store.worker import StoreWorker
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import StoreError
from protocol.router import Router
from protocol.router_io import Peer, ReadDirected, ReadLog, RouterConfig, Write
from protocol.session import Event
from protocol.store import DirectedEntry, LogEntry, Result


class Outbox(Peer, Protocol):
    """A connection as the pump needs it: a Peer that also owns tasks."""

    closed: bool

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task owned by the connection (cancelled when it closes)."""


class Broker:
    def __init__(self, config: HubConfig, worker: StoreWorker, *, now: Callable[[], float],
                 metrics: Metrics | None = None, audit: AuditTrail | None = None) -> None:
        self.config = config
        self.worker = worker
        #: the node's audit trail (the connections record failed handshakes in it too)
        self.audit: AuditTrail | NoAudit = audit if audit is not None else NoAudit()
        self.router = Router(
            AuthorityRing(list(config.authorities)), now=now,
            config=RouterConfig(max_batch=config.limits.max_batch,
                                max_operations_per_unit=config.max_operations_per_unit,
                                catchup_page=config.catchup_page,
                                per_delivery=config.fanout == "per-delivery",
                                shared=isinstance(worker.store, JetStreamStore)))
        self.metrics = metrics or Metrics()
        self.metrics.counts = self.router.counts
        worker.after_commit = self._after_commit

    def load(self) -> None:
        """Give the router what the SQLite store kept (blocking; at start-up)."""
        assert isinstance(self.worker.store, SQLiteStore)
        self.router.load(self.worker.store.load())

    async def open(self) -> None:
        """Give the router what the JetStream store holds, then follow what any node stores
        from there on (at start-up)."""
        assert isinstance(self.worker.store, JetStreamStore)
        self.router.load(await self.worker.store.open())
        await self.worker.store.follow(self)

    # --- a shared store's feed (hub/store/jetstream.py Listener) -----------------------

    def entries(self, op: str, entries: list[LogEntry]) -> None:
        self.router.observed(op, entries)
        self.router.flush()
        self._run()

    def directed(self, recipient: str, entry: DirectedEntry) -> None:
        self.router.directed_elsewhere(recipient, entry)

    def enrolled(self, body: bytes, signature: bytes) -> None:
        self.router.enrolled_elsewhere(SignedCredential(body, signature))

    def cursor(self, unit: str, op: str, seq: int) -> None:
        self.router.cursor_elsewhere(unit, op, seq)

    def lookup(self, unit: str) -> SignedCredential | None:
        return self.router.lookup(unit)

    def enroll(self, signed: SignedCredential, *, by: str | None = None) -> str:
        """Enroll a credential (HTTP upload by unit ``by``, roster preload); the audit
        trail records it. Raises AuthError."""
        unit = self.router.enroll(signed, by=by)
        self._run()
        return unit

    def handle(self, conn: Outbox, event: Event) -> None:
        """Serve one event of an authenticated connection. Never raises for bad requests."""
        self.metrics.frames_in += 1
        self.router.handle(conn, event)
        self._run()

    def disconnected(self, conn: Outbox) -> None:
        self.router.disconnected(conn)

    def writable(self, conn: Outbox) -> None:
        """A connection that refused a delivery has room again."""
        self.router.writable(conn)
        self._run()

    def flush_cursors(self) -> None:
        self.router.flush_cursors()
        self.router.expire()
        self._run()

    # --- running the router's store work ---------------------------------------------

    def _run(self) -> None:
        for event in self.router.audit.drain():
            self.audit.reported(event)
        for action in self.router.actions():
            match action:
                case Write():
                    self.worker.submit(action.commands, partial(self._stored, action))
                case ReadLog():
                    cast(Outbox, action.sub.peer).spawn(self._read_log(action))
                case ReadDirected():
                    cast(Outbox, action.peer).spawn(self._read_directed(action))
                case _:
                    assert_never(action)

    def _stored(self, write: Write, results: list[Result] | StoreError) -> None:
        self.router.stored(write, results)
        self._run()

    def _after_commit(self) -> None:
        self.router.flush()
        self._run()

    async def _read_log(self, read: ReadLog) -> None:
        try:
            rows = await self.worker.read_log(read.sub.op, read.after, read.limit)
        except StoreError as exc:
            self.router.log_read(read, exc)
        else:
            self.router.log_read(read, rows)
        self._run()

    async def _read_directed(self, read: ReadDirected) -> None:
        try:
            rows = await self.worker.pending_directed(read.peer.unit, read.limit)
        except StoreError as exc:
            self.router.directed_read(read, exc)
        else:
            self.router.directed_read(read, rows)
        self._run()
