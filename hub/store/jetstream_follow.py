"""How a hub node follows what every node stores in JetStream (hub/store/jetstream.py):
each operation's log (an ordered consumer per operation, from the head the node loaded), the
operations created anywhere, the directed messages, and the directory and cursor buckets.
What arrives is handed to the node's ``Listener`` (the broker), which fans out to the node's
own connections: no round trip to NATS per delivery. The last entries of each operation are
kept in memory for subscribers a little behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import msgpack
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api
from nats.js import errors as jse
from nats.js.kv import KeyValue

from hub.store.jetstream_layout import (
    DIRECTED_STREAM,
    HEARTBEAT,
    OPS_STREAM,
    RECENT,
    hex_id,
    op_stream,
)
from protocol import frames as f
from protocol.statements import from_log, statement_hash
from protocol.store import DirectedEntry, LogEntry

log = logging.getLogger("opshub.store.jetstream")


class Listener(Protocol):
    """What a node does with what it sees in the cluster (hub/broker.py)."""

    def entries(self, op: str, entries: list[LogEntry]) -> None:
        """The next entries of ``op``'s log, in order, from seq head + 1."""

    def directed(self, recipient: str, entry: DirectedEntry) -> None: ...

    def enrolled(self, body: bytes, signature: bytes) -> None: ...

    def cursor(self, unit: str, op: str, seq: int) -> None: ...


@dataclass(slots=True)
class Feed:
    """One operation's log as this node follows it."""

    sub: JetStreamContext.PushSubscription | None = None
    head: int = 0  # last seq handed to the listener
    pending: list[LogEntry] | None = None
    #: the last RECENT entries handed over: a subscriber a little behind reads them from
    #: here, not from NATS (three round trips a page: it would chase the head for ever)
    recent: deque[LogEntry] = field(default_factory=lambda: deque(maxlen=RECENT))


