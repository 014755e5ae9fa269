"""Fanout: which log entries go to which subscriber, and when. Sans-I/O, run by the Router.

Entries a transaction committed (``appended``, ``removed``) wait for ``flush``, which cuts
them in Deliver frames (one per operation chunk, shared by every live subscriber that is
exactly there) and offers them. A subscriber that is behind, or whose queue is full, reads
the log from the store at its own pace, a page at a time (``ReadLog`` out, ``log_read``
in, ``writable`` when its queue has room again), and goes live when it reaches the head.
So the hub's memory per subscriber stays bounded by one page. docs/protocol.md 9 and 14.4.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from protocol import frames as f
from protocol.errors import Code, RequestError, StoreError
from protocol.router_io import (
    CHUNK_BYTES,
    Action,
    Counts,
    Peer,
    ReadLog,
    RouterConfig,
    Subscription,
)
from protocol.store import LogEntry

#: The reason of the ``ended`` frame a removed member receives (10.7).
REMOVED = "removed from the operation"


@dataclass(slots=True)
class _Pending:
    """Entries committed by the current transaction, waiting for ``flush``."""

    entries: dict[str, list[LogEntry]] = field(default_factory=lambda: defaultdict(list))
    #: (op, seq of the removing statement, removed units)
    removals: list[tuple[str, int, frozenset[str]]] = field(default_factory=list)


class Fanout:
    def __init__(self, config: RouterConfig, counts: Counts, actions: list[Action]) -> None:
        self.config = config
        self.counts = counts
        #: the router's list of store work: ReadLog goes there
        self._actions = actions
        self.heads: dict[str, int] = {}
        self.subs: dict[str, set[Subscription]] = defaultdict(set)
        self.peer_subs: dict[Peer, dict[str, Subscription]] = {}
        self._pending = _Pending()

    # --- peers --------------------------------------------------------------------------

    def connected(self, peer: Peer) -> None:
        self.peer_subs[peer] = {}

    def is_connected(self, peer: Peer) -> bool:
        return peer in self.peer_subs

    def disconnected(self, peer: Peer) -> None:
        for sub in self.peer_subs.pop(peer, {}).values():
            sub.ended = True
            self.subs[sub.op].discard(sub)

    # --- committed entries ------------------------------------------------------------------

    def appended(self, op: str, entry: LogEntry) -> None:
        """A transaction stored ``entry``; it goes out at the next ``flush``."""
        self._pending.entries[op].append(entry)

    def removed(self, op: str, seq: int, units: frozenset[str]) -> None:
        """The statement at ``seq`` removed ``units``: their subscriptions end after it."""
        self._pending.removals.append((op, seq, units))

    def flush(self) -> None:
        """After a transaction: one Deliver frame per operation chunk, offered to each live
        subscriber. A removed member gets the log up to its removal statement, then
        ``ended``."""
        pending, self._pending = self._pending, _Pending()
        removals: dict[str, list[tuple[int, frozenset[str]]]] = defaultdict(list)
        for op, seq, units in pending.removals:
            removals[op].append((seq, units))
        max_items = 1 if self.config.per_delivery else self.config.max_batch
        for op, entries in pending.entries.items():
            self.heads[op] = entries[-1].seq
            start = 0
            for seq, units in sorted(removals.pop(op, [])):
                cut = next(i for i, e in enumerate(entries) if e.seq == seq) + 1
                for chunk in chunks(entries[start:cut], max_items):
                    self._deliver_live(op, chunk)
                self._end_units(op, seq, units)
                start = cut
            for chunk in chunks(entries[start:], max_items):
                self._deliver_live(op, chunk)

    def _end_units(self, op: str, seq: int, units: frozenset[str]) -> None:
        """The removed units' subscriptions end after the removing statement (``seq``):
        at once if they have it; one that is behind (its queue full, or reading the
        store) leaves the live set and reads the store up to ``seq`` first (10.7)."""
        for sub in list(self.subs.get(op, ())):
            if sub.peer.unit not in units:
                continue
            if sub.live and sub.next_seq > seq:
                self.end(sub, REMOVED)
            else:
                sub.end_at = seq
                self.subs[op].discard(sub)

    def _deliver_live(self, op: str, chunk: tuple[LogEntry, ...]) -> None:
        subs = self.subs.get(op)
        if not subs:
            return
        first, last = chunk[0].seq, chunk[-1].seq
        frame = f.Deliver(op=op, items=chunk)
        #: one frame per distinct sender filter, shared by its subscribers
        filtered: dict[frozenset[str], tuple[f.Deliver | None, int]] = {}
        for sub in subs:
            if not sub.live:
                continue  # it reads the store
            if sub.next_seq > last:
                continue  # it has these already
            if sub.next_seq < first:
                sent, n = False, 0  # it missed entries: read them from the store
            elif sub.senders is not None:
                shared = sub.next_seq == first
                enc = filtered.get(sub.senders) if shared else None
                if enc is None:
                    rows = tuple(e for e in chunk if e.seq >= sub.next_seq and sub.wants(e))
                    enc = (f.Deliver(op=op, items=rows) if rows else None, len(rows))
                    if shared:
                        filtered[sub.senders] = enc
                # a chunk with nothing for it advances it all the same
                sent = True if enc[0] is None else sub.peer.offer(enc[0])
                n = enc[1]
            elif sub.next_seq == first:
                sent, n = sub.peer.offer(frame), len(chunk)
            else:  # the store read sent part of this chunk already
                tail = tuple(e for e in chunk if e.seq >= sub.next_seq)
                sent, n = sub.peer.offer(f.Deliver(op=op, items=tail)), len(tail)
            if sent:
                self.counts.deliveries += n
                sub.next_seq = last + 1
            else:
                # Its queue is full (or it missed entries): it reads from the store at its
                # own pace instead, so the hub's memory stays bounded.
                self.counts.fell_behind += 1
                self._catch_up(sub)

    # --- subscribe ----------------------------------------------------------------------

    def subscribe(self, peer: Peer, frame: f.Subscribe, after: int) -> None:
        """Start (or restart) ``peer``'s subscription to ``frame.op`` after ``after``; the
        caller checked membership. Raises RequestError(limit_exceeded)."""
        mine = self.peer_subs[peer]
        limit = self.config.max_operations_per_unit
        if frame.op not in mine and len(mine) >= limit:
            raise RequestError(f"subscribed to {len(mine)} operations already, the limit is"
                               f" {limit}", code=Code.LIMIT)
        old = mine.pop(frame.op, None)
        if old is not None:
            old.ended = True
            self.subs[frame.op].discard(old)
        head = self.heads.get(frame.op, 0)
        sub = Subscription(peer, frame.op, next_seq=after + 1,
                           senders=None if frame.senders is None else frozenset(frame.senders))
        mine[frame.op] = sub
        self.subs[frame.op].add(sub)
        peer.send(f.Ok(rid=frame.rid, info={"op": frame.op, "after": after, "head": head}))
        if sub.next_seq > head:
            sub.live = True
        else:
            self._catch_up(sub)

    def _catch_up(self, sub: Subscription) -> None:
        """Read the log from the store until the subscriber reaches the head, then live."""
        sub.live = False
        if sub.ended or sub.reading or sub.backlog:
            return
        sub.reading = True
        self.counts.catchup_pages += 1
        self._actions.append(ReadLog(sub, sub.next_seq - 1, self.config.catchup_page))

    def log_read(self, read: ReadLog, rows: Sequence[LogEntry] | StoreError) -> None:
        """A page of the log for a subscriber that is catching up, or the store's error."""
        sub = read.sub
        sub.reading = False
        if sub.ended:
            return
        if isinstance(rows, StoreError):
            self.counts.errors[rows.code] += 1
            sub.peer.send(f.Error(code=rows.code, message=f.bounded(rows.message), op=sub.op))
            self.end(sub, "store failure while replaying; subscribe again")
            return
        if sub.end_at is not None:
            rows = [r for r in rows if r.seq <= sub.end_at]
        wanted = rows if sub.senders is None else [r for r in rows if sub.wants(r)]
        sub.backlog = chunks(wanted, self.config.max_batch)
        sub.page_end = rows[-1].seq if rows else 0
        self._drain(sub)

    def writable(self, peer: Peer) -> None:
        """The peer's queue has room again: resume its subscriptions' store reads."""
        for sub in list(self.peer_subs.get(peer, {}).values()):
            if sub.backlog:
                self._drain(sub)

    def _drain(self, sub: Subscription) -> None:
        while sub.backlog:
            chunk = sub.backlog[0]
            if not sub.peer.offer(f.Deliver(op=sub.op, items=chunk)):
                return  # ``writable`` resumes it
            sub.backlog.pop(0)
            self.counts.deliveries += len(chunk)
            sub.next_seq = chunk[-1].seq + 1
        sub.next_seq = max(sub.next_seq, sub.page_end + 1)
        if sub.end_at is not None and sub.next_seq > sub.end_at:
            self.end(sub, REMOVED)
            return
        # The store is never behind ``heads`` (heads move after the commit), so reaching
        # the head here means caught up; nothing can commit between this check and the flag.
        if sub.next_seq > self.heads.get(sub.op, 0):
            sub.live = True
            self.counts.caught_up += 1
        else:
            self._catch_up(sub)

    def unsubscribe(self, peer: Peer, frame: f.Unsubscribe) -> None:
        sub = self.peer_subs.get(peer, {}).pop(frame.op, None)
        if sub is not None:
            sub.ended = True
            self.subs[frame.op].discard(sub)
        peer.send(f.Ok(rid=frame.rid, info={"op": frame.op}))

    def end(self, sub: Subscription, reason: str) -> None:
        sub.ended = True
        sub.backlog = []
        self.subs[sub.op].discard(sub)
        self.peer_subs.get(sub.peer, {}).pop(sub.op, None)
        sub.peer.send(f.Ended(op=sub.op, reason=reason))


def chunks(entries: Sequence[LogEntry], max_items: int) -> list[tuple[LogEntry, ...]]:
    """Cut log entries in frames of at most ``max_items`` entries (the agents' max_batch)
    and not much past 1 MiB. No entries, no chunks."""
    out: list[tuple[LogEntry, ...]] = []
    start = size = 0
    for i, e in enumerate(entries):
        n = len(e.payload) + len(e.header) + 64
        if i > start and (size + n > CHUNK_BYTES or i - start >= max_items):
            out.append(tuple(entries[start:i]))
            start, size = i, 0
        size += n
    if len(entries) > start:
        out.append(tuple(entries[start:]))
    return out
