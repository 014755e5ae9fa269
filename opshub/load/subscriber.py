"""Subscriber: one subscribed unit of a load run, lean (raw msgpack, no dataclass per
entry) so that load processes leave the CPU to the hub, and resumed like an agent.

It checks what bench.py's subscribers check (every entry once, in order, no gap) and
records each message's latency from its intended and actual send times. When the hub
closes the connection (1013 slow consumer, 1001 going away) or it drops (1006), it
reconnects with the reference client's backoff (50 ms doubling to 2 s, protocol.md 13.3),
subscribes again after the last seq it received, and counts the close, the resume and the
time from the close until it has caught up with the head the hub announced on the new
subscription. Given the URLs of several nodes of one cluster, it starts on the first and
moves on to the next in turn after each close or failed connect, as AgentConnection does.
Directed messages are deduplicated by id and acknowledged (``dack``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

import aiohttp
import msgpack

from client.connection import TIMEOUT, HubUrls, handshake, hub_urls
from client.identity import UnitIdentity
from opshub.load import messages as m
from opshub.load.plan import SubscriberSpec
from opshub.load.recorder import Recorder
from opshub.load.traffic import read_stamp
from protocol import codec
from protocol import frames as f
from protocol.errors import AuthError, ProtocolError

log = logging.getLogger("opshub.load")

ACK_EVERY_NS = 50_000_000  # like AgentConnection: one cumulative ack per 50 ms
BACKOFF_FIRST = 0.05
BACKOFF_MAX = 2.0
MAX_MESSAGE = 8 * 1024 * 1024  # twice the hub's max_frame
#: RFC 6455 7.1.5: the code of a connection that ended without a close frame
DROPPED = 1006
#: What a broken connection raises while connecting, reading or writing.
LINK_ERRORS = (aiohttp.ClientError, OSError, TimeoutError, ProtocolError)


class Subscriber:
    def __init__(self, spec: SubscriberSpec, identity: UnitIdentity, url: HubUrls,
                 rec: Recorder) -> None:
        self.spec = spec
        self.identity = identity
        self.urls = hub_urls(url)
        self._at = 0  # index in ``urls`` of the node connected to, or tried next
        self.rec = rec
        self.last = 0  # the last seq received, in order
        self.directed_seen: set[int] = set()
        #: what Drain asks for: the head of the log and the directed messages owed
        self.head: int | None = None
        self.directed_owed = 0
        self.done = asyncio.Event()
        self._rid = 0
        self._acked_at = 0
        self._closed_at: int | None = None  # a resume is catching up since then ...
        self._catchup_to: int | None = None  # ... to this seq

    @property
    def url(self) -> str:
        """The URL of the node this subscriber is on (or tries next)."""
        return self.urls[self._at]

    async def connect(self, http: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
        """Connect, authenticate and subscribe after ``last``. Raises LINK_ERRORS."""
        async with asyncio.timeout(TIMEOUT):
            ws = await http.ws_connect(self.url, compress=0, max_msg_size=MAX_MESSAGE)
            try:
                await handshake(ws, self.identity)
                self._rid += 1
                await ws.send_bytes(codec.encode(
                    f.Subscribe(rid=self._rid, op=self.spec.op, after=self.last)))
            except BaseException:
                await ws.close()
                raise
        return ws

    async def run(self, http: aiohttp.ClientSession,
                  ws: aiohttp.ClientWebSocketResponse | None) -> None:
        """Read until cancelled; resume after every close. An authentication refusal
        ends it (a credential does not get better by retrying)."""
        backoff = BACKOFF_FIRST
        try:
            while True:
                if ws is not None:
                    code = await self._read(ws)
                    self._closed_at = self._closed_at or time.monotonic_ns()
                    self.rec.close(code)
                    log.info("%s: closed (%s); resuming after %d", self.spec.unit, code,
                             self.last)
                    await ws.close()
                    ws = None
                    self._next_url()
                await asyncio.sleep(backoff)
                try:
                    ws = await self.connect(http)
                except AuthError as exc:
                    self.rec.error(f"auth: {exc.code}")
                    return
                except LINK_ERRORS as exc:
                    self.rec.error(f"reconnect: {type(exc).__name__}")
                    backoff = min(backoff * 2, BACKOFF_MAX)
                    self._next_url()
                    continue
                self.rec.count(m.RESUMES)
                backoff = BACKOFF_FIRST
        finally:
            if ws is not None:
                with contextlib.suppress(*LINK_ERRORS):
                    await ws.close()

    def _next_url(self) -> None:
        if len(self.urls) > 1:
            self._at = (self._at + 1) % len(self.urls)
            log.info("%s: moving on to %s", self.spec.unit, self.url)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> int:
        """Handle frames until the connection ends; returns its close code."""
        try:
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                reply = self._frame(msg.data)
                if reply is not None:
                    await ws.send_bytes(reply)
        except LINK_ERRORS as exc:
            log.info("%s: connection failed: %r", self.spec.unit, exc)
        return ws.close_code or DROPPED

    def _frame(self, data: bytes) -> bytes | None:
        """Take one frame; returns a frame to send back (an ack, a dack) or None."""
        now = time.monotonic_ns()
        obj = msgpack.unpackb(data, raw=True)  # keys and strings stay bytes: cheaper
        kind = obj[b"t"]
        reply = None
        if kind == b"deliver":
            self._deliver(obj[b"items"], now)
            if now - self._acked_at > ACK_EVERY_NS:
                self._acked_at = now
                reply = msgpack.packb({"t": "ack", "op": self.spec.op, "seq": self.last})
        elif kind == b"directed":
            reply = self._directed(obj[b"items"], now)
        elif kind == b"ok":
            self._subscribed(obj[b"info"], now)
        elif kind == b"error":
            self.rec.error(obj[b"code"].decode())
        elif kind == b"ended":
            self.rec.error("ended")
        self._check(now)
        return reply

    def _deliver(self, items: list[Any], now: int) -> None:
        last, delivered, rec = self.last, 0, self.rec
        for item in items:
            seq = item[0]
            if seq <= last:
                rec.count(m.DUPLICATES)
                continue
            if seq != last + 1:
                rec.count(m.GAPS)
            last = seq
            if item[2] == 0:  # a message; kind 1 entries are membership statements
                delivered += 1
                stamp = read_stamp(item[4])
                if stamp is not None:
                    rec.delivery(stamp[0], stamp[1], now)
        self.last = last
        rec.count(m.DELIVERED, delivered)

    def _directed(self, items: list[Any], now: int) -> bytes:
        ids = []
        for item in items:
            ident = item[0]
            ids.append(ident)
            if ident in self.directed_seen:
                continue  # delivered again (protocol.md 11): acknowledge it again
            self.directed_seen.add(ident)
            self.rec.count(m.DIRECTED_DELIVERED)
            stamp = read_stamp(item[3])
            if stamp is not None:
                self.rec.delivery(stamp[0], stamp[1], now)
        return codec.encode(f.DirectedAck(ids=tuple(ids)))

    def _subscribed(self, info: dict[bytes, Any], now: int) -> None:
        if self._closed_at is not None:  # a resume: catching up to this head
            self._catchup_to = int(info.get(b"head", 0))

    def _check(self, now: int) -> None:
        if (self._catchup_to is not None and self._closed_at is not None
                and self.last >= self._catchup_to):
            self.rec.catchup_s.append((now - self._closed_at) / 1e9)
            self._catchup_to = self._closed_at = None
        if (self.head is not None and self.last >= self.head
                and len(self.directed_seen) >= self.directed_owed):
            self.done.set()

    def drain(self, msg: m.Drain) -> None:
        """From now on, ``done`` is set once the head of this subscriber's operation and
        the directed messages owed to it are in."""
        self.head = msg.heads.get(self.spec.op, 0)
        self.directed_owed = msg.directed.get(self.spec.unit, 0)
        self._check(time.monotonic_ns())

    async def close(self) -> None:
        """Nothing to do: ``run`` closes its connection when it is cancelled."""

    @property
    def missing(self) -> tuple[int, int]:
        """(log entries, directed messages) still owed by the Drain targets."""
        head = self.head if self.head is not None else self.last
        return max(0, head - self.last), max(0, self.directed_owed - len(self.directed_seen))
