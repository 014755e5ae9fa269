"""ServerConnection: pumps one aiohttp WebSocket through a ServerSession into the Broker.

Thin I/O: it reads messages, feeds the session, hands events to the broker, and
writes queued frames, encoded by the codec. Outbound frames wait in a bounded queue
drained by one writer task. Deliveries are only offered while the queue is under
``max_outbound_bytes``; once one is refused, every offer is refused until the queue
drains to a quarter of that, and then the broker is told (the router meanwhile lets
that subscriber read from the store at its own pace). Memory per connection stays
bounded either way.

Slow consumers (protocol.md 14.4). Progress is counted in bytes the peer takes off the
socket (PeerSocket), not in frames: a peer reading one large frame slowly is not slow.
One that takes nothing for ``slow_consumer_timeout`` seconds while bytes wait for it is
torn down: its queue is dropped, the close frame 1013 ``slow_consumer`` goes out right
behind what the socket already holds, and if the peer does not take that within the
grace period the connection is reset, so that the kernel frees the send buffer at once.

A failed handshake goes to the broker's audit trail: the peer's address, the error's code
and the unit its hello claimed (unverified: the claim is what was refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any

from aiohttp import WSMsgType, web

from hub.broker import Broker
from hub.guard import RejectLog
from protocol import codec
from protocol import frames as f
from protocol.credentials import Credential
from protocol.errors import AuthError, CloseCode, Code, DecodeError, ProtocolError
from protocol.router_audit import Kind
from protocol.session import ServerSession, State

if sys.platform == "linux":
    import fcntl

log = logging.getLogger("opshub.connection")

#: Seconds (never more than slow_consumer_timeout) a slow consumer may go without taking a
#: byte once its close frame is queued, before the connection is reset.
CLOSE_GRACE = 2.0
#: Seconds after which a slow consumer that still has not taken its close frame is reset,
#: however steadily it trickles.
CLOSE_DEADLINE = 10.0
#: How often a teardown looks at what the peer has taken.
_CLOSE_POLL = 0.05
#: SIOCOUTQ (linux/sockios.h; the same number as TIOCOUTQ): bytes of a TCP socket's send
#: queue the peer has not acknowledged.
_SIOCOUTQ = 0x5411

#: The router offers one Deliver frame to each subscriber in turn: encode it once.
_last_encoded: tuple[f.Deliver | None, bytes] = (None, b"")


def _encode_shared(frame: f.Deliver) -> bytes:
    global _last_encoded
    last, data = _last_encoded
    if last is not frame:
        data = codec.encode(frame)
        _last_encoded = (frame, data)
    return data


def _claimed_unit(hello: bytes | None) -> str | None:
    """The unit a refused hello named, if it parses that far (cheap: no signature check)."""
    if hello is None:
        return None
    try:
        frame = codec.decode(hello)
        return Credential.from_bytes(frame.credential).unit if isinstance(frame, f.Hello) else None
    except (DecodeError, AuthError):
        return None


def _wire_size(n: int) -> int:
    """Bytes a server frame with n payload bytes takes on the wire (RFC 6455 5.2: a 2-byte
    header, plus a 16- or 64-bit extended length; servers do not mask)."""
    return n + (2 if n < 126 else 4 if n < 65536 else 10)


class PeerSocket:
    """The kernel's side of one connection: how many bytes written to the transport the
    peer has not taken yet, and how the socket ends. Only Linux tells what waits in the
    kernel (SIOCOUTQ: written, not acknowledged); elsewhere the count stops at the
    transport's buffer."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        #: a duplicate descriptor that keeps the socket open past the transport's close
        self._held: socket.socket | None = None

    def _socket(self) -> Any:
        """The transport's socket while the transport is open (after that, its
        descriptor may already belong to another connection)."""
        if self.transport.is_closing():
            return None
        return self.transport.get_extra_info("socket")

    def set_send_buffer(self, size: int) -> None:
        """SO_SNDBUF: bounds what the kernel holds for the peer (0: leave it to the kernel,
        which grows it up to net.ipv4.tcp_wmem's maximum, 4 MiB by default)."""
        sock = self._socket()
        if size and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)

    def unsent(self) -> int:
        """Bytes written to the transport that the peer has not taken: those still in the
        transport's buffer, and (Linux) those in the kernel's send queue."""
        n = self.transport.get_write_buffer_size()
        sock = self._held if self._held is not None else self._socket()
        if sys.platform == "linux" and sock is not None:
            with contextlib.suppress(OSError, ValueError):
                n += struct.unpack("i", fcntl.ioctl(sock.fileno(), _SIOCOUTQ, b"\0" * 4))[0]
        return n

    def hold(self) -> None:
        """Keep the socket open whatever the transport does next, so that release() alone
        decides how it ends (a duplicate descriptor: closing the transport's own descriptor
        then sends nothing)."""
        sock = self._socket()
        if self._held is None and sock is not None:
            with contextlib.suppress(OSError):
                self._held = socket.socket(fileno=os.dup(sock.fileno()))

    def release(self, *, reset: bool) -> None:
        """End the socket. ``reset``: SO_LINGER {on, 0}, then close: the kernel sends RST
        and frees the send queue at once, instead of keeping it in FIN-WAIT-1 for as long
        as the peer's window stays shut. Otherwise a normal close (FIN)."""
        held, self._held = self._held, None
        linger = struct.pack("ii", 1, 0)
        if reset:
            target = held if held is not None else self._socket()
            if target is not None:
                with contextlib.suppress(OSError):
                    target.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.transport.abort()
        if held is not None:
            held.close()


