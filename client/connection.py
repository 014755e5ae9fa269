"""AgentConnection: an agent's link to a hub, with reconnect, resume and retried publishes.

What it promises the application:
- ``publish`` returns the sequence number once the hub has the message on disk; if
  the link drops first, the message is re-sent with the same client id after
  reconnecting, so the hub stores it once (idempotent retry).
- ``deliveries()`` yields each entry of each subscribed operation once, in order,
  across reconnects: it resumes from the last sequence it handed out.
- Publishes made in the same loop tick go out in one frame (pipelining).
This is the I/O edge: the protocol decisions are AgentSession's (protocol); this
class moves bytes, keeps futures and queues, and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, assert_never

import aiohttp

from client.identity import UnitIdentity
from protocol import agent_session as s
from protocol import codec
from protocol import frames as f
from protocol.agent_session import AgentSession, Delivered, SubscriptionEnded
from protocol.errors import AuthError, CloseCode, ProtocolError

__all__ = ["TIMEOUT", "AgentConnection", "ConnectionClosed", "Delivered", "SubscriptionEnded",
           "handshake"]

log = logging.getLogger("opshub.agent")

#: One scalable constant for every network wait of the client (tests scale it too).
TIMEOUT = 10.0
#: Pause before re-sending a publish the hub could not store.
RETRY_DELAY = 0.2


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
        self.session = AgentSession(credential=identity.signed, answer=identity.answer,
                                    limits=limits)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._fatal: BaseException | None = None
        self._closing = False
        self._last_cid = 0
        self._published: dict[s.Key, asyncio.Future[int]] = {}
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._flush_scheduled = False
        self._window = asyncio.Event()
        self._window_low = 0
        self._deliveries: asyncio.Queue[Delivered | SubscriptionEnded] = asyncio.Queue(
            max_backlog)
        self._directed: asyncio.Queue[f.DirectedItem] = asyncio.Queue()
        self.connects = 0
        self.last_close_code: int | None = None

    @property
    def positions(self) -> dict[str, int]:
        """op -> last sequence handed to the application (where a resume starts)."""
        return self.session.positions

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
            self.session.send_acks()
            self._flush()
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
                self._ws = ws
                self.session.connection_made()
                connects = self.connects
                acker = asyncio.create_task(self._ack_loop())
                try:
                    await self._read(ws)
                finally:
                    acker.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await acker
                    self._ready.clear()
                    self._ws = None
                    self.session.connection_lost()
                    self.last_close_code = ws.close_code
                    await ws.close()
                if self.connects > connects:
                    backoff = 0.05  # this connection got through the handshake
            except AuthError as exc:
                self._fatal = exc
                return
            except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                log.info("%s: connection lost (%s); reconnecting", self.unit, exc)
            if not self.reconnect or self._closing:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            # the handshake must not hang; after it, silence is fine (heartbeats watch it)
            async with asyncio.timeout(None if self._ready.is_set() else TIMEOUT):
                msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                return
            events = self.session.receive(msg.data)
            self._flush()
            for event in events:
                await self._handle(event)

    async def _handle(self, event: s.Event) -> None:
        match event:
            case s.Connected():
                self.connects += 1
                self._ready.set()
            case Delivered() | SubscriptionEnded():
                await self._deliveries.put(event)  # backpressure: stop reading when full
            case s.PublishAcked():
                fut = self._published.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_result(event.seq)
                if self.session.unacked <= self._window_low:
                    self._window.set()
            case s.PublishFailed():
                fut = self._published.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(event.error)
            case s.PublishRetry():
                asyncio.get_running_loop().call_later(RETRY_DELAY, self._retry, event.key)
            case s.Replied():
                answer = self._answers.pop(event.rid, None)
                if answer is not None and not answer.done():
                    answer.set_result(event.info)
            case s.RequestFailed():
                answer = self._answers.pop(event.rid, None)
                if answer is not None and not answer.done():
                    answer.set_exception(event.error)
            case s.DirectedReceived():
                await self._directed.put(event.item)
            case s.HubError():
                log.warning("%s: hub error %s: %s", self.unit, event.code, event.message)
            case _:
                assert_never(event)

    # --- sending --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Write whatever the session has to send (in order; only awaits if the
        transport buffer is full, and then in a task that keeps the order)."""
        self._flush_scheduled = False
        ws = self._ws
        if ws is None or ws.closed:
            return  # the session re-sends after reconnecting
        for data in self.session.data_to_send():
            task = asyncio.ensure_future(ws.send_bytes(data))
            task.add_done_callback(_swallow_connection_errors)

    def _schedule_flush(self) -> None:
        """Coalesce everything queued in this loop tick into one write."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            (self._loop or asyncio.get_running_loop()).call_soon(self._flush)

    def _check_open(self) -> None:
        if self._closing:
            raise ConnectionClosed(f"connection of {self.unit} is closed")
        if self._fatal is not None:
            raise self._fatal

    async def _call(self, make: Callable[[int], s.Request]) -> dict[str, Any]:
        self._check_open()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        rid = self.session.request(make)
        self._answers[rid] = answer
        self._schedule_flush()
        try:
            async with asyncio.timeout(TIMEOUT):
                return await answer
        finally:
            if not answer.done():
                self._answers.pop(rid, None)
                self.session.forget(rid)

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
        key = self.session.publish(op, self.next_cid() if cid is None else cid, payload,
                                   header)
        fut = self._published.get(key)
        if fut is None:
            fut = (self._loop or asyncio.get_running_loop()).create_future()
            self._published[key] = fut
            self._schedule_flush()
        return fut

    async def publish(self, op: str, payload: bytes, *, header: bytes = b"",
                      cid: int | None = None) -> int:
        """Publish and wait until the hub has it on disk. Returns its sequence number.
        Raises RequestError (not_member, unknown_operation, ...)."""
        return await self.publish_nowait(op, payload, header=header, cid=cid)

    @property
    def unacked(self) -> int:
        """Publishes sent (or queued) that the hub has not yet acknowledged."""
        return self.session.unacked

    async def wait_unacked_at_most(self, n: int) -> None:
        """Wait until at most ``n`` publishes are unacknowledged: a pipelining window for
        publishers that use publish_nowait without awaiting every future."""
        while self.session.unacked > n:
            self._window_low = n
            self._window.clear()
            await self._window.wait()

    def _retry(self, key: s.Key) -> None:
        if not self._closing:
            self.session.retry(key)
            self._schedule_flush()

    async def subscribe(self, op: str, after: int | None = None,
                        senders: list[str] | None = None) -> dict[str, Any]:
        """Start receiving ``op`` after ``after`` (None: from the hub's cursor for us);
        with ``senders``, only those units' messages (and every commit). Returns
        {"op", "after", "head"}; raises RequestError (not_member, ...)."""
        filt = None if senders is None else tuple(sorted(set(senders)))
        return await self._call(lambda rid: f.Subscribe(rid=rid, op=op, after=after,
                                                        senders=filt))

    async def unsubscribe(self, op: str) -> None:
        self.session.unsubscribe_locally(op)
        await self._call(lambda rid: f.Unsubscribe(rid=rid, op=op))

    async def commit(self, statement: bytes, signature: bytes) -> dict[str, Any]:
        """Send a signed membership statement. Raises RequestError if the hub refuses it."""
        return await self._call(
            lambda rid: f.Commit(rid=rid, statement=statement, signature=signature))

    async def send_directed(self, op: str, to: str, payload: bytes) -> int:
        """Store ``payload`` at the hub for member ``to``; returns its id. Re-sent after a
        reconnect with the same cid, so the hub stores it once."""
        cid = self.next_cid()
        info = await self._call(
            lambda rid: f.SendDirected(rid=rid, op=op, to=to, payload=payload, cid=cid))
        return int(info["id"])

    def ack_directed(self, *ids: int) -> None:
        self.session.ack_directed(tuple(ids))
        self._schedule_flush()

    async def put_key_packages(self, packages: list[bytes], *, replace: bool = False) -> int:
        """Publish signed key packages; returns how many one-time ones the hub now holds.
        ``replace``: the hub first drops every package of this unit it holds."""
        info = await self._call(lambda rid: f.PutKeyPackages(rid=rid, packages=tuple(packages),
                                                             replace=replace))
        return int(info["available"])

    async def claim_key_packages(self, units: list[str]) -> tuple[dict[str, bytes], list[str]]:
        """Take one key package per unit (OCU units only): (unit -> package, units that
        have none)."""
        info = await self._call(lambda rid: f.ClaimKeyPackages(rid=rid, units=tuple(units)))
        return dict(info["packages"]), list(info["missing"])

    # --- receiving ------------------------------------------------------------------------

    async def deliveries(self) -> AsyncIterator[Delivered | SubscriptionEnded]:
        """Every entry of every subscribed operation, once, in order per operation."""
        while True:
            yield await self._deliveries.get()

    async def next_deliveries(self, limit: int = 256) -> list[Delivered | SubscriptionEnded]:
        """Wait for the next delivery, then take every one already queued behind it (up
        to ``limit``), in order: for readers that handle entries in batches."""
        out = [await self._deliveries.get()]
        while len(out) < limit:
            try:
                out.append(self._deliveries.get_nowait())
            except asyncio.QueueEmpty:
                break
        return out

    async def next_delivery(self, within: float = TIMEOUT) -> Delivered | SubscriptionEnded:
        """The next delivery; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._deliveries.get()

    async def next_directed(self, within: float = TIMEOUT) -> f.DirectedItem:
        """The next directed message; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._directed.get()

    async def _ack_loop(self) -> None:
        """Cumulative acks: the hub's cursor follows what was handed to the application."""
        while True:
            await asyncio.sleep(self.ack_interval)
            self.session.send_acks()
            self._flush()


async def handshake(ws: aiohttp.ClientWebSocketResponse, identity: UnitIdentity,
                    limits: codec.Limits = codec.DEFAULT_LIMITS) -> f.Ready:
    """Authenticate on a fresh socket (for tools that read frames themselves). Raises
    AuthError if refused, ProtocolError or ConnectionError if the hub misbehaves."""
    session = AgentSession(credential=identity.signed, answer=identity.answer, limits=limits)
    session.connection_made()
    async with asyncio.timeout(TIMEOUT):
        while True:
            msg = await ws.receive()
            if msg.type != aiohttp.WSMsgType.BINARY:
                raise ConnectionResetError(f"hub closed the connection (code {ws.close_code})")
            events = session.receive(msg.data)
            for data in session.data_to_send():
                await ws.send_bytes(data)
            for event in events:
                if isinstance(event, s.Connected):
                    return event.ready


def _swallow_connection_errors(task: asyncio.Future[None]) -> None:
    if not task.cancelled():
        exc = task.exception()
        if exc is not None and not isinstance(exc, ConnectionError | RuntimeError):
            log.warning("send failed: %r", exc)