class Follower:
    """The feeds of one node. ``feeds`` holds the operations known at load (with their
    heads); ``follow`` starts everything; ``on_statement`` hears of every statement seen."""

    def __init__(self, js: JetStreamContext, directory: KeyValue, cursors: KeyValue,
                 on_statement: Callable[[str, bytes, int], None]) -> None:
        self.js = js
        self.feeds: dict[str, Feed] = {}
        self._directory = directory
        self._cursors = cursors
        self._on_statement = on_statement
        self._listener: Listener | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._subs: list[Any] = []
        self._flush_scheduled = False
        self._closing = False

    async def follow(self, listener: Listener) -> None:
        """Hand ``listener`` everything stored from now on, by any node: each operation's
        log after the head loaded, directed messages, enrolments and cursors."""
        self._listener = listener
        for op in list(self.feeds):
            await self._follow_log(op)
        info = await self.js.stream_info(OPS_STREAM)
        self._subs.append(await self.js.subscribe(
            "opshub.ops.*", stream=OPS_STREAM, cb=self._on_operation, ordered_consumer=True,
            idle_heartbeat=HEARTBEAT, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=1)))
        info = await self.js.stream_info(DIRECTED_STREAM)
        self._subs.append(await self.js.subscribe(
            "opshub.dir.*", stream=DIRECTED_STREAM, cb=self._on_directed,
            ordered_consumer=True, idle_heartbeat=HEARTBEAT,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=info.state.last_seq + 1)))
        assert self._directory is not None
        assert self._cursors is not None
        self._spawn(self._watch(self._directory, self._on_enrolled))
        self._spawn(self._watch(self._cursors, self._on_cursor))

    async def _on_operation(self, msg: Msg) -> None:
        op = bytes.fromhex(msg.subject.rsplit(".", 1)[1]).decode()
        if op not in self.feeds:
            self.feeds[op] = Feed()
            # a task of its own: the stream may take a moment to appear, and a callback
            # that waits holds up the subscription (and the connection's drain at close)
            self._spawn(self._follow_log(op))

    async def _follow_log(self, op: str) -> None:
        feed = self.feeds[op]
        stream = op_stream(op)
        for attempt in range(50):  # the announcing node creates the stream just before
            try:
                feed.sub = await self.js.subscribe(
                    f"opshub.op.{hex_id(op)}.*", stream=stream,
                    cb=partial(self._on_entry, op), ordered_consumer=True,
                    idle_heartbeat=HEARTBEAT,
                    deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                    config=api.ConsumerConfig(opt_start_seq=feed.head + 1),
                    pending_msgs_limit=1 << 20, pending_bytes_limit=1 << 30)
                return
            except jse.NotFoundError:
                await asyncio.sleep(0.1 * (attempt + 1))
        log.error("operation %r was announced but its stream %s never appeared", op, stream)

    async def _restart_log(self, op: str) -> None:
        feed = self.feeds[op]
        sub, feed.sub = feed.sub, None
        if sub is not None:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        await self._follow_log(op)

    async def _on_entry(self, op: str, msg: Msg) -> None:
        feed = self.feeds[op]
        meta = msg.metadata
        assert meta.sequence is not None
        seq = meta.sequence.stream
        if seq <= feed.head:
            return  # an ordered consumer restarted a little before where it was
        if seq != feed.head + 1:
            log.error("operation %r: entry %d follows %d; the feed restarts", op, seq, feed.head)
            self._spawn(self._restart_log(op))
            return
        sender, kind, header, payload, at_ms = msgpack.unpackb(msg.data)
        entry = LogEntry(seq, sender, kind, header, payload, at_ms)
        feed.head = seq
        if kind == f.KIND_COMMIT:
            self._on_statement(op, statement_hash(from_log(payload)[0]), seq)
        if feed.pending is None:
            feed.pending = []
        feed.pending.append(entry)
        feed.recent.append(entry)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush_feeds)

    def _flush_feeds(self) -> None:
        """Everything the feeds received since the last loop turn, one call per operation:
        the node's fan-out then writes once per connection, as after a SQLite batch."""
        self._flush_scheduled = False
        if self._listener is None:
            return
        for op, feed in self.feeds.items():
            if feed.pending:
                entries, feed.pending = feed.pending, None
                self._listener.entries(op, entries)

    async def _on_directed(self, msg: Msg) -> None:
        if self._listener is None:
            return
        assert msg.metadata.sequence is not None
        op, sender, payload, at_ms = msgpack.unpackb(msg.data)
        recipient = bytes.fromhex(msg.subject.rsplit(".", 1)[1]).decode()
        self._listener.directed(recipient, DirectedEntry(
            msg.metadata.sequence.stream, op, sender, payload, at_ms))

    def _on_enrolled(self, key: str, value: bytes) -> None:
        if self._listener is not None:
            body, sig, _ = msgpack.unpackb(value)
            self._listener.enrolled(body, sig)

    def _on_cursor(self, key: str, value: bytes) -> None:
        if self._listener is not None:
            unit_hex, op_hex = key.split(".")
            self._listener.cursor(bytes.fromhex(unit_hex).decode(),
                                  bytes.fromhex(op_hex).decode(), int(value))

    async def _watch(self, kv: KeyValue, on: Callable[[str, bytes], None]) -> None:
        """Follow a bucket's changes from now on (the snapshot has what was there)."""
        while not self._closing:
            try:
                watcher = await kv.watchall(include_history=False, ignore_deletes=True)
                initial = True
                async for entry in watcher:
                    if entry is None:
                        initial = False
                        continue
                    if not initial and entry.value:
                        on(entry.key, entry.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("watching %s stopped (%s); watching again", kv._name, exc)
                await asyncio.sleep(HEARTBEAT)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def recent(self, op: str, after: int, limit: int) -> list[LogEntry] | None:
        """Entries after ``after`` from memory, if this node still holds them (else None)."""
        feed = self.feeds.get(op)
        if feed is not None and feed.recent and feed.recent[0].seq <= after + 1 <= feed.head:
            start = after + 1 - feed.recent[0].seq
            return list(itertools.islice(feed.recent, start, start + limit))
        return None

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