class ServerConnection:
    def __init__(self, ws: web.WebSocketResponse, session: ServerSession, broker: Broker,
                 tasks: asyncio.TaskGroup,
                 transport: asyncio.Transport | None = None,
                 rejects: RejectLog | None = None) -> None:
        """``rejects``: where a failed handshake is logged (one rate-limited line)."""
        self.ws = ws
        self.rejects = rejects
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
        self.socket = PeerSocket(transport) if transport is not None else None
        peer = transport.get_extra_info("peername") if transport is not None else None
        #: the peer's IP address, for the audit trail
        self.address: str | None = str(peer[0]) if isinstance(peer, tuple) else None
        if self.socket is not None:
            self.socket.set_send_buffer(broker.config.socket_send_buffer)
        #: bytes handed to the transport (frames with their headers)
        self.written = 0
        #: stalled_for's last sample (bytes unsent, bytes written), and when the peer was
        #: last seen taking bytes
        self._sample = (0, 0)
        self.last_progress = time.monotonic()
        self._teardown: asyncio.Task[None] | None = None

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

    def _push(self, data: bytes) -> None:
        self._queue.append(data)
        self.queued_bytes += len(data)
        self._wakeup.set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        if self.closed:
            coro.close()
            return
        self._tasks.create_task(coro)

    @property
    def tearing_down(self) -> bool:
        return self._teardown is not None

    def close_soon(self, code: int, reason: str, *, flush: bool) -> None:
        if self._close is None:
            self._close = (code, reason, flush)
            self._wakeup.set()

    # --- slow consumers -----------------------------------------------------------------

    def waiting_bytes(self) -> int:
        """Bytes waiting for the peer in user space: the queue and the transport's buffer."""
        buffered = self.socket.transport.get_write_buffer_size() if self.socket else 0
        return self.queued_bytes + buffered

    def stalled_for(self, now: float) -> float:
        """Seconds the peer has had bytes waiting for it without taking any (0 when none
        wait). Progress is counted in bytes taken off the socket, so a peer reading one
        large frame slowly is not stalled. Sampled by the hub's housekeeping: each call
        compares what is unsent with the previous call."""
        if not self.waiting_bytes():
            self.last_progress = now
            return 0.0
        if self.socket is not None:
            unsent, written = self.socket.unsent(), self.written
            before, written_before = self._sample
            # Less unsent than before, plus what was written since: the peer took bytes.
            if unsent < before + (written - written_before):
                self.last_progress = now
            self._sample = (unsent, written)
        return now - self.last_progress

    def abort_slow(self, why: str) -> None:
        """Give up on a peer that does not read (protocol.md 14.4): drop its queue, close
        with 1013 ``slow_consumer`` right behind what the socket already holds, and reset
        the connection if the peer does not take that (_tear_down). Also overrides a close
        that was waiting to flush frames the peer does not read."""
        if self.closed or self._teardown is not None:
            return
        self.metrics.slow_consumers += 1
        dropped = self.queued_bytes
        self._queue.clear()
        self.queued_bytes = 0
        self._close = (CloseCode.TRY_AGAIN_LATER, Code.SLOW_CONSUMER, False)
        self._wakeup.set()
        if self.socket is not None:
            self.socket.hold()  # before anything can close the transport's descriptor
        self._teardown = self._tasks.create_task(self._tear_down(why, dropped))

    async def _tear_down(self, why: str, dropped: int) -> None:
        """Write the close frame now (the writer may be stuck waiting for the peer to
        drain; the frames it handed over stay whole), then watch the socket: everything
        taken, a normal close; nothing taken for the grace period, or the close frame
        still not taken at the deadline, a reset. One log line says which."""
        started = time.monotonic()
        grace = min(CLOSE_GRACE, self.broker.config.slow_consumer_timeout)
        unsent, reset = 0, True
        try:
            with contextlib.suppress(TimeoutError):
                # Not drained: the close frame is in the transport, behind what it holds.
                async with asyncio.timeout(grace):
                    await self.ws.close(code=CloseCode.TRY_AGAIN_LATER,
                                        message=Code.SLOW_CONSUMER.encode(), drain=False)
            if self.socket is None:
                reset = False
                return
            least, progress_at = self.socket.unsent(), time.monotonic()
            while (unsent := self.socket.unsent()) > 0:
                now = time.monotonic()
                if unsent < least:
                    least, progress_at = unsent, now
                if now - progress_at >= grace or now - started >= CLOSE_DEADLINE:
                    break
                await asyncio.sleep(_CLOSE_POLL)
            else:
                reset = False
        finally:
            if self.socket is not None:
                self.socket.release(reset=reset)
            took = time.monotonic() - started
            peer = self.unit or "peer"
            if reset:
                log.warning("slow consumer %s (%s): reset after %.1f s, close frame not "
                            "taken; dropped %d queued bytes and %d unsent in the socket",
                            peer, why, took, dropped, unsent)
            else:
                log.warning("slow consumer %s (%s): closed with 1013 slow_consumer after "
                            "%.1f s; dropped %d queued bytes", peer, why, took, dropped)

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
                    self.written += _wire_size(len(data))
                    # Returns once the frame is in the transport, unless aiohttp's 256 KiB
                    # chunk is passed while the transport is over its high-water mark: then
                    # it waits for the peer to read (drain). The transport thus holds at
                    # most one frame and about 256 KiB more.
                    await ws.send_bytes(data)
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
            if self._teardown is None:  # a slow consumer's teardown closes on its own
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
                self._flush_session(data)
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

    def _flush_session(self, received: bytes | None = None) -> None:
        """Send what the session queued; close as it says. ``received``: the message it
        was just fed (a refused hello names the unit the audit entry records)."""
        for data in self.session.data_to_send():
            self.enqueue(data)
        if self.session.state is State.CLOSED and self.session.close_code is not None:
            if self.session.error is not None:
                self.counts.errors[self.session.error.code] += 1
                if self.session.unit is None:
                    self._handshake_failed(self.session.error, received)
            self.close_soon(self.session.close_code, self.session.close_reason, flush=True)

    def _handshake_failed(self, error: ProtocolError, received: bytes | None) -> None:
        """The handshake failed: bad or unknown credential, bad proof, no or malformed
        hello, timeout. The trail bounds how many of these one address writes."""
        unit = _claimed_unit(received)
        self.broker.audit.record(Kind.AUTH_FAILURE, unit=unit, source=self.address,
                                 code=error.code, transport="ws")
        if self.rejects is not None:
            self.rejects.warn(self.address, f"WebSocket handshake{f' of {unit}' if unit else ''}"
                              f": {error.code}: {error.message}")
