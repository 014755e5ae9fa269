"""AgentConnection: an agent's link to a hub, with reconnect, resume and retried publishes.

What it promises the application:
- ``publish`` returns the sequence number once the hub has the message on disk; if
  the link drops first, the message is re-sent with the same client id after
  reconnecting, so the hub stores it once (idempotent retry).
- ``deliveries()`` yields each entry of each subscribed operation once, in order,
  across reconnects: it resumes from the last sequence it handed out.
- Publishes made in the same loop tick go out in one frame (pipelining).
It is the I/O edge of the client; frame shapes and checks come from hub.protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from client.identity import UnitIdentity
from hub.protocol import codec
from hub.protocol import frames as f
from hub.protocol.errors import AuthError, CloseCode, Code, ProtocolError, RequestError

log = logging.getLogger("opshub.agent")

#: One scalable constant for every network wait of the client (tests scale it too).
TIMEOUT = 10.0
_RETRYABLE = {Code.STORE, Code.SHUTTING_DOWN}

Request = f.Subscribe | f.Unsubscribe | f.Commit | f.SendDirected
#: Pause before re-sending a publish the hub could not store.
RETRY_DELAY = 0.2


@dataclass(frozen=True, slots=True)
class Delivered:
    """One log entry handed to the application."""

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


class ConnectionClosed(Exception):
    """The connection was closed by the application and cannot be used."""


class AgentConnection:
    def __init__(
        self,
        url: str,
        identity: UnitIdentity,
        *,
        reconnect: bool = True,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
        max_backlog: int = 100_000,
        ack_interval: float = 0.05,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.url = url
        self.identity = identity
        self.unit = identity.unit
        self.reconnect = reconnect
        self.limits = limits
        self.ack_interval = ack_interval
        self.now = now
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False
        self._last_cid = 0
        self._rid = 0
        self._unacked: dict[tuple[str, int], tuple[f.PublishItem, asyncio.Future[int]]] = {}
        self._outbox: list[f.PublishItem] = []
        self._window = asyncio.Event()
        self._window_low = 0
        self._flush_scheduled = False
        self._requests: dict[int, tuple[Request, asyncio.Future[dict[str, Any]]]] = {}
        #: op -> last sequence handed to the application (resume point)
        self.positions: dict[str, int] = {}
        self._acked: dict[str, int] = {}
        self._deliveries: asyncio.Queue[Delivered | SubscriptionEnded] = asyncio.Queue(
            max_backlog)
        self._directed: asyncio.Queue[f.DirectedItem] = asyncio.Queue()
        self._seen_directed: deque[int] = deque(maxlen=4096)
        self.connects = 0
        self.last_close_code: int | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> AgentConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and authenticate. Raises AuthError if the hub refuses this unit."""
        self._http = aiohttp.ClientSession()
        self._loop = asyncio.get_running_loop()
        self._runner = asyncio.create_task(self._run(), name=f"agent-{self.unit}")
        ready = asyncio.create_task(self._ready.wait())
        try:
            await asyncio.wait({ready, self._runner}, timeout=TIMEOUT,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if self._fatal is not None:
            await self.close()
            raise self._fatal
        if not self._ready.is_set():
            await self.close()
            raise ConnectionError(f"could not connect to {self.url}")

    async def close(self) -> None:
        """Flush acks, close the socket and stop reconnecting."""
        if self._closing:
            return
        with contextlib.suppress(Exception):
            self._send_acks()
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        if self._http is not None:
            await self._http.close()

    async def drop(self) -> None:
        """Close the socket as if the network failed (tests, fault drills); reconnects."""
        if self._ws is not None:
            await self._ws.close(code=CloseCode.GOING_AWAY)

    @property
    def connected(self) -> bool:
        return self._ready.is_set()

    # --- the connection loop --------------------------------------------------------------

    async def _run(self) -> None:
        backoff = 0.05
        while not self._closing:
            try:
                assert self._http is not None
                async with asyncio.timeout(TIMEOUT):
                    ws = await self._http.ws_connect(
                        self.url, max_msg_size=2 * self.limits.max_frame, autoping=True,
                        heartbeat=30.0, compress=0)
                try:
                    await handshake(ws, self.identity, self.limits)
                    self._ws = ws
                    self.connects += 1
                    backoff = 0.05
                    self._resume()
                    self._ready.set()
                    async with asyncio.TaskGroup() as tg:
                        acker = tg.create_task(self._ack_loop())
                        await self._read(ws)
                        acker.cancel()
                finally:
                    self._ready.clear()
                    self._ws = None
                    self.last_close_code = ws.close_code
                    await ws.close()
            except AuthError as exc:
                self._fatal = exc
                return
            except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                log.info("%s: connection lost (%s); reconnecting", self.unit, exc)
            if not self.reconnect or self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    def _resume(self) -> None:
        """After (re)connecting: re-subscribe from our positions, re-send what is unacked."""
        earlier = list(self._requests.items())
        for op, pos in self.positions.items():
            self._request(f.Subscribe(rid=self._next_rid(), op=op, after=pos))
        for rid, (frame, fut) in earlier:
            if isinstance(frame, f.Subscribe) and frame.op in self.positions:
                del self._requests[rid]  # superseded by the subscribe just sent
                if not fut.done():
                    fut.set_result({"op": frame.op, "after": self.positions[frame.op]})
            else:
                self._write(frame)
        items = [item for item, _ in self._unacked.values()]
        for i in range(0, len(items), self.limits.max_batch):
            self._write(f.Publish(items=tuple(items[i : i + self.limits.max_batch])))

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                return
            frame = codec.decode(msg.data, self.limits)
            await self._dispatch(frame)

    async def _dispatch(self, frame: f.Frame) -> None:
        match frame:
            case f.Deliver():
                last = self.positions.get(frame.op)
                if last is None:
                    return  # unsubscribed meanwhile
                for d in frame.items:
                    if d.seq <= last:
                        continue  # already handed out before a reconnect
                    if d.seq != last + 1:
                        raise ProtocolError(
                            f"gap in {frame.op!r}: expected seq {last + 1}, got {d.seq}")
                    await self._deliveries.put(Delivered(frame.op, d.seq, d.sender, d.kind,
                                                         d.header, d.payload, d.at_ms))
                    last = d.seq
                    self.positions[frame.op] = last
            case f.Acks():
                for op, cid, seq in frame.items:
                    entry = self._unacked.pop((op, cid), None)
                    if entry is not None and not entry[1].done():
                        entry[1].set_result(seq)
                if len(self._unacked) <= self._window_low:
                    self._window.set()
            case f.Ok():
                req = self._requests.pop(frame.rid, None)
                if req is None:
                    return
                if isinstance(req[0], f.Subscribe):
                    # Deliveries may follow in this very read; position them now.
                    self.positions[req[0].op] = int(frame.info["after"])
                if not req[1].done():
                    req[1].set_result(frame.info)
            case f.Error():
                self._on_error(frame)
            case f.Ended():
                self.positions.pop(frame.op, None)
                await self._deliveries.put(SubscriptionEnded(frame.op, frame.reason))
            case f.Directed():
                for item in frame.items:
                    if item.id not in self._seen_directed:
                        self._seen_directed.append(item.id)
                        await self._directed.put(item)
            case _:
                raise ProtocolError(f"unexpected {frame.T!r} from the hub")

    def _on_error(self, err: f.Error) -> None:
        exc = RequestError(err.message, code=err.code)
        if err.rid is not None:
            req = self._requests.pop(err.rid, None)
            if req is not None and not req[1].done():
                req[1].set_exception(exc)
        elif err.cid is not None and err.op is not None:
            if err.code in _RETRYABLE:
                entry = self._unacked.get((err.op, err.cid))
                if entry is not None:  # same cid: the hub stores it at most once
                    asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry, entry[0])
                return
            entry = self._unacked.pop((err.op, err.cid), None)
            if entry is not None and not entry[1].done():
                entry[1].set_exception(exc)
        else:
            log.warning("%s: hub error %s: %s", self.unit, err.code, err.message)

    # --- sending --------------------------------------------------------------------------

    def _write(self, frame: f.ClientFrame) -> None:
        ws = self._ws
        if ws is None or ws.closed:
            return  # re-sent by _resume after reconnecting
        data = codec.encode(frame)
        # send_frame only awaits when the transport buffer is full; keep order by
        # scheduling in call order.
        task = asyncio.ensure_future(ws.send_bytes(data))
        task.add_done_callback(_swallow_connection_errors)

    def _next_rid(self) -> int:
        self._rid += 1
        return self._rid

    def _request(self, frame: Request) -> asyncio.Future[dict[str, Any]]:
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        rid = frame.rid
        self._requests[rid] = (frame, fut)
        self._write(frame)
        return fut

    async def _call(self, frame: Request) -> dict[str, Any]:
        self._check_open()
        async with asyncio.timeout(TIMEOUT):
            return await self._request(frame)

    def _check_open(self) -> None:
        if self._closing:
            raise ConnectionClosed(f"connection of {self.unit} is closed")
        if self._fatal is not None:
            raise self._fatal

    def next_cid(self) -> int:
        """Client ids start at the wall clock in microseconds and count up by one, so a
        restarted agent never reuses one (as long as it published fewer than a million
        messages a second before). The hub relies on growing cids to skip lookups."""
        if not self._last_cid:
            self._last_cid = int(self.now() * 1_000_000)
        self._last_cid += 1
        return self._last_cid

    def publish_nowait(self, op: str, payload: bytes, *, header: bytes = b"",
                       cid: int | None = None) -> asyncio.Future[int]:
        """Queue a publish; the future resolves to its sequence number once durable."""
        self._check_open()
        if cid is None:
            cid = self.next_cid()
        key = (op, cid)
        if key in self._unacked:
            return self._unacked[key][1]
        item = f.PublishItem(op, cid, header, payload)
        loop = self._loop or asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._unacked[key] = (item, fut)
        self._outbox.append(item)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_outbox)
        return fut

    async def publish(self, op: str, payload: bytes, *, header: bytes = b"",
                      cid: int | None = None) -> int:
        """Publish and wait until the hub has it on disk. Returns its sequence number.
        Raises RequestError (not_member, unknown_operation, ...)."""
        return await self.publish_nowait(op, payload, header=header, cid=cid)

    @property
    def unacked(self) -> int:
        """Publishes sent (or queued) that the hub has not yet acknowledged."""
        return len(self._unacked)

    async def wait_unacked_at_most(self, n: int) -> None:
        """Wait until at most ``n`` publishes are unacknowledged: a pipelining window for
        publishers that use publish_nowait without awaiting every future."""
        while len(self._unacked) > n:
            self._window_low = n
            self._window.clear()
            await self._window.wait()

    def _retry(self, item: f.PublishItem) -> None:
        if (item.op, item.cid) in self._unacked and not self._closing:
            self._outbox.append(item)
            if not self._flush_scheduled:
                self._flush_scheduled = True
                asyncio.get_running_loop().call_soon(self._flush_outbox)

    def _flush_outbox(self) -> None:
        self._flush_scheduled = False
        items, self._outbox = self._outbox, []
        batch = self.limits.max_batch
        for i in range(0, len(items), batch):
            self._write(f.Publish(items=tuple(items[i : i + batch])))

    async def subscribe(self, op: str, after: int | None = None) -> dict[str, Any]:
        """Start receiving ``op`` after ``after`` (None: from the hub's cursor for us)."""
        return await self._call(f.Subscribe(rid=self._next_rid(), op=op, after=after))

    async def unsubscribe(self, op: str) -> None:
        self.positions.pop(op, None)
        await self._call(f.Unsubscribe(rid=self._next_rid(), op=op))

    async def commit(self, statement: bytes, signature: bytes) -> dict[str, Any]:
        """Send a signed membership statement. Raises RequestError if the hub refuses it."""
        return await self._call(f.Commit(rid=self._next_rid(), statement=statement,
                                         signature=signature))

    async def send_directed(self, op: str, to: str, payload: bytes) -> int:
        info = await self._call(f.SendDirected(rid=self._next_rid(), op=op, to=to,
                                               payload=payload))
        return int(info["id"])

    def ack_directed(self, *ids: int) -> None:
        self._write(f.DirectedAck(ids=tuple(ids)))

    # --- receiving ------------------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivered | SubscriptionEnded]:
        """Every entry of every subscribed operation, once, in order per operation."""
        while True:
            yield await self._deliveries.get()

    async def next_delivery(self, within: float = TIMEOUT) -> Delivered | SubscriptionEnded:
        """The next delivery; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._deliveries.get()

    async def next_directed(self, within: float = TIMEOUT) -> f.DirectedItem:
        """The next directed message; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._directed.get()

    async def _ack_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ack_interval)
            self._send_acks()

    def _send_acks(self) -> None:
        """Cumulative acks: the hub's cursor follows what was handed to the application."""
        for op, pos in self.positions.items():
            if pos > self._acked.get(op, 0):
                self._acked[op] = pos
                self._write(f.Ack(op=op, seq=pos))


