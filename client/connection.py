"""AgentConnection: an agent's link to a hub, with reconnect, resume and retried publishes.

What it promises the application:
- ``publish`` returns the sequence number once the hub has the message on disk; if
  the link drops first, the message is re-sent with the same client id after
  reconnecting, so the hub stores it once (idempotent retry).
- ``deliveries()`` yields each entry of each subscribed operation once, in order,
  across reconnects: it resumes from the last sequence it handed out.
- Publishes made in the same loop tick go out in one frame (pipelining).
- Every wait for the hub's answer is under a timeout (``TIMEOUT`` unless told otherwise).

Several hub URLs. Given the nodes of one cluster (hub nodes sharing one store, where any
node serves any operation), it connects to the first; when the link drops or a connect
attempt fails it tries the next in turn, pausing with the backoff only after a full round
of failures, and resumes on the new node exactly as after any reconnect.

Slow consumers. Deliveries and directed messages wait in bounded queues
(``max_backlog``, ``max_directed``) until the application takes them. When the application
does not read and a queue is full, the connection stops reading the socket: backpressure
reaches the hub over TCP, and the publish acks and request answers behind the waiting
frames wait too. If that lasts longer than the hub's ``slow_consumer_timeout``, the hub
closes the connection (1013, slow consumer); once the application reads again, the
connection reconnects and resumes after the last entry handed out: nothing is lost or
repeated, only delayed.

Tasks. ``connect`` starts one task that owns the socket; while connected it owns a reader
(itself), a writer and an ack timer; ``close`` cancels and awaits all of them. A bug in
them stops the connection: it is logged with its traceback, pending calls fail with it,
and every later call (and the delivery iterators) raise it.

This is the I/O edge: the protocol decisions are AgentSession's (protocol); this
class moves bytes, keeps futures and queues, and reconnects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from ssl import SSLContext
from typing import Any, TypeVar, assert_never

import aiohttp

from client.identity import UnitIdentity
from client.tls import tls_error
from protocol import agent_session as s
from protocol import codec
from protocol import frames as f
from protocol.agent_session import AgentSession, Delivered, SubscriptionEnded
from protocol.errors import AuthError, CloseCode, ProtocolError, TlsError, UsageError

__all__ = ["TIMEOUT", "AgentConnection", "ConnectionClosed", "Delivered", "HubUrls",
           "SubscriptionEnded", "handshake", "hub_urls", "rotated"]

log = logging.getLogger("opshub.agent")

#: One scalable constant for every network wait of the client (tests scale it too).
TIMEOUT = 10.0
#: Pause before re-sending a publish the hub could not store.
RETRY_DELAY = 0.2

_T = TypeVar("_T")

#: A hub's WebSocket URL, or the URLs of several nodes of one cluster, tried in turn.
HubUrls = str | Sequence[str]


def hub_urls(url: HubUrls) -> tuple[str, ...]:
    """``url`` as a tuple of URLs. Raises UsageError if there is none."""
    urls = (url,) if isinstance(url, str) else tuple(url)
    if not urls:
        raise UsageError("no hub URL given")
    return urls


def rotated(url: HubUrls, index: int) -> tuple[str, ...]:
    """The URLs for a tool's ``index``-th agent: the list rotated by ``index``, so agents
    spread over the nodes round robin (agent i first tries URL i mod n) and each falls
    back on the others in turn. Raises UsageError if there is no URL."""
    urls = hub_urls(url)
    k = index % len(urls)
    return urls[k:] + urls[:k]


class ConnectionClosed(Exception):
    """The connection was closed by the application and cannot be used."""


class _Stopped:
    """Put in a queue when the connection stops, to wake whoever waits on it."""


_STOPPED = _Stopped()


class AgentConnection:
    def __init__(
        self,
        url: HubUrls,
        identity: UnitIdentity,
        *,
        reconnect: bool = True,
        limits: codec.Limits = codec.DEFAULT_LIMITS,
        max_backlog: int = 100_000,
        max_directed: int = 1024,
        ack_interval: float = 0.05,
        now: Callable[[], float] = time.time,
        ssl: SSLContext | None = None,
    ) -> None:
        """``url``: the hub's WebSocket URL, or several nodes' (see "Several hub URLs"
        above). ``ssl``: for wss:// URLs, the context that verifies the hub's certificate
        (client.tls.client_context: trust the CA that signed it); None trusts the system's
        CAs. Raises UsageError for an empty list."""
        self.urls = hub_urls(url)
        self._at = 0  # index in ``urls`` of the node connected to, or tried next
        self.identity = identity
        self.unit = identity.unit
        self.reconnect = reconnect
        self.limits = limits
        self.ack_interval = ack_interval
        self.now = now
        self.ssl = ssl
        self.session = AgentSession(credential=identity.signed, answer=identity.answer,
                                    limits=limits)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._http: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._settled = asyncio.Event()  # connected, or the runner gave up
        self._write = asyncio.Event()  # the session may have something to send
        self._fatal: BaseException | None = None
        self._closing = False
        self._last_cid = 0
        self._published: dict[s.Key, asyncio.Future[int]] = {}
        self._answers: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._window = asyncio.Event()
        self._window_low = 0
        # bounded: see "Slow consumers" above; _STOPPED wakes readers when the link dies
        self._deliveries: asyncio.Queue[Delivered | SubscriptionEnded | _Stopped] = (
            asyncio.Queue(max_backlog))
        self._directed: asyncio.Queue[f.DirectedItem | _Stopped] = asyncio.Queue(max_directed)
        self.connects = 0
        self.last_close_code: int | None = None

    @property
    def current_url(self) -> str:
        """The URL of the node this connection is on (or is trying to reach)."""
        return self.urls[self._at]

    @property
    def url(self) -> str:
        """The same as ``current_url`` (the name from before several URLs)."""
        return self.current_url

    @property
    def positions(self) -> dict[str, int]:
        """op -> last sequence handed to the application (where a resume starts)."""
        return self.session.positions

    @property
    def hub_limits(self) -> codec.Limits:
        """The limits in force: ours, lowered to the hub's once it has announced them."""
        return self.session.limits

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> AgentConnection:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and authenticate. Raises AuthError if the hub refuses this unit,
        TlsError if TLS with it fails (wss://: its certificate does not verify),
        ConnectionError if it cannot be reached within TIMEOUT."""
        self._http = aiohttp.ClientSession()
        self._loop = asyncio.get_running_loop()
        self._runner = asyncio.create_task(self._run(), name=f"agent-{self.unit}")
        try:
            with contextlib.suppress(TimeoutError):  # not connected in time: raised below
                async with asyncio.timeout(TIMEOUT):
                    await self._settled.wait()
        except asyncio.CancelledError:  # cancelled mid-connect: leave no task or session
            await asyncio.shield(self.close())
            raise
        fatal = self._fatal
        if fatal is None and not self._ready.is_set():
            fatal = ConnectionError(f"could not connect to {', '.join(self.urls)}")
        if fatal is not None:
            await self.close()
            raise fatal

    async def close(self) -> None:
        """Send the last acks, close the socket, stop reconnecting; cancel and await
        every task of the connection."""
        if self._closing:
            return
        self._closing = True
        ws = self._ws
        if ws is not None and not ws.closed:
            self.session.send_acks()
            try:
                async with asyncio.timeout(TIMEOUT):
                    await self._send_pending(ws)
                    await ws.close()
            except (aiohttp.ClientError, ConnectionError, TimeoutError) as exc:
                log.info("%s: closing uncleanly (%r)", self.unit, exc)
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.wait({self._runner})
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
        """The connection's one long-lived task: connect, serve, reconnect. It ends when
        closed, when the hub refuses this unit, when the link drops without
        ``reconnect``, or on a bug; then every waiting call is woken with the reason."""
        try:
            await self._serve()
        except (AuthError, TlsError) as exc:
            self._fatal = exc
        except Exception as exc:  # a bug here: stop visibly instead of hanging the agent
            log.exception("%s: connection stopped by an unexpected error", self.unit)
            self._fatal = exc
        finally:
            if self._fatal is None and not self._closing:
                self._fatal = ConnectionError(f"connection of {self.unit} to "
                                              f"{self.current_url} lost and reconnect is off")
            self._ready.clear()
            self._settled.set()
            self._wake_waiters()

    async def _serve(self) -> None:
        backoff = 0.05
        failed = 0  # URLs tried in a row without getting through the handshake
        while not self._closing:
            connects = self.connects
            try:
                assert self._http is not None
                async with asyncio.timeout(TIMEOUT):
                    ws = await self._http.ws_connect(
                        self.current_url, max_msg_size=2 * self.limits.max_frame,
                        autoping=True, heartbeat=30.0, compress=0,
                        ssl=True if self.ssl is None else self.ssl)
                await self._connection(ws)
            except AuthError:
                raise
            except aiohttp.ClientSSLError as exc:
                # A certificate that does not verify will not on the next try either; nor
                # will a handshake that fails before this connection ever got through (a
                # plain ws:// hub at a wss:// URL). Later, it may be a node restarting.
                if (isinstance(exc, aiohttp.ClientConnectorCertificateError)
                        or not self.connects):
                    raise tls_error(self.current_url, exc) from None
                log.info("%s: TLS with %s failed (%s); reconnecting", self.unit,
                         self.current_url, exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                log.info("%s: connection to %s lost (%s); reconnecting", self.unit,
                         self.current_url, exc)
            if not self.reconnect or self._closing:
                return
            if self.connects > connects:  # this connection got through the handshake
                backoff, failed = 0.05, 0
            failed += 1
            self._next_url()
            if failed >= len(self.urls):  # a full round: pause before the next one
                await asyncio.sleep(backoff)
                backoff, failed = min(backoff * 2, 2.0), 0

    def _next_url(self) -> None:
        """Move on to the next URL in turn (with one URL, stay on it)."""
        if len(self.urls) > 1:
            old = self.current_url
            self._at = (self._at + 1) % len(self.urls)
            log.info("%s: switching from %s to %s", self.unit, old, self.current_url)

    async def _connection(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """One socket until it drops: read here; write and send acks in two tasks of a
        TaskGroup (a bug in either stops the reading too, and surfaces as the group's
        error). Raises the reader's network or protocol error once the helpers stopped."""
        self._ws = ws
        self.session.connection_made()
        lost: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as tg:
                helpers = [tg.create_task(self._write_loop(ws), name=f"write-{self.unit}"),
                           tg.create_task(self._ack_loop(), name=f"acks-{self.unit}")]
                try:
                    await self._read(ws)
                except (aiohttp.ClientError, OSError, TimeoutError, ProtocolError) as exc:
                    lost = exc  # raised below as itself, not inside an exception group
                finally:
                    for task in helpers:
                        task.cancel()
        finally:
            self._ready.clear()
            self._ws = None
            self.session.connection_lost()
            self.last_close_code = ws.close_code
            await ws.close()
        if lost is not None:
            raise lost

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

    async def _write_loop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The socket's one writer: what the session has to send, in order, whenever
        ``_flush`` says there may be some. A write that fails ends it; the reader sees
        the broken socket, and the session re-sends what matters after reconnecting."""
        while True:
            await self._write.wait()
            self._write.clear()
            try:
                await self._send_pending(ws)
            except (aiohttp.ClientError, ConnectionError) as exc:
                log.info("%s: write failed (%r)", self.unit, exc)
                return

    async def _send_pending(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for data in self.session.data_to_send():
            await ws.send_bytes(data)

    async def _handle(self, event: s.Event) -> None:
        match event:
            case s.Connected():
                self.connects += 1
                self._ready.set()
                self._settled.set()
            case Delivered() | SubscriptionEnded():
                await self._deliveries.put(event)  # backpressure: stop reading when full
            case s.PublishAcked():
                fut = self._published.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_result(event.seq)
                self._window_moved()
            case s.PublishFailed():
                fut = self._published.pop(event.key, None)
                if fut is not None and not fut.done():
                    fut.set_exception(event.error)
                self._window_moved()  # it is no longer unacknowledged either
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
                await self._directed.put(event.item)  # backpressure too
            case s.HubError():
                log.warning("%s: hub error %s: %s", self.unit, event.code, event.message)
            case _:
                assert_never(event)

    # --- sending --------------------------------------------------------------------------

    def _flush(self) -> None:
        """Have the writer send whatever the session has. It runs once this loop tick's
        callbacks are done, so everything queued in the tick goes out in one frame.
        Without a socket nothing is written: the session re-sends after reconnecting."""
        self._write.set()

    def _check_open(self) -> None:
        if self._closing:
            raise ConnectionClosed(f"connection of {self.unit} is closed")
        if self._fatal is not None:
            raise self._fatal

    def _wake_waiters(self) -> None:
        """The runner ended: fail pending calls and wake the queues' readers with why."""
        why = self._fatal or ConnectionClosed(f"connection of {self.unit} is closed")
        futures: list[asyncio.Future[Any]] = [*self._published.values(),
                                              *self._answers.values()]
        for fut in futures:
            if not fut.done():
                fut.set_exception(why)
                fut.exception()  # marked as seen: a publish_nowait future may have no reader
        self._published.clear()
        self._answers.clear()
        for queue in (self._deliveries, self._directed):
            with contextlib.suppress(asyncio.QueueFull):  # full: its reader is not waiting
                queue.put_nowait(_STOPPED)

    async def _take(self, queue: asyncio.Queue[_T | _Stopped]) -> _T:
        """The next item of one of the receive queues; raises why the connection stopped
        once it has, and the queue is drained."""
        if queue.empty() and self._runner is not None and self._runner.done():
            self._check_open()
        item = await queue.get()
        if isinstance(item, _Stopped):
            queue.put_nowait(item)  # for the next reader too
            self._check_open()
            raise ConnectionClosed(f"connection of {self.unit} has stopped")
        return item

    async def _call(self, make: Callable[[int], s.Request]) -> dict[str, Any]:
        self._check_open()
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        rid = self.session.request(make)
        self._answers[rid] = answer
        self._flush()
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
        """Queue a publish; the future resolves to its sequence number once durable.
        Raises UsageError(limit_exceeded) for a payload or header over the hub's limits
        (AgentSession.publish checks them: the hub would close the connection on it, again
        after every reconnect)."""
        self._check_open()
        key = self.session.publish(op, self.next_cid() if cid is None else cid, payload,
                                   header)
        fut = self._published.get(key)
        if fut is None or fut.cancelled():  # cancelled: its caller gave up, not the publish
            fut = (self._loop or asyncio.get_running_loop()).create_future()
            self._published[key] = fut
            self._flush()
        return fut

    async def publish(self, op: str, payload: bytes, *, header: bytes = b"",
                      cid: int | None = None, within: float = TIMEOUT) -> int:
        """Publish and wait until the hub has it on disk. Returns its sequence number.
        Raises RequestError (not_member, unknown_operation, ...); TimeoutError if not
        acknowledged ``within`` seconds: then it may still be stored, since it stays
        queued and is re-sent with the same cid until the hub answers (publishing the
        same cid again waits for that answer)."""
        fut = self.publish_nowait(op, payload, header=header, cid=cid)
        async with asyncio.timeout(within):
            # shielded: giving up waiting does not cancel the publish
            return await asyncio.shield(fut)

    @property
    def unacked(self) -> int:
        """Publishes sent (or queued) that the hub has not yet acknowledged."""
        return self.session.unacked

    async def wait_unacked_at_most(self, n: int, within: float = TIMEOUT) -> None:
        """Wait until at most ``n`` publishes are unacknowledged: a pipelining window for
        publishers that use publish_nowait without awaiting every future. Raises
        TimeoutError if the hub does not acknowledge enough ``within`` seconds."""
        async with asyncio.timeout(within):
            while self.session.unacked > n:
                self._window_low = n
                self._window.clear()
                await self._window.wait()

    def _window_moved(self) -> None:
        if self.session.unacked <= self._window_low:
            self._window.set()

    def _retry(self, key: s.Key) -> None:
        if not self._closing:
            self.session.retry(key)
            self._flush()

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
        self._flush()

    async def put_key_packages(self, packages: list[bytes], *, replace: bool = False) -> int:
        """Publish signed key packages; returns how many one-time ones the hub now holds.
        ``replace``: the hub first drops every package of this unit it holds."""
        info = await self._call(lambda rid: f.PutKeyPackages(rid=rid, packages=tuple(packages),
                                                             replace=replace))
        return int(info["available"])

    async def claim_key_packages(self, op: str, units: list[str], *, cid: int | None = None
                                 ) -> tuple[dict[str, bytes], list[str]]:
        """Take one key package per unit for the next statement of ``op`` (its admin only,
        or an 'ocu' unit before ``op`` exists): (unit -> package, units that have none).
        Re-sent after a reconnect with the same cid (default: the next one), so the hub
        hands out the first answer again instead of taking more packages. Raises
        RequestError (not_admin, bad_statement, store_failure)."""
        key = self.next_cid() if cid is None else cid
        info = await self._call(lambda rid: f.ClaimKeyPackages(rid=rid, units=tuple(units),
                                                               op=op, cid=key))
        return dict(info["packages"]), list(info["missing"])

    # --- receiving ------------------------------------------------------------------------

    # Reading waits for the hub without a timeout where the application waits for
    # whatever comes next (deliveries(), next_deliveries(), directed()); with one where
    # it waits for something it expects (next_delivery(), next_directed()). All of them
    # raise why the connection stopped (ConnectionClosed, AuthError, ...) once it has.

    async def deliveries(self) -> AsyncIterator[Delivered | SubscriptionEnded]:
        """Every entry of every subscribed operation, once, in order per operation."""
        while True:
            yield await self._take(self._deliveries)

    async def next_deliveries(self, limit: int = 256) -> list[Delivered | SubscriptionEnded]:
        """Wait for the next delivery, then take every one already queued behind it (up
        to ``limit``), in order: for readers that handle entries in batches."""
        out: list[Delivered | SubscriptionEnded] = [await self._take(self._deliveries)]
        while len(out) < limit:
            try:
                item = self._deliveries.get_nowait()
            except asyncio.QueueEmpty:
                break
            if isinstance(item, _Stopped):
                self._deliveries.put_nowait(item)  # raised by the next call
                break
            out.append(item)
        return out

    async def next_delivery(self, within: float = TIMEOUT) -> Delivered | SubscriptionEnded:
        """The next delivery; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._take(self._deliveries)

    async def directed(self) -> AsyncIterator[f.DirectedItem]:
        """Every directed message, once per connection (acknowledge each: ack_directed)."""
        while True:
            yield await self._take(self._directed)

    async def next_directed(self, within: float = TIMEOUT) -> f.DirectedItem:
        """The next directed message; raises TimeoutError if none comes ``within`` seconds."""
        async with asyncio.timeout(within):
            return await self._take(self._directed)

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

