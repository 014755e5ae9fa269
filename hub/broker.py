"""The Broker: operations, membership checks, publish, subscribe, fan-out, directed messages.

It keeps the hub's in-memory state (operations, directory, subscriptions, heads,
cursors) and turns authenticated requests into store commands and outbound
frames. Deliveries of one transaction are encoded once per operation and queued
on every live subscriber: one write per connection per commit, never an await per
recipient. It never decrypts: headers and payloads are opaque bytes. The only I/O
it does is through ``StoreWorker`` and each connection's ``Outbox``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, assert_never

import msgpack

from hub.config import HubConfig
from hub.metrics import Metrics
from hub.store.base import (
    AckDirected,
    Appended,
    AppendMessage,
    ApplyStatement,
    ClaimKeyPackages,
    Command,
    DirectedStored,
    Enroll,
    KeyPackagesClaimed,
    KeyPackagesStored,
    PutKeyPackages,
    Result,
    SaveCursor,
    StoreDirected,
)
from hub.store.worker import StoreWorker
from protocol import codec
from protocol import frames as f
from protocol.credentials import AuthorityRing, SignedCredential
from protocol.errors import AuthError, Code, RequestError, StoreError
from protocol.keypackages import SignedKeyPackage
from protocol.session import Authenticated, Event
from protocol.statements import OperationState, Statement, statement_hash

log = logging.getLogger("opshub.broker")

#: Encoded deliver frames are split so that one frame stays well under max_frame.
_DELIVER_CHUNK_BYTES = 1024 * 1024


class Outbox(Protocol):
    """What the broker needs of a connection: queue bytes, run tasks, close."""

    unit: str
    closed: bool

    def enqueue(self, data: bytes) -> None:
        """Queue a control frame (ack, ok, error); closes a connection that hoards them."""

    def offer(self, data: bytes) -> bool:
        """Queue a delivery frame if the outbound queue has room; False if it has not."""

    async def wait_writable(self) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...


@dataclass(eq=False, slots=True)
class Subscription:
    conn: Outbox
    op: str
    next_seq: int
    live: bool = False
    ended: bool = False
    #: deliver application messages only from these senders (None: all)
    senders: frozenset[str] | None = None

    def wants(self, entry: Sequence[Any]) -> bool:
        """Whether a delivery row [seq, sender, kind, ...] goes to this subscriber."""
        return self.senders is None or entry[2] != f.KIND_MESSAGE or entry[1] in self.senders


@dataclass(slots=True)
class _Pending:
    """Entries committed in the current transaction, waiting for the fan-out."""

    #: op -> wire-ready delivery rows [seq, sender, kind, header, payload, at_ms]
    entries: dict[str, list[list[Any]]] = field(default_factory=lambda: defaultdict(list))
    #: (op, seq of the removing statement, removed units)
    removals: list[tuple[str, int, frozenset[str]]] = field(default_factory=list)


class Broker:
    def __init__(self, config: HubConfig, worker: StoreWorker, *, now: Callable[[], float],
                 metrics: Metrics | None = None) -> None:
        self.config = config
        self.worker = worker
        self.now = now
        self.metrics = metrics or Metrics()
        self.ring = AuthorityRing(list(config.authorities))
        self.ops: dict[str, OperationState] = {}
        self.heads: dict[str, int] = {}
        self.directory: dict[str, SignedCredential] = {}
        self.cursors: dict[tuple[str, str], int] = {}
        self._dirty_cursors: set[tuple[str, str]] = set()
        self.subs: dict[str, set[Subscription]] = defaultdict(set)
        self.conn_subs: dict[Outbox, dict[str, Subscription]] = {}
        self.by_unit: dict[str, set[Outbox]] = defaultdict(set)
        self._pending = _Pending()
        #: statement hash -> retries of it waiting for its transaction (conn, rid)
        self._committing: dict[bytes, list[tuple[Outbox, int]]] = {}
        worker.after_commit = self._flush_fanout

    # --- state ----------------------------------------------------------------------

    def load(self) -> None:
        """Load operations, directory and cursors from the store (blocking; at start-up)."""
        snap = self.worker.store.load()
        for rec in snap.operations.values():
            self.ops[rec.op] = OperationState(
                op=rec.op, name=rec.name, admin=rec.admin, admin_key=rec.admin_key,
                epoch=rec.epoch, head=rec.head, members=rec.members)
            self.heads[rec.op] = rec.last_seq
        self.directory = {u: SignedCredential(b, s) for u, (b, s) in snap.directory.items()}
        self.cursors = dict(snap.cursors)

    def lookup(self, unit: str) -> SignedCredential | None:
        return self.directory.get(unit)

    def enroll(self, signed: SignedCredential) -> str:
        """Verify and enroll a credential (HTTP directory upload, roster preload).
        Raises AuthError naming what is wrong."""
        cred = self.ring.verify(signed, now=int(self.now()))
        current = self.directory.get(cred.unit)
        if current is not None and current.credential.issued_at > cred.issued_at:
            raise AuthError(
                f"credential of {cred.unit!r} issued at {cred.issued_at} is superseded by one"
                f" issued at {current.credential.issued_at}", code=Code.BAD_CREDENTIAL)
        self._enroll(signed, cred.issued_at)
        return cred.unit

    def _enroll(self, signed: SignedCredential, issued_at: int) -> None:
        """Enroll unless the directory already holds a credential issued later (an older
        credential must never replace a newer one, e.g. after a key compromise)."""
        unit = signed.credential.unit
        current = self.directory.get(unit)
        if current is not None and current.credential.issued_at > issued_at:
            return
        self.directory[unit] = signed
        self.worker.submit([Enroll(unit, signed.body, signed.signature, issued_at)],
                           _log_failure)

    # --- connections ----------------------------------------------------------------

    def handle(self, conn: Outbox, event: Event) -> None:
        """Serve one event of an authenticated connection. Never raises for bad requests."""
        self.metrics.frames_in += 1
        match event:
            case Authenticated():
                self._connected(conn, event)
            case f.Publish():
                self._publish(conn, event)
            case f.Subscribe():
                self._guard(conn, event.rid, self._subscribe, conn, event)
            case f.Unsubscribe():
                self._guard(conn, event.rid, self._unsubscribe, conn, event)
            case f.Ack():
                self._ack(conn, event)
            case f.Commit():
                self._guard(conn, event.rid, self._commit, conn, event)
            case f.SendDirected():
                self._guard(conn, event.rid, self._send_directed, conn, event)
            case f.DirectedAck():
                self.worker.submit([AckDirected(conn.unit, event.ids)], _log_failure)
            case f.PutKeyPackages():
                self._guard(conn, event.rid, self._put_key_packages, conn, event)
            case f.ClaimKeyPackages():
                self._guard(conn, event.rid, self._claim_key_packages, conn, event)
            case f.Hello():  # the session never lets a second hello through
                raise AssertionError("hello after handshake")
            case _:
                assert_never(event)

    def disconnected(self, conn: Outbox) -> None:
        for sub in self.conn_subs.pop(conn, {}).values():
            sub.ended = True
            self.subs[sub.op].discard(sub)
        units = self.by_unit.get(conn.unit)
        if units is not None:
            units.discard(conn)
            if not units:
                del self.by_unit[conn.unit]

    def _connected(self, conn: Outbox, auth: Authenticated) -> None:
        unit = auth.credential.unit
        current = self.directory.get(unit)
        if current is None or current.body != auth.signed.body:
            # open enrollment, or a newer credential than the one on file
            self._enroll(auth.signed, auth.credential.issued_at)
        self.by_unit[unit].add(conn)
        self.conn_subs[conn] = {}
        conn.spawn(self._push_directed(conn))

    def _guard(self, conn: Outbox, rid: int, fn: Callable[..., None], *args: Any) -> None:
        try:
            fn(*args)
        except RequestError as exc:
            self.send_error(conn, exc.code, exc.message, rid=rid)

    def send_error(self, conn: Outbox, code: str, message: str, **ref: Any) -> None:
        self.metrics.errors[code] += 1
        conn.enqueue(codec.encode(f.Error(code=code, message=f.bounded(message), **ref)))

    def _member_state(self, unit: str, op: str) -> OperationState:
        st = self.ops.get(op)
        if st is None:
            raise RequestError(f"no operation {op!r} on this hub", code=Code.UNKNOWN_OPERATION)
        if unit not in st.members:
            raise RequestError(f"unit {unit!r} is not a member of operation {op!r}",
                               code=Code.NOT_MEMBER)
        return st

    # --- publish --------------------------------------------------------------------

    def _publish(self, conn: Outbox, frame: f.Publish) -> None:
        at_ms = int(self.now() * 1000)
        cmds: list[Command] = []
        for item in frame.items:
            st = self.ops.get(item.op)
            if st is None or conn.unit not in st.members:
                try:
                    self._member_state(conn.unit, item.op)
                except RequestError as exc:
                    self.send_error(conn, exc.code, exc.message, op=item.op, cid=item.cid)
                continue
            cmds.append(AppendMessage(item.op, conn.unit, item.cid, f.KIND_MESSAGE,
                                      item.header, item.payload, at_ms))
        if cmds:
            self.worker.submit(cmds, lambda res: self._published(conn, cmds, res))

    def _published(self, conn: Outbox, cmds: list[Command],
                   results: list[Result] | StoreError) -> None:
        if isinstance(results, StoreError):
            for cmd in cmds:
                assert isinstance(cmd, AppendMessage)
                self.send_error(conn, results.code, f"not stored, retry: {results.message}",
                                op=cmd.op, cid=cmd.cid)
            return
        acks = []
        for cmd, res in zip(cmds, results, strict=True):
            assert isinstance(cmd, AppendMessage)
            assert isinstance(res, Appended)
            acks.append([cmd.op, cmd.cid, res.seq])
            if res.duplicate:
                self.metrics.duplicates += 1
            else:
                self.metrics.messages_in += 1
                self._pending.entries[cmd.op].append(
                    [res.seq, cmd.sender, cmd.kind, cmd.header, cmd.payload, cmd.at_ms])
        conn.enqueue(msgpack.packb({"t": f.Acks.T, "items": acks}, use_bin_type=True))

    # --- fan-out ----------------------------------------------------------------------

    def _flush_fanout(self) -> None:
        """After a transaction: one encoded frame per operation chunk, queued on each
        live subscriber. Runs on the loop, with no await between head update and send.
        A removed member gets the log up to its removal statement, then ``ended``."""
        pending, self._pending = self._pending, _Pending()
        removals: dict[str, list[tuple[int, frozenset[str]]]] = defaultdict(list)
        for op, seq, units in pending.removals:
            removals[op].append((seq, units))
        max_items = self.config.limits.max_batch
        for op, entries in pending.entries.items():
            self.heads[op] = entries[-1][0]
            start = 0
            for seq, units in sorted(removals.pop(op, [])):
                cut = next(i for i, e in enumerate(entries) if e[0] == seq) + 1
                for chunk in _chunks(entries[start:cut], max_items):
                    self._deliver_live(op, chunk)
                self._end_units(op, units)
                start = cut
            for chunk in _chunks(entries[start:], max_items):
                self._deliver_live(op, chunk)

    def _end_units(self, op: str, units: frozenset[str]) -> None:
        for sub in list(self.subs.get(op, ())):
            if sub.conn.unit in units:
                self._end(sub, "removed from the operation")

    def _deliver_live(self, op: str, chunk: Sequence[Sequence[Any]]) -> None:
        subs = self.subs.get(op)
        if not subs:
            return
        if self.config.fanout == "per-delivery" and len(chunk) > 1:
            for entry in chunk:  # the benchmark's naive reference design
                self._deliver_live(op, [entry])
            return
        first, last = chunk[0][0], chunk[-1][0]
        data = _encode_deliver(op, chunk)
        filtered: dict[frozenset[str], tuple[bytes | None, int]] = {}
        for sub in subs:
            if not sub.live:
                continue  # its catch-up task reads the store
            if sub.senders is not None and first <= sub.next_seq <= last:
                # one encoding per distinct filter (and only for a whole chunk); a chunk
                # with nothing for it advances it all the same
                enc = filtered.get(sub.senders) if sub.next_seq == first else None
                if enc is None:
                    rows = [e for e in chunk if e[0] >= sub.next_seq and sub.wants(e)]
                    enc = (_encode_deliver(op, rows) if rows else None, len(rows))
                    if sub.next_seq == first:
                        filtered[sub.senders] = enc
                body, n = enc
                sent = True if body is None else sub.conn.offer(body)
            elif sub.next_seq == first:
                sent = sub.conn.offer(data)
                n = len(chunk)
            elif first < sub.next_seq <= last:
                # catch-up already sent part of this chunk from the store
                tail = [e for e in chunk if e[0] >= sub.next_seq]
                sent = sub.conn.offer(_encode_deliver(op, tail))
                n = len(tail)
            elif sub.next_seq < first:
                sent = False
            else:
                continue
            if sent:
                self.metrics.deliveries += n
                sub.next_seq = last + 1
            else:
                # Its queue is full (or it missed entries): it reads from the store at its
                # own pace instead, so the hub's memory stays bounded.
                sub.live = False
                sub.conn.spawn(self._catch_up(sub))

    # --- subscribe ----------------------------------------------------------------------

    def _subscribe(self, conn: Outbox, frame: f.Subscribe) -> None:
        self._member_state(conn.unit, frame.op)
        mine = self.conn_subs[conn]
        if frame.op not in mine and len(mine) >= self.config.max_operations_per_unit:
            raise RequestError(
                f"subscribed to {len(mine)} operations already, the limit is"
                f" {self.config.max_operations_per_unit}", code=Code.LIMIT)
        old = mine.pop(frame.op, None)
        if old is not None:
            old.ended = True
            self.subs[frame.op].discard(old)
        after = frame.after
        if after is None:
            after = self.cursors.get((conn.unit, frame.op), 0)
        head = self.heads.get(frame.op, 0)
        sub = Subscription(conn, frame.op, next_seq=after + 1,
                           senders=None if frame.senders is None else frozenset(frame.senders))
        mine[frame.op] = sub
        self.subs[frame.op].add(sub)
        conn.enqueue(codec.encode(f.Ok(rid=frame.rid,
                                       info={"op": frame.op, "after": after, "head": head})))
        if sub.next_seq > head:
            sub.live = True
        else:
            conn.spawn(self._catch_up(sub))

    async def _catch_up(self, sub: Subscription) -> None:
        """Replay the log from the store until the subscriber reaches the head, then go live."""
        page = self.config.catchup_page
        while not sub.ended and not sub.conn.closed:
            try:
                rows = await self.worker.read_log(sub.op, sub.next_seq - 1, page)
            except StoreError as exc:
                self.send_error(sub.conn, exc.code, exc.message, op=sub.op)
                if not sub.ended:
                    self._end(sub, "store failure while replaying; subscribe again")
                return
            if sub.ended:
                return
            # Delivery tuples pack as the wire's arrays: no conversion.
            if not rows:
                chunks: list[list[Sequence[Any]]] = []
            elif sub.senders is None:
                chunks = _chunks(list(rows), self.config.limits.max_batch)
            else:
                chunks = _chunks([r for r in rows if sub.wants(r)],
                                 self.config.limits.max_batch)
            for chunk in chunks:
                data = _encode_deliver(sub.op, chunk)
                while not sub.conn.offer(data):
                    await sub.conn.wait_writable()
                    if sub.ended or sub.conn.closed:
                        return
                self.metrics.deliveries += len(chunk)
                sub.next_seq = chunk[-1][0] + 1
            if rows:  # a filtered page may end with entries it skipped
                sub.next_seq = max(sub.next_seq, rows[-1][0] + 1)
            # The store is never behind ``heads`` (heads move after the commit), so an
            # empty page means caught up. No await between this check and the flag.
            if sub.next_seq > self.heads.get(sub.op, 0):
                sub.live = True
                return
            await sub.conn.wait_writable()

    def _unsubscribe(self, conn: Outbox, frame: f.Unsubscribe) -> None:
        sub = self.conn_subs[conn].pop(frame.op, None)
        if sub is not None:
            sub.ended = True
            self.subs[frame.op].discard(sub)
        conn.enqueue(codec.encode(f.Ok(rid=frame.rid, info={"op": frame.op})))

    def _end(self, sub: Subscription, reason: str) -> None:
        sub.ended = True
        self.subs[sub.op].discard(sub)
        self.conn_subs.get(sub.conn, {}).pop(sub.op, None)
        sub.conn.enqueue(codec.encode(f.Ended(op=sub.op, reason=reason)))

    def _ack(self, conn: Outbox, frame: f.Ack) -> None:
        """Move the unit's cursor forward. Acks are advisory: one from a unit that is no
        longer a member (it was removed while its ack was in flight) is ignored."""
        key = (conn.unit, frame.op)
        if conn.unit not in self.ops.get(frame.op, _NO_OP).members:
            return
        seq = min(frame.seq, self.heads.get(frame.op, 0))
        if seq > self.cursors.get(key, 0):
            self.cursors[key] = seq
            self._dirty_cursors.add(key)

    def flush_cursors(self) -> None:
        if not self._dirty_cursors:
            return
        cmds: list[Command] = [SaveCursor(u, op, self.cursors[(u, op)])
                               for u, op in self._dirty_cursors]
        self._dirty_cursors.clear()
        self.worker.submit(cmds, _log_failure)

    # --- membership -------------------------------------------------------------------

    def _commit(self, conn: Outbox, frame: f.Commit) -> None:
        stmt = Statement.from_bytes(frame.statement)
        before = self.ops.get(stmt.op)
        digest = statement_hash(frame.statement)
        if before is not None and digest == before.head:
            if digest in self._committing:  # not on disk yet: answer when it is
                self._committing[digest].append((conn, frame.rid))
            else:
                conn.enqueue(codec.encode(f.Ok(rid=frame.rid, info={
                    "op": stmt.op, "epoch": before.epoch, "duplicate": True})))
            return
        carried: dict[str, SignedCredential] = {}
        for body, sig in stmt.credentials:
            signed = SignedCredential(body, sig)
            try:
                cred = self.ring.verify(signed, now=int(self.now()))
            except AuthError as exc:
                raise RequestError(exc.message, code=exc.code) from None
            carried[cred.unit] = signed
        if before is None:
            admin = carried.get(stmt.admin) or self.directory.get(stmt.admin)
            if admin is None:
                raise RequestError(f"admin {stmt.admin!r} is not enrolled",
                                   code=Code.UNKNOWN_UNIT)
            cred = admin.credential
            after = OperationState.create(stmt, frame.statement, frame.signature,
                                          signer_key=cred.identity_key, signer_role=cred.role)
        else:
            after = before.apply(stmt, frame.statement, frame.signature)
        for unit in stmt.adds:
            if unit not in carried and unit not in self.directory:
                raise RequestError(f"unit {unit!r} is not enrolled; carry its credential",
                                   code=Code.UNKNOWN_UNIT)
        for signed in carried.values():
            cred = signed.credential
            if (cur := self.directory.get(cred.unit)) is None or (
                cur.credential.issued_at < cred.issued_at):
                self._enroll(signed, cred.issued_at)
        self.ops[stmt.op] = after
        entry = AppendMessage(stmt.op, stmt.admin, stmt.epoch, f.KIND_COMMIT, b"",
                              msgpack.packb([frame.statement, frame.signature]),
                              int(self.now() * 1000))
        cmd = ApplyStatement(stmt.op, after.epoch, after.name, after.admin, after.admin_key,
                             after.head, after.members, frame.statement, frame.signature, entry)

        def done(results: list[Result] | StoreError) -> None:
            retries = self._committing.pop(digest, [])
            if isinstance(results, StoreError):
                if self.ops.get(stmt.op) is after:
                    if before is None:
                        del self.ops[stmt.op]
                    else:
                        self.ops[stmt.op] = before
                self.send_error(conn, results.code, results.message, rid=frame.rid)
                for other, rid in retries:
                    self.send_error(other, results.code, results.message, rid=rid)
                return
            res = results[0]
            assert isinstance(res, Appended)
            if not res.duplicate:
                self._pending.entries[stmt.op].append(
                    [res.seq, entry.sender, entry.kind, entry.header, entry.payload, entry.at_ms])
                self.metrics.messages_in += 1
            if stmt.removes and not res.duplicate:
                self._pending.removals.append((stmt.op, res.seq, frozenset(stmt.removes)))
            conn.enqueue(codec.encode(f.Ok(rid=frame.rid, info={
                "op": stmt.op, "epoch": after.epoch, "seq": res.seq})))
            for other, rid in retries:
                other.enqueue(codec.encode(f.Ok(rid=rid, info={
                    "op": stmt.op, "epoch": after.epoch, "duplicate": True})))

        self._committing[digest] = []
        self.worker.submit([cmd], done)

    # --- directed messages --------------------------------------------------------------

    def _send_directed(self, conn: Outbox, frame: f.SendDirected) -> None:
        st = self._member_state(conn.unit, frame.op)
        if frame.to not in st.members:
            raise RequestError(f"recipient {frame.to!r} is not a member of {frame.op!r}",
                               code=Code.NOT_MEMBER)
        at_ms = int(self.now() * 1000)
        cmd = StoreDirected(frame.op, conn.unit, frame.to, frame.payload, at_ms, frame.cid)

        def answer(stored: Result) -> dict[str, Any]:
            assert isinstance(stored, DirectedStored)
            if not stored.duplicate:  # a retry: the recipient has (or will get) the first
                item = f.DirectedItem(id=stored.id, op=frame.op, sender=conn.unit,
                                      payload=frame.payload, at_ms=at_ms)
                data = codec.encode(f.Directed(items=(item,)))
                for target in self.by_unit.get(frame.to, ()):
                    target.enqueue(data)
            return {"id": stored.id}

        self._store_then_answer(conn, frame.rid, cmd, answer)

    def _store_then_answer(self, conn: Outbox, rid: int, cmd: Command,
                           answer: Callable[[Result], dict[str, Any]]) -> None:
        """Run one store command for a request, then answer ``ok`` with ``answer(result)``
        (called on the loop, after the commit), or the store's error."""

        def done(results: list[Result] | StoreError) -> None:
            if isinstance(results, StoreError):
                self.send_error(conn, results.code, results.message, rid=rid)
                return
            conn.enqueue(codec.encode(f.Ok(rid=rid, info=answer(results[0]))))

        self.worker.submit([cmd], done)

    async def _push_directed(self, conn: Outbox) -> None:
        """On connect: everything addressed to this unit and not yet acknowledged."""
        try:
            rows = await self.worker.pending_directed(conn.unit, self.config.limits.max_batch)
        except StoreError as exc:
            self.send_error(conn, exc.code, exc.message)
            return
        if not rows or conn.closed:
            return
        # Frames of at most ~1 MiB; what does not fit now comes on the next connection
        # (directed messages stay stored until acknowledged).
        items: list[f.DirectedItem] = []
        size = 0
        for r in rows:
            if items and size + len(r.payload) > _DELIVER_CHUNK_BYTES:
                conn.enqueue(codec.encode(f.Directed(items=tuple(items))))
                items, size = [], 0
            items.append(f.DirectedItem(id=r.id, op=r.op, sender=r.sender, payload=r.payload,
                                        at_ms=r.at_ms))
            size += len(r.payload)
        conn.enqueue(codec.encode(f.Directed(items=tuple(items))))


    # --- key packages -------------------------------------------------------------------

    def _put_key_packages(self, conn: Outbox, frame: f.PutKeyPackages) -> None:
        """Verify each package against the sender's credential, then keep them."""
        signed = self.directory.get(conn.unit)
        if signed is None:  # cannot happen for an authenticated unit; refuse, do not crash
            raise RequestError(f"unit {conn.unit!r} has no credential on file",
                               code=Code.UNKNOWN_UNIT)
        identity_key = signed.credential.identity_key
        rows = []
        for i, raw in enumerate(frame.packages):
            try:
                pkg = SignedKeyPackage.from_bytes(raw).verify(identity_key, conn.unit)
            except RequestError as exc:
                raise RequestError(f"packages[{i}]: {exc.message}", code=exc.code) from None
            rows.append((pkg.id, raw, pkg.last_resort))

        def answer(stored: Result) -> dict[str, Any]:
            assert isinstance(stored, KeyPackagesStored)
            return {"available": stored.available}

        self._store_then_answer(conn, frame.rid,
                                PutKeyPackages(conn.unit, tuple(rows), frame.replace), answer)

    def _claim_key_packages(self, conn: Outbox, frame: f.ClaimKeyPackages) -> None:
        """Only OCU units (the admins who sign commits) may take other units' packages:
        anyone else could drain them."""
        signed = self.directory.get(conn.unit)
        if signed is None or signed.credential.role != "ocu":
            raise RequestError(f"only a unit with role 'ocu' may claim key packages; "
                               f"{conn.unit!r} may not", code=Code.NOT_ADMIN)

        def answer(claimed: Result) -> dict[str, Any]:
            assert isinstance(claimed, KeyPackagesClaimed)
            missing = [u for u in dict.fromkeys(frame.units) if u not in claimed.packages]
            return {"packages": claimed.packages, "missing": missing}

        self._store_then_answer(conn, frame.rid, ClaimKeyPackages(frame.units), answer)


_NO_OP = OperationState(op="-", name="", admin="-", admin_key=b"", epoch=0, head=b"")


def _log_failure(results: list[Result] | StoreError) -> None:
    if isinstance(results, StoreError):
        log.error("background write failed: %s", results.message)


def _chunks(entries: Sequence[Sequence[Any]], max_items: int) -> list[list[Sequence[Any]]]:
    """Split delivery rows so that no frame holds more than ``max_items`` rows (the
    agents' max_batch) or grows much past 1 MiB. No entries, no chunks."""
    if not entries:
        return []
    out: list[list[Sequence[Any]]] = [[]]
    size = 0
    for e in entries:
        n = len(e[4]) + len(e[3]) + 64
        if out[-1] and (size + n > _DELIVER_CHUNK_BYTES or len(out[-1]) >= max_items):
            out.append([])
            size = 0
        out[-1].append(e)
        size += n
    return out


def _encode_deliver(op: str, rows: Sequence[Sequence[Any]]) -> bytes:
    return msgpack.packb(  # type: ignore[no-any-return]
        {"t": f.Deliver.T, "op": op, "items": rows}, use_bin_type=True)