async def handshake(ws: aiohttp.ClientWebSocketResponse, identity: UnitIdentity,
                    limits: codec.Limits = codec.DEFAULT_LIMITS) -> f.Ready:
    """Answer the hub's challenge on a fresh socket. Raises AuthError if refused,
    ProtocolError or ConnectionError if the hub misbehaves or goes away."""
    async with asyncio.timeout(TIMEOUT):
        first = await _receive_frame(ws, limits)
        if not isinstance(first, f.Challenge):
            raise ProtocolError(f"expected a challenge, got {first.T!r}")
        hello = f.Hello(credential=identity.signed.body,
                        credential_sig=identity.signed.signature,
                        signature=identity.answer(first.nonce, first.hub))
        await ws.send_bytes(codec.encode(hello))
        reply = await _receive_frame(ws, limits)
    if isinstance(reply, f.Error):
        raise AuthError(reply.message, code=reply.code)
    if not isinstance(reply, f.Ready):
        raise ProtocolError(f"expected ready, got {reply.T!r}")
    return reply


async def _receive_frame(ws: aiohttp.ClientWebSocketResponse, limits: codec.Limits) -> f.Frame:
    msg = await ws.receive()
    if msg.type != aiohttp.WSMsgType.BINARY:
        raise ConnectionResetError(f"hub closed the connection (code {ws.close_code})")
    return codec.decode(msg.data, limits)


def _swallow_connection_errors(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionError | RuntimeError):
            log.warning("send failed: %r", exc)
