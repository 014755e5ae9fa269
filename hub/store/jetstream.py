"""The JetStream store: the hub's state in a NATS JetStream cluster that several hub nodes
share (``opshub serve --store nats://...``; docs/scale.md has the topology and why).

Where each part of the state lives (every stream and bucket replicated R3 on a cluster,
R1 on a lone server; the servers fsync before they acknowledge, ``sync_interval: always``):

- an operation's log: a stream of its own, ``OPSHUB_OP_<hex id>``, subjects
  ``opshub.op.<hex>.m`` (messages) and ``.c`` (membership statements). The stream's
  sequence is the operation's seq: one contiguous order whichever node a publish reaches.
  Retries are stored once through ``Nats-Msg-Id`` (sender, kind, cid) within
  ``DEDUP_WINDOW``; a statement is accepted only if the last ``.c`` entry is still the one
  it builds on (``Nats-Expected-Last-Subject-Sequence``), so two admins racing on two nodes
  cannot both take an epoch.
- the operations there are: ``OPSHUB_OPERATIONS``, one entry per operation created, which
  every node follows to learn of operations created on another node.
- directed messages: ``OPSHUB_DIRECTED``, subject ``opshub.dir.<hex recipient>``; the id is
  the stream sequence, an acknowledgement deletes the entry.
- key packages: ``OPSHUB_KEYPACKAGES``, one subject per package; a claim deletes the
  package, and a deletion succeeds once, so a package is handed out once across nodes.
  The answer of a claim with a cid: ``OPSHUB_KEYPACKAGE_CLAIMS``, one subject per
  (claimer, op, cid), first writer wins; kept ``DEDUP_WINDOW`` like the publishes' ids.
- the directory and the cursors: key-value buckets ``opshub_directory``,
  ``opshub_cursors``.

Every node follows each operation's log (an ordered consumer), the directed stream and both
buckets, and hands what it sees to its ``Listener`` (the broker), which fans out to its own
connections: no round trip to NATS per delivery. Async throughout, on the hub's own loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import nats
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext, api
from nats.js import errors as jse
from nats.js.kv import KeyValue

from hub.store.jetstream_follow import Feed, Follower, Listener
from hub.store.jetstream_keys import KeyPackages, delete_entry
from hub.store.jetstream_layout import (
    CURSOR_BUCKET,
    DEDUP_WINDOW,
    DIRECTED_STREAM,
    DIRECTORY_BUCKET,
    KP_CLAIMS_STREAM,
    KP_STREAM,
    NO_SUITABLE_PEERS,
    OPS_STREAM,
    WRONG_LAST_SEQUENCE,
    hex_id,
    op_stream,
    op_subject,
)
from protocol import frames as f
from protocol.credentials import SignedCredential
from protocol.errors import Code, StoreError
from protocol.statements import OperationState, Statement, fold, from_log
from protocol.store import (
    AckDirected,
    Appended,
    AppendMessage,
    ApplyStatement,
    ClaimKeyPackages,
    Command,
    DirectedEntry,
    DirectedStored,
    Enroll,
    LogEntry,
    OperationRecord,
    PutKeyPackages,
    Result,
    SaveCursor,
    Snapshot,
    StoreDirected,
)

log = logging.getLogger("opshub.store.jetstream")

#: Seconds a command may wait for the cluster (a leader election takes a few) before it
#: fails with a store error: under the agents' own 10 s, so that they hear of it and
#: publish again (same cid: the retry is deduplicated) rather than give up.
PUBLISH_TIMEOUT = 8.0
#: Seconds a read (a subscriber catching up) keeps trying through an election before the
#: subscription ends with "store failure, subscribe again".
READ_TIMEOUT = 30.0
#: Seconds a batch's pipelined publishes wait for their acks before those still missing
#: are published again one by one (and the pause between such tries).
FIRST_TRY = 2.0
RETRY_PAUSE = 0.2
#: Seconds the first connection to NATS may take (a hub without its store does not start).
CONNECT_WITHIN = 10.0
#: Seconds between two log lines of the same NATS error.
ERROR_EVERY = 30.0
#: Seconds the store may take to close (a hub's shutdown waits for it).
CLOSE_WITHIN = 5.0


class JetStreamStore:
    """The hub's store over NATS JetStream. ``open`` connects and loads, ``follow`` starts
    the feeds; the rest is the store contract (protocol/store.py), async."""

    def __init__(self, servers: list[str], *, name: str = "opshub",
                 timeout: float = PUBLISH_TIMEOUT) -> None:
        if not servers:
            raise StoreError("the JetStream store needs at least one nats:// URL")
        self.servers = servers
        self.name = name
        self.timeout = timeout
        self.replicas = 1
        self._nc: NATS | None = None
        self._js: JetStreamContext | None = None
        self._directory: KeyValue | None = None
        self._cursors: KeyValue | None = None
        self._follower: Follower | None = None
        self._keys: KeyPackages | None = None
        #: op -> {statement hash: its seq}: a statement may be appended only while the
        #: last statement in the log is still the one it builds on (its ``prev``)
        self._statement_seq: dict[str, dict[bytes, int]] = defaultdict(dict)
        self._known_streams: set[str] = set()
        self._closing = False
        self._errors_logged: dict[str, float] = {}

    @property
    def js(self) -> JetStreamContext:
        if self._js is None:
            raise StoreError("the JetStream store is not open")
        return self._js

    @property
    def follower(self) -> Follower:
        if self._follower is None:
            raise StoreError("the JetStream store is not open")
        return self._follower

    @property
    def keys(self) -> KeyPackages:
        if self._keys is None:
            raise StoreError("the JetStream store is not open")
        return self._keys

    # --- start-up ---------------------------------------------------------------------

    async def open(self) -> Snapshot:
        """Connect, create what is missing, and read the state the hub keeps in memory."""
        nc = NATS()
        try:
            # once connected it reconnects for ever (a server restarts, the cluster
            # elects); the first connection must come within CONNECT_WITHIN
            async with asyncio.timeout(CONNECT_WITHIN):
                await nc.connect(
                    servers=self.servers, name=self.name, max_reconnect_attempts=-1,
                    # annotated int in nats-py, which sleeps for it: half a second
                    reconnect_time_wait=0.5,  # type: ignore[arg-type]
                    connect_timeout=2, allow_reconnect=True,
                    error_cb=self._nats_error, disconnected_cb=self._disconnected,
                    reconnected_cb=self._reconnected)
        except Exception as exc:
            with contextlib.suppress(Exception):
                await nc.close()
            why = (f"no answer within {CONNECT_WITHIN:g} s" if isinstance(exc, TimeoutError)
                   else str(exc) or type(exc).__name__)
            raise StoreError(f"cannot reach NATS at {','.join(self.servers)}: {why}"
                             ) from None
        self._nc = nc
        # a lone server keeps one copy; a cluster three (a quorum survives one loss)
        self.replicas = 3 if self._nc._server_info.get("cluster") else 1
        self._js = self._nc.jetstream(timeout=self.timeout, publish_async_max_pending=65536)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT
        while True:  # a stream may be electing a leader (a server just died): wait for it
            try:
                await self._ensure_streams()
                return await self._load()
            except StoreError:
                raise
            except Exception as exc:
                if not _retryable(exc) or loop.time() + RETRY_PAUSE >= deadline:
                    raise StoreError(f"cannot load state from JetStream: "
                                     f"{exc or type(exc).__name__}") from None
                log.warning("loading state from JetStream: %s; trying again",
                            exc or type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)

    async def _ensure_streams(self) -> None:
        common = {"num_replicas": self.replicas, "storage": api.StorageType.FILE}
        await self._add_stream(name=OPS_STREAM, subjects=["opshub.ops.*"],
                               duplicate_window=DEDUP_WINDOW, **common)
        await self._add_stream(name=DIRECTED_STREAM, subjects=["opshub.dir.*"],
                               duplicate_window=DEDUP_WINDOW, **common)
        await self._add_stream(name=KP_STREAM, subjects=["opshub.kp.*.*.*"],
                               max_msgs_per_subject=1, **common)
        await self._add_stream(name=KP_CLAIMS_STREAM, subjects=["opshub.kpc.*.*.*"],
                               max_msgs_per_subject=1, max_age=DEDUP_WINDOW, **common)
        self._directory = await self._bucket(DIRECTORY_BUCKET)
        self._cursors = await self._bucket(CURSOR_BUCKET)
        self._follower = Follower(self.js, self._directory, self._cursors, self._statement)
        self._keys = KeyPackages(self.js)

    async def _bucket(self, name: str) -> KeyValue:
        """A key-value bucket, created by this node or already there (two nodes starting
        at once both try to create it: the second is told it exists)."""
        try:
            return await self.js.create_key_value(bucket=name, history=1,
                                                  replicas=self.replicas,
                                                  storage=api.StorageType.FILE)
        except jse.BadRequestError as exc:
            try:
                return await self.js.key_value(name)
            except jse.BucketNotFoundError:
                # neither created nor there: the cluster is still settling (a new meta
                # leader); open() tries again
                raise TimeoutError(f"bucket {name}: {exc.description}") from None

    async def _add_stream(self, **config: Any) -> None:
        """Create a stream, or accept the one there (created by another node)."""
        try:
            await self.js.add_stream(api.StreamConfig(**config))
        except jse.BadRequestError as exc:
            if exc.err_code != 10058:  # "stream name already in use" with another config
                raise
            info = await self.js.stream_info(config["name"])
            log.info("stream %s exists with other settings (%s); using it as it is",
                     config["name"], info.config.num_replicas)
        self._known_streams.add(config["name"])

    async def _load(self) -> Snapshot:
        snap = Snapshot()
        assert self._directory is not None
        assert self._cursors is not None
        for key in await _keys(self._directory):
            entry = await self._directory.get(key)
            if entry.value:
                body, sig, _ = msgpack.unpackb(entry.value)
                snap.directory[bytes.fromhex(key).decode()] = (body, sig)
        for key in await _keys(self._cursors):
            entry = await self._cursors.get(key)
            unit_hex, op_hex = key.split(".")
            if entry.value:
                snap.cursors[(bytes.fromhex(unit_hex).decode(),
                              bytes.fromhex(op_hex).decode())] = int(entry.value)
        for op in await self._operations():
            record = await self._load_operation(op, snap.directory)
            if record is not None:
                snap.operations[op] = record
        return snap

    async def _operations(self) -> list[str]:
        """Every operation created so far, from OPSHUB_OPERATIONS."""
        info = await self.js.stream_info(OPS_STREAM, subjects_filter="opshub.ops.*")
        subjects = info.state.subjects or {}
        return sorted(bytes.fromhex(s.rsplit(".", 1)[1]).decode() for s in subjects)

    async def _load_operation(self, op: str, directory: dict[str, tuple[bytes, bytes]]
                              ) -> OperationRecord | None:
        """An operation's state up to the log's last entry now, folded from its statements
        (a handful per operation); its feed starts after that entry."""
        stream = op_stream(op)
        try:
            info = await self.js.stream_info(stream)
        except jse.NotFoundError:
            return None  # announced, then its stream was never made (a node died between)
        self._known_streams.add(stream)
        head = info.state.last_seq
        state: OperationState | None = None
        for seq, entry in await self._read(stream, op_subject(op, f.KIND_COMMIT), 1, 1 << 30):
            if seq > head:
                break  # the feed hands it over, in its place among the messages
            body, sig = from_log(entry[3])
            state = fold(state, body, sig, lambda u: _credential(directory, u))
            self._statement_seq[op][state.head] = seq
        if state is None:
            return None
        self.follower.feeds[op] = Feed(head=head)
        return OperationRecord(op=op, name=state.name, admin=state.admin,
                               admin_key=state.admin_key, epoch=state.epoch, head=state.head,
                               members=state.members, last_seq=head)

    async def _read(self, stream: str, subject: str, start: int,
                    limit: int) -> list[tuple[int, list[Any]]]:
        """(stream seq, decoded data) of up to ``limit`` entries on ``subject`` from seq
        ``start``, through an ephemeral pull consumer."""
        sub = await self.js.pull_subscribe(
            subject, stream=stream, config=api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start,
                ack_policy=api.AckPolicy.NONE, inactive_threshold=30.0, mem_storage=True,
                num_replicas=1))
        out: list[tuple[int, list[Any]]] = []
        info = await sub.consumer_info()
        try:
            pending = info.num_pending or 0
            while pending > 0 and len(out) < limit:
                msgs = await sub.fetch(min(limit - len(out), 1024, pending),
                                       timeout=FIRST_TRY)
                for msg in msgs:
                    assert msg.metadata.sequence is not None
                    out.append((msg.metadata.sequence.stream, msgpack.unpackb(msg.data)))
                pending -= len(msgs)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self.js.delete_consumer(stream, info.name)
        return out

    # --- following the cluster --------------------------------------------------------

    async def follow(self, listener: Listener) -> None:
        """Hand ``listener`` everything stored from now on, by any node: each operation's
        log after the head loaded, directed messages, enrolments and cursors."""
        await self.follower.follow(listener)

    def _statement(self, op: str, digest: bytes, seq: int) -> None:
        self._statement_seq[op][digest] = seq

    # --- the write path ---------------------------------------------------------------

    async def apply(self, commands: list[Command]) -> list[Result | StoreError]:
        """Run ``commands``; one result per command, in order, or the StoreError of that
        command. JetStream has no transaction across streams: each command is durable on
        its own and idempotent, so a failed command is retried safely. Appends go out
        pipelined (no wait between them) and the batch waits for their acks at once; those
        not acknowledged within ``FIRST_TRY`` (a leader election) are published again, one
        by one, until ``timeout`` (``Nats-Msg-Id`` keeps a copy that did arrive from
        counting twice)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        results: list[Result | StoreError] = [None] * len(commands)
        sent: dict[asyncio.Future[Any], _Sent] = {}
        puts: list[tuple[int, Awaitable[Any]]] = []
        for i, cmd in enumerate(commands):
            try:
                match cmd:
                    case AppendMessage():
                        one = _entry(cmd, i)
                        sent[await self._send(one)] = one
                    case StoreDirected():
                        one = _directed_message(cmd, i)
                        sent[await self._send(one)] = one
                    case Enroll():
                        assert self._directory is not None
                        puts.append((i, self._directory.put(hex_id(cmd.unit), msgpack.packb(
                            [cmd.body, cmd.signature, cmd.issued_at]))))
                    case SaveCursor():
                        assert self._cursors is not None
                        puts.append((i, self._cursors.put(f"{hex_id(cmd.unit)}.{hex_id(cmd.op)}",
                                                          str(cmd.seq).encode())))
                    case ApplyStatement():
                        results[i] = await self._apply_statement(cmd, deadline)
                    case AckDirected():
                        for d in cmd.ids:
                            await delete_entry(self.js, DIRECTED_STREAM, d)
                    case PutKeyPackages():
                        results[i] = await self.keys.put(cmd)
                    case ClaimKeyPackages():
                        results[i] = await self.keys.claim(cmd)
            except Exception as exc:
                results[i] = _store_error(exc, type(cmd).__name__)
        again: list[_Sent] = []
        if sent:
            done, late = await asyncio.wait(sent, timeout=FIRST_TRY)
            for fut in late:
                fut.cancel()
            for fut, one in sent.items():
                why = fut.exception() if fut in done else TimeoutError()
                if why is None:
                    results[one.index] = one.result(fut.result())
                elif _retryable(why):
                    again.append(one)
                else:
                    results[one.index] = _store_error(why, one.what)
        retried = [self._publish(one.subject, one.data, one.headers, deadline) for one in again]
        outcomes = await asyncio.gather(*retried, *(put for _, put in puts),
                                        return_exceptions=True)
        for one, ack in zip(again, outcomes, strict=False):
            results[one.index] = (_store_error(ack, one.what) if isinstance(ack, BaseException)
                                  else one.result(ack))
        for (i, _), out in zip(puts, outcomes[len(again):], strict=True):
            if isinstance(out, BaseException):
                results[i] = _store_error(out, type(commands[i]).__name__)
        return results

    async def _send(self, one: _Sent) -> asyncio.Future[api.PubAck]:
        return await self.js.publish_async(one.subject, one.data,
                                           headers=one.headers)

    async def _publish(self, subject: str, data: bytes, headers: dict[str, str] | None,
                       deadline: float) -> api.PubAck:
        """Publish and wait for the ack, again and again while the stream has no leader
        (no responders, or no answer) until ``deadline`` (loop time)."""
        loop = asyncio.get_running_loop()
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError()
            try:
                return await self.js.publish(subject, data, timeout=min(left, FIRST_TRY),
                                             headers=headers)
            except Exception as exc:
                if not _retryable(exc) or deadline - loop.time() <= RETRY_PAUSE:
                    raise
                await asyncio.sleep(RETRY_PAUSE)

    async def _apply_statement(self, cmd: ApplyStatement, deadline: float) -> Appended:
        """Append the statement to the operation's log only if the last statement there
        is the one it builds on; a new operation gets its stream and is announced."""
        op = cmd.op
        stream = op_stream(op)
        loop = asyncio.get_running_loop()
        while stream not in self._known_streams:  # the cluster may be settling: try again
            try:
                await self._add_stream(
                    name=stream, subjects=[f"opshub.op.{hex_id(op)}.*"],
                    num_replicas=self.replicas, storage=api.StorageType.FILE,
                    duplicate_window=DEDUP_WINDOW)
            except Exception as exc:
                if not _retryable(exc) or deadline - loop.time() <= RETRY_PAUSE:
                    raise
                await asyncio.sleep(RETRY_PAUSE)
        entry = cmd.message
        data = msgpack.packb([entry.sender, entry.kind, entry.header, entry.payload,
                              entry.at_ms], use_bin_type=True)
        prev = Statement.from_bytes(cmd.body).prev
        expected = 0 if cmd.epoch == 0 else self._statement_seq[op].get(prev)
        if expected is None:  # cannot happen: the router checked it against the log
            raise StoreError(f"statement for epoch {cmd.epoch} of {op!r} builds on one this "
                             f"node has not seen", code=Code.WRONG_EPOCH)
        try:
            ack = await self._publish(op_subject(op, f.KIND_COMMIT), data, {
                "Nats-Msg-Id": f"{entry.sender}|{entry.kind}|{entry.cid}|{cmd.head.hex()}",
                "Nats-Expected-Last-Subject-Sequence": str(expected)}, deadline)
        except jse.APIError as exc:
            if exc.err_code in WRONG_LAST_SEQUENCE:
                if cmd.epoch == 0:
                    raise StoreError(f"operation {op!r} was created meanwhile on another "
                                     f"hub node", code=Code.OPERATION_EXISTS) from None
                raise StoreError(f"another statement took epoch {cmd.epoch} of {op!r} first "
                                 f"(on another hub node): read the log and build on it",
                                 code=Code.WRONG_EPOCH) from None
            raise
        self._statement_seq[op][cmd.head] = ack.seq
        if cmd.epoch == 0:  # announce it, so that every node follows its log
            await self._publish(f"opshub.ops.{hex_id(op)}", b"", {"Nats-Msg-Id": f"op|{op}"},
                                deadline)
        return Appended(op, ack.seq, duplicate=bool(ack.duplicate))

    # --- reads while serving ----------------------------------------------------------

    async def read_log(self, op: str, after: int, limit: int) -> list[LogEntry]:
        recent = self.follower.recent(op, after, limit)
        if recent is not None:
            return recent
        try:
            rows = await self._read_retrying(op_stream(op), f"opshub.op.{hex_id(op)}.*",
                                             after + 1, limit)
        except jse.NotFoundError:
            return []
        except Exception as exc:
            raise _store_error(exc, f"reading the log of {op!r}") from None
        return [LogEntry(seq, *data) for seq, data in rows]

    async def pending_directed(self, recipient: str, limit: int) -> list[DirectedEntry]:
        try:
            rows = await self._read_retrying(DIRECTED_STREAM,
                                             f"opshub.dir.{hex_id(recipient)}", 1, limit)
        except Exception as exc:
            raise _store_error(exc, f"reading directed messages of {recipient!r}") from None
        return [DirectedEntry(seq, *data) for seq, data in rows]

    async def _read_retrying(self, stream: str, subject: str, start: int,
                             limit: int) -> list[tuple[int, list[Any]]]:
        """``_read``, tried again while the stream has no leader, up to ``timeout``: a
        subscriber catching up during an election waits instead of being ended."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT
        while True:
            try:
                return await self._read(stream, subject, start, limit)
            except Exception as exc:
                if not _retryable(exc) or loop.time() + RETRY_PAUSE >= deadline:
                    raise
                log.info("reading %s: %s; trying again", stream, exc or type(exc).__name__)
                await asyncio.sleep(RETRY_PAUSE)

    async def close(self) -> None:
        """Stop following and close the connection, within CLOSE_WITHIN seconds whatever
        the cluster does (everything acknowledged is stored already)."""
        self._closing = True
        try:
            async with asyncio.timeout(CLOSE_WITHIN):
                if self._follower is not None:
                    await self._follower.close()
                if self._nc is not None and not self._nc.is_closed:
                    with contextlib.suppress(Exception):
                        await self._nc.drain()
        except TimeoutError:
            log.warning("closing the NATS connection took over %g s; closed anyway",
                        CLOSE_WITHIN)
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):
                await self._nc.close()

    # --- the connection's events ------------------------------------------------------

    async def _nats_error(self, exc: Exception) -> None:
        """One line per kind of error every ERROR_EVERY seconds: a server that is down is
        retried twice a second, and the log must not fill with it."""
        what = str(exc) or type(exc).__name__
        now = asyncio.get_running_loop().time()
        if now - self._errors_logged.get(what, -ERROR_EVERY) >= ERROR_EVERY:
            self._errors_logged[what] = now
            log.warning("NATS: %s", what)

    async def _disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS: disconnected from %s; reconnecting", self._url())

    async def _reconnected(self) -> None:
        log.warning("NATS: reconnected to %s", self._url())

    def _url(self) -> str:
        nc = self._nc
        url = nc.connected_url if nc is not None else None
        return f"{url.hostname}:{url.port}" if url is not None else "?"


@dataclass(frozen=True, slots=True)
class _Sent:
    """One publish of a batch, kept to publish it again if its ack does not come."""

    index: int  # of its command in the batch
    subject: str
    data: bytes
    headers: dict[str, str] | None
    result: Callable[[api.PubAck], Result]
    what: str


def _entry(cmd: AppendMessage, index: int) -> _Sent:
    data = msgpack.packb([cmd.sender, cmd.kind, cmd.header, cmd.payload, cmd.at_ms],
                         use_bin_type=True)
    op = cmd.op
    return _Sent(index, op_subject(op, cmd.kind), data,
                 {"Nats-Msg-Id": f"{cmd.sender}|{cmd.kind}|{cmd.cid}"},
                 lambda ack: Appended(op, ack.seq, duplicate=bool(ack.duplicate)),
                 f"message {cmd.cid} of {cmd.sender} to {op!r}")


def _directed_message(cmd: StoreDirected, index: int) -> _Sent:
    headers = None
    if cmd.cid is not None:  # protocol.md 7.1: a cid names one message
        headers = {"Nats-Msg-Id": f"{cmd.op}|{cmd.sender}|{cmd.recipient}|{cmd.cid}"}
    data = msgpack.packb([cmd.op, cmd.sender, cmd.payload, cmd.at_ms], use_bin_type=True)
    return _Sent(index, f"opshub.dir.{hex_id(cmd.recipient)}", data, headers,
                 lambda ack: DirectedStored(ack.seq, duplicate=bool(ack.duplicate)),
                 f"directed message to {cmd.recipient}")


def _retryable(exc: BaseException) -> bool:
    """No leader (yet), no peers to place a stream on (yet), no answer, or a lost
    connection: worth another try. A refusal (bad request, wrong last sequence) is not."""
    if isinstance(exc, jse.BadRequestError) and exc.err_code == NO_SUITABLE_PEERS:
        return True
    if isinstance(exc, jse.BadRequestError | jse.NotFoundError):
        return False
    return isinstance(exc, jse.NoStreamResponseError | jse.ServiceUnavailableError
                      | jse.ServerError | TimeoutError | asyncio.TimeoutError
                      | nats.errors.Error)


def _store_error(exc: BaseException, what: str) -> StoreError:
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        why = "the cluster did not answer in time (a leader election?)"
    else:
        why = str(exc) or type(exc).__name__
    return StoreError(f"{what} not stored in JetStream: {why}")


def _credential(directory: dict[str, tuple[bytes, bytes]],
                unit: str) -> SignedCredential | None:
    pair = directory.get(unit)
    return None if pair is None else SignedCredential(*pair)


async def _keys(kv: KeyValue) -> list[str]:
    try:
        return list(await kv.keys())
    except jse.NoKeysError:
        return []

