"""ServerConnection: pumps one aiohttp WebSocket through a ServerSession into the Broker.

Thin I/O: it reads messages, feeds the session, hands events to the broker, and
writes queued frames, encoded by the codec. Outbound frames wait in a bounded queue
drained by one writer task. Deliveries are only offered while the queue is under
``max_outbound_bytes``; once one is refused, every offer is refused until the queue
drains to a quarter of that, and then the broker is told (the router meanwhile lets
that subscriber read from the store at its own pace). A peer that reads nothing for
``slow_consumer_timeout`` seconds while frames wait is closed with 1013 (try again
later). Memory per connection stays bounded either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from hub.broker import Broker
from protocol import codec
from protocol import frames as f
from protocol.errors import CloseCode, Code, DecodeError
from protocol.session import ServerSession, State

log = logging.getLogger("opshub.connection")

#: Seconds (at most; never more than slow_consumer_timeout) a slow consumer has to
#: take its close frame before the socket is dropped.
ABORT_GRACE = 2.0

#: The router offers one Deliver frame to each subscriber in turn: encode it once.
_last_encoded: tuple[f.Deliver | None, bytes] = (None, b"")


def _encode_shared(frame: f.Deliver) -> bytes:
    global _last_encoded
    last, data = _last_encoded
    if last is not frame:
        data = codec.encode(frame)
        _last_encoded = (frame, data)
    return data


class ServerConnection:
    def __init__(self, ws: web.WebSocketResponse, session: ServerSession, broker: Broker,
                 tasks: asyncio.TaskGroup,
                 transport: asyncio.Transport | None = None) -> None:
        self.ws = ws
        self.transport = transport
        self.session = session
        self.broker = broker
        self.metrics = broker.metrics
        self.counts = broker.metrics.counts
        self.max_outbound = broker.config.max_outbound_bytes
        self._tasks = tasks
        self.unit = ""
        self.closed = False
        self._queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self._wakeup = asyncio.Event()
        #: a delivery was refused; the broker hears when there is room again
        self._refused = False
        self._close: tuple[int, str, bool] | None = None
        self.last_progress = time.monotonic()

    # --- Outbox -----------------------------------------------------------------------

    def send(self, frame: f.ServerFrame) -> None:
        self.enqueue(codec.encode(frame))

    def offer(self, frame: f.Deliver) -> bool:
        """Delivery frames queue only while there is room (an empty queue always has room,
        so a frame larger than the limit still makes progress); once refused, refused
        until the queue has drained."""
        if self.closed or self._close is not None or self._refused:
            return False
        data = _encode_shared(frame)
        if self.queued_bytes and self.queued_bytes + len(data) > self.max_outbound:
            self._refused = True
            return False
        self._push(data)
        return True

    def enqueue(self, data: bytes) -> None:
        """Control frames (acks, oks, errors) always queue, up to twice the limit: a peer
        that sends requests but does not read the answers is closed (1013)."""
        if self.closed or self._close is not None:
            return
        if self.queued_bytes + len(data) > 2 * self.max_outbound:
            self.abort_slow(f"outbound queue over {2 * self.max_outbound} bytes")
            return
        self._push(data)

    def stalled_for(self, now: float) -> float:
        """Seconds the peer has had frames waiting without reading any of them."""
        return now - self.last_progress if self.queued_bytes else 0.0

    def abort_slow(self, why: str) -> None:
        """Close with 1013. If the writer is stuck on a peer that reads nothing, not even
        the close frame, drop the TCP connection after a grace period."""
        if self._close is not None or self.closed:
            return
        self.metrics.slow_consumers += 1
        log.warning("closing %s (slow consumer): %s", self.unit or "peer", why)
        self.close_soon(CloseCode.TRY_AGAIN_LATER, Code.SLOW_CONSUMER, flush=False)
        grace = min(ABORT_GRACE, self.broker.config.slow_consumer_timeout)
        asyncio.get_running_loop().call_later(grace, self._abort_transport)

    def _abort_transport(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.abort()

    def _push(self, data: bytes) -> None:
        if not self.queued_bytes:
            self.last_progress = time.monotonic()
        self._queue.append(data)
        self.queued_bytes += len(data)
        self._wakeup.set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.closed:
            coro.close()
            return
        self._tasks.create_task(coro)

    @property
    def closing(self) -> bool:
        return self.closed or self._close is not None

    def close_soon(self, code: int, reason: str, *, flush: bool) -> None:
        if self._close is None:
            self._close = (code, reason, flush)
            self._wakeup.set()

    # --- pumps ----------------------------------------------------------------------------

    async def writer(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                if self._close is not None and not self._close[2]:
                    break
                while self._queue:
                    data = self._queue.popleft()
                    self.queued_bytes -= len(data)
                    # Returns at once unless the transport buffer is over its high-water
                    # mark; then it waits for the peer to read (drain).
                    await ws.send_bytes(data)
                    self.last_progress = time.monotonic()
                    self.metrics.bytes_out += len(data)
                    if self._refused and self.queued_bytes <= self.max_outbound // 4:
                        self._refused = False
                        self.broker.writable(self)
                    if self._close is not None and not self._close[2]:
                        break
                if self._close is not None:
                    break
        except (ConnectionError, RuntimeError) as exc:
            log.debug("writer of %s stopped: %s", self.unit or "peer", exc)
        finally:
            self.closed = True
            code, reason, _ = self._close or (CloseCode.NORMAL, "", True)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await ws.close(code=code, message=reason.encode())

    async def reader(self) -> None:
        session, broker, ws = self.session, self.broker, self.ws
        timeout = broker.config.handshake_timeout
        self._flush_session()
        try:
            while self._close is None:
                try:
                    if session.state is State.AWAIT_HELLO:
                        async with asyncio.timeout(timeout):
                            msg = await ws.receive()
                    else:
                        msg = await ws.receive()
                except TimeoutError:
                    session.fail(DecodeError(f"no hello within {timeout:g} s"))
                    self._flush_session()
                    break
                if msg.type == WSMsgType.BINARY:
                    data: bytes = msg.data
                elif msg.type == WSMsgType.TEXT:
                    session.fail(DecodeError("text frames are not accepted; send binary msgpack"))
                    self._flush_session()
                    break
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
                self.metrics.bytes_in += len(data)
                events = session.receive(data)
                self._flush_session()
                for event in events:
                    if not self.unit and session.unit is not None:
                        self.unit = session.unit
                    broker.handle(self, event)
                if session.state is State.CLOSED:
                    break
                if broker.worker.pending >= broker.worker.max_pending:
                    await broker.worker.wait_for_room()
        finally:
            if self._close is None:
                self.close_soon(CloseCode.NORMAL, "", flush=True)
            if self.unit:
                broker.disconnected(self)

    def _flush_session(self) -> None:
        for data in self.session.data_to_send():
            self.enqueue(data)
        if self.session.state is State.CLOSED and self.session.close_code is not None:
            if self.session.error is not None:
                self.counts.errors[self.session.error.code] += 1
            self.close_soon(self.session.close_code, self.session.close_reason, flush=True)
