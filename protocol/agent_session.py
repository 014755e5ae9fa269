"""AgentSession: an agent's side of the protocol as a sans-I/O state machine.

It keeps what must survive reconnects (unacknowledged publishes with their client
ids, the position reached in each subscribed operation, pending requests) and
turns bytes from the hub into events. The I/O layer (client.connection) only moves
bytes, resolves futures and queues deliveries. No sockets, no asyncio, no clock:
the handshake signature comes from an injected ``answer`` function.

Per connection: ``connection_made()``, then ``receive(data)`` for every message and
``data_to_send()`` whenever it may have something; ``connection_lost()`` at the end.
After each ``Ready`` the session re-subscribes from its positions and re-sends every
unacknowledged publish and pending request, so nothing is lost across reconnects.

Limits. The session never sends what the hub would refuse: it adopts the smaller of its
own limits and those the hub announces in ``ready``, refuses a publish over them
(UsageError, limit_exceeded), and cuts publishes and directed acks into frames of at
most ``max_batch`` items and ``max_frame`` bytes (protocol.md 14.1, 14.3). A frame over
them would make the hub close the connection, and the same frame would go out again
after every reconnect.

Directed messages. The hub pushes every one it holds no ``dack`` for again on each
connect (protocol.md 11). The session hands each id to the application once; an id the
application has acknowledged that comes again is acknowledged again, since the first
``dack`` was lost with a connection.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from protocol import codec
from protocol import frames as f
from protocol.credentials import SignedCredential
from protocol.errors import AuthError, Code, ProtocolError, RequestError, UsageError

#: Errors after which a publish is re-sent (same cid) rather than failed.
RETRYABLE = frozenset({Code.STORE, Code.SHUTTING_DOWN})
#: Bytes msgpack adds to a publish item (array, str, uint and two bin headers: 1+5+9+5+5)
#: and to a pub frame around its items (map, "t": "pub", "items", array header): bounds,
#: so that a frame cut by them stays within max_frame.
ITEM_OVERHEAD = 25
FRAME_OVERHEAD = 32
#: Directed message ids remembered to hand each to the application once.
DIRECTED_MEMORY = 4096

Request = (f.Subscribe | f.Unsubscribe | f.Commit | f.SendDirected | f.PutKeyPackages
           | f.ClaimKeyPackages)
Key = tuple[str, int]  # (op, cid) of a publish


class State(enum.Enum):
    DISCONNECTED = "disconnected"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_READY = "await_ready"
    READY = "ready"


@dataclass(frozen=True, slots=True)
class Connected:
    """The hub accepted the handshake (first time or after a reconnect)."""

    ready: f.Ready


@dataclass(frozen=True, slots=True)
class Delivered:
    """One log entry for the application, in order, never twice."""

    op: str
    seq: int
    sender: str
    kind: int
    header: bytes
    payload: bytes
    at_ms: int


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    op: str
    reason: str


@dataclass(frozen=True, slots=True)
class PublishAcked:
    key: Key
    seq: int


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """The hub refused it, or (UsageError) it is over the limits the hub announced when
    the session reconnected: it is not re-sent."""

    key: Key
    error: RequestError | UsageError


@dataclass(frozen=True, slots=True)
class PublishRetry:
    """The hub could not store it; re-send it (same cid) after a pause: ``retry(key)``."""

    key: Key


@dataclass(frozen=True, slots=True)
class Replied:
    rid: int
    info: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RequestFailed:
    rid: int
    error: RequestError


@dataclass(frozen=True, slots=True)
class DirectedReceived:
    item: f.DirectedItem


@dataclass(frozen=True, slots=True)
class HubError:
    """An error frame about nothing this session asked (logged by the I/O layer)."""

    code: str
    message: str


Event = (Connected | Delivered | SubscriptionEnded | PublishAcked | PublishFailed | PublishRetry
         | Replied | RequestFailed | DirectedReceived | HubError)


class AgentSession:
    def __init__(self, *, credential: SignedCredential,
                 answer: Callable[[bytes, str], bytes],
                 limits: codec.Limits = codec.DEFAULT_LIMITS) -> None:
        self.credential = credential
        self.answer = answer
        self.limits = limits
        self.state = State.DISCONNECTED
        self._out: list[bytes] = []
        self._unacked: dict[Key, f.PublishItem] = {}
        self._outbox: list[f.PublishItem] = []
        self._requests: dict[int, Request] = {}
        self._rid = 0
        #: op -> last sequence handed to the application (the resume point)
        self.positions: dict[str, int] = {}
        #: op -> the senders a subscription is filtered to (absent: every sender)
        self.filters: dict[str, tuple[str, ...]] = {}
        self._acked: dict[str, int] = {}
        #: directed id -> the application acknowledged it; oldest first, DIRECTED_MEMORY
        self._directed: dict[int, bool] = {}

    # --- connection lifecycle ---------------------------------------------------------

    def connection_made(self) -> None:
        self.state = State.AWAIT_CHALLENGE
        self._out.clear()

    def connection_lost(self) -> None:
        self.state = State.DISCONNECTED
        self._out.clear()  # whatever was not written is re-sent after the next Ready

    def data_to_send(self) -> list[bytes]:
        """Frames to write now, publishes of this tick coalesced into as few as possible."""
        if self.state is State.READY and self._outbox:
            items, self._outbox = self._outbox, []
            batch: list[f.PublishItem] = []
            size = FRAME_OVERHEAD
            for item in items:
                # a publish fits a frame alone (``publish`` checked it)
                if batch and (len(batch) == self.limits.max_batch
                              or size + _size(item) > self.limits.max_frame):
                    self._out.append(codec.encode(f.Publish(items=tuple(batch))))
                    batch, size = [], FRAME_OVERHEAD
                batch.append(item)
                size += _size(item)
            self._out.append(codec.encode(f.Publish(items=tuple(batch))))
        out, self._out = self._out, []
        return out

    # --- application requests -----------------------------------------------------------

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def publish(self, op: str, cid: int, payload: bytes, header: bytes = b"") -> Key:
        """Queue a publish. A key already unacknowledged is not queued twice. Raises
        UsageError (limit_exceeded) if it is over the limits in force: the hub's, once it
        has announced them (nothing is queued then)."""
        item = f.PublishItem(op, cid, header, payload)
        too_large = self._over_limits(item)
        if too_large is not None:
            raise too_large
        key = (op, cid)
        if key not in self._unacked:
            self._unacked[key] = item
            self._outbox.append(item)
        return key

    def _over_limits(self, item: f.PublishItem) -> UsageError | None:
        lim = self.limits
        if (len(item.payload) <= lim.max_payload and len(item.header) <= lim.max_header
                and FRAME_OVERHEAD + _size(item) <= lim.max_frame):
            return None
        return UsageError(
            f"a {len(item.payload)}-byte payload with a {len(item.header)}-byte header is "
            f"over the hub's limits (max_payload {lim.max_payload}, max_header "
            f"{lim.max_header}, max_frame {lim.max_frame})", code=Code.LIMIT)

    def retry(self, key: Key) -> None:
        """Re-send a publish the hub asked to retry (see PublishRetry)."""
        item = self._unacked.get(key)
        if item is not None:
            self._outbox.append(item)

    def request(self, make: Callable[[int], Request]) -> int:
        """Send a request built with a fresh request id; its answer is Replied or
        RequestFailed with that id."""
        self._rid += 1
        frame = make(self._rid)
        self._requests[self._rid] = frame
        if self.state is State.READY:
            self._out.append(codec.encode(frame))
        return self._rid

    def forget(self, rid: int) -> None:
        """Stop waiting for a request's answer (the caller gave up)."""
        self._requests.pop(rid, None)

    def unsubscribe_locally(self, op: str) -> None:
        self.positions.pop(op, None)
        self.filters.pop(op, None)

    def ack_directed(self, ids: tuple[int, ...]) -> None:
        """The application is done with these directed messages. Without a connection the
        ack is not sent, but remembered: the hub pushes them again, and they are then
        acknowledged again (not handed out)."""
        for i in ids:
            if i in self._directed:
                self._directed[i] = True
        self._send_directed_acks(ids)

    def _send_directed_acks(self, ids: tuple[int, ...] | list[int]) -> None:
        if self.state is not State.READY:
            return
        step = self.limits.max_batch
        for i in range(0, len(ids), step):
            self._out.append(codec.encode(f.DirectedAck(ids=tuple(ids[i : i + step]))))

    def send_acks(self) -> None:
        """Cumulative acks for every operation whose position moved since the last ones."""
        if self.state is not State.READY:
            return
        for op, pos in self.positions.items():
            if pos > self._acked.get(op, 0):
                self._acked[op] = pos
                self._out.append(codec.encode(f.Ack(op=op, seq=pos)))

    # --- bytes from the hub ---------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Decode one message from the hub. Raises AuthError if the handshake is refused,
        ProtocolError if the hub breaks the protocol (drop the connection, reconnect)."""
        frame = codec.decode(data, self.limits)
        match self.state:
            case State.AWAIT_CHALLENGE:
                if not isinstance(frame, f.Challenge):
                    raise ProtocolError(f"expected a challenge, got {frame.T!r}")
                if frame.version != f.PROTOCOL_VERSION:
                    # Fatal, like a refused credential: reconnecting will not change it.
                    raise AuthError(
                        f"hub {frame.hub!r} speaks protocol version {frame.version}; this agent"
                        f" speaks {f.PROTOCOL_VERSION}", code=Code.UNSUPPORTED_VERSION)
                self._out.append(codec.encode(f.Hello(
                    credential=self.credential.body,
                    credential_sig=self.credential.signature,
                    signature=self.answer(frame.nonce, frame.hub))))
                self.state = State.AWAIT_READY
                return []
            case State.AWAIT_READY:
                if isinstance(frame, f.Error):
                    raise AuthError(frame.message, code=frame.code)
                if not isinstance(frame, f.Ready):
                    raise ProtocolError(f"expected ready, got {frame.T!r}")
                self.state = State.READY
                self._adopt_limits(frame.limits)
                return [Connected(frame), *self._resume()]
            case State.READY:
                return self._dispatch(frame)
            case State.DISCONNECTED:
                raise UsageError("receive() before connection_made()")

    def _adopt_limits(self, announced: dict[str, int]) -> None:
        """Never send more than the hub accepts: take the smaller of ours and its limits."""
        mine = self.limits
        self.limits = codec.Limits(**{
            name: min(getattr(mine, name), announced.get(name, getattr(mine, name)))
            for name in ("max_frame", "max_batch", "max_header", "max_payload")})

    def _resume(self) -> list[Event]:
        """After (re)connecting: subscribe from our positions, re-send requests and
        every unacknowledged publish (same cids: the hub stores each once)."""
        pending = list(self._requests.items())
        self._requests.clear()
        events: list[Event] = []
        for op, pos in self.positions.items():
            self._rid += 1
            sub = f.Subscribe(rid=self._rid, op=op, after=pos, senders=self.filters.get(op))
            self._requests[self._rid] = sub
            self._out.append(codec.encode(sub))
        for rid, frame in pending:
            if isinstance(frame, f.Subscribe) and frame.op in self.positions:
                # superseded by the subscribe just sent
                events.append(Replied(rid, {"op": frame.op, "after": self.positions[frame.op],
                                            "resumed": True}))
                continue
            self._requests[rid] = frame
            self._out.append(codec.encode(frame))
        for key, item in list(self._unacked.items()):
            too_large = self._over_limits(item)  # the hub may announce lower limits now
            if too_large is not None:
                del self._unacked[key]
                events.append(PublishFailed(key, too_large))
        self._outbox = list(self._unacked.values())
        return events

    def _dispatch(self, frame: f.Frame) -> list[Event]:
        match frame:
            case f.Deliver():
                return self._deliver(frame)
            case f.Acks():
                events: list[Event] = []
                for op, cid, seq in frame.items:
                    if self._unacked.pop((op, cid), None) is not None:
                        events.append(PublishAcked((op, cid), seq))
                return events
            case f.Ok():
                req = self._requests.pop(frame.rid, None)
                if req is None:
                    return []
                if isinstance(req, f.Subscribe):
                    # Deliveries may follow in this very read: position them now.
                    self.positions[req.op] = int(frame.info["after"])
                    if req.senders is None:
                        self.filters.pop(req.op, None)
                    else:
                        self.filters[req.op] = req.senders
                return [Replied(frame.rid, frame.info)]
            case f.Error():
                return self._error(frame)
            case f.Ended():
                self.positions.pop(frame.op, None)
                return [SubscriptionEnded(frame.op, frame.reason)]
            case f.Directed():
                return self._directed_items(frame)
            case _:
                raise ProtocolError(f"unexpected {frame.T!r} from the hub")

    def _directed_items(self, frame: f.Directed) -> list[Event]:
        out: list[Event] = []
        acked_before: list[int] = []
        for item in frame.items:
            acked = self._directed.get(item.id)
            if acked is None:
                self._directed[item.id] = False
                if len(self._directed) > DIRECTED_MEMORY:
                    del self._directed[next(iter(self._directed))]
                out.append(DirectedReceived(item))
            elif acked:
                # pushed again: the hub has no dack for it (protocol.md 11), ours was lost
                acked_before.append(item.id)
            # else: handed out and not yet acknowledged; the application will ack it
        self._send_directed_acks(acked_before)
        return out

    def _deliver(self, frame: f.Deliver) -> list[Event]:
        last = self.positions.get(frame.op)
        if last is None:
            return []  # unsubscribed meanwhile
        out: list[Event] = []
        filtered = frame.op in self.filters  # the hub skips other senders' messages
        for d in frame.items:
            if d.seq <= last:
                continue  # already handed out before a reconnect
            if d.seq != last + 1 and not filtered:
                raise ProtocolError(f"gap in {frame.op!r}: expected seq {last + 1}, got {d.seq}")
            out.append(Delivered(frame.op, d.seq, d.sender, d.kind, d.header, d.payload,
                                 d.at_ms))
            last = d.seq
        self.positions[frame.op] = last
        return out

    def _error(self, err: f.Error) -> list[Event]:
        exc = RequestError(err.message, code=err.code)
        if err.rid is not None:
            if self._requests.pop(err.rid, None) is None:
                return []
            return [RequestFailed(err.rid, exc)]
        if err.cid is not None and err.op is not None:
            key = (err.op, err.cid)
            if key not in self._unacked:
                return []
            if err.code in RETRYABLE:
                return [PublishRetry(key)]
            del self._unacked[key]
            return [PublishFailed(key, exc)]
        return [HubError(err.code, err.message)]


def _size(item: f.PublishItem) -> int:
    """An upper bound of the bytes ``item`` takes in a pub frame."""
    return ITEM_OVERHEAD + len(item.op.encode()) + len(item.header) + len(item.payload)
