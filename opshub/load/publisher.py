"""Publisher: one publishing unit of a load run, over the reference AgentConnection (it
pipelines, batches what one loop tick publishes into one frame, reconnects and re-sends
unacknowledged publishes with their cids).

Open loop: messages go out at the schedule's intended times, each stamped with it; when
the publisher is late (its process was paused, its loop is busy, or ``max_inflight``
messages wait for acks) the overdue messages go out as soon as it can, still stamped with
their intended times, so the delay shows in the latency. Closed loop: ``window`` messages
in flight, refilled when half are answered; each stamped with its actual send time.
"""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections import Counter

from client.connection import AgentConnection, ConnectionClosed
from opshub.load import messages as m
from opshub.load.plan import PublisherSpec
from opshub.load.recorder import Recorder
from opshub.load.traffic import Schedule, Traffic, phase_of
from protocol.errors import OpshubError

#: Messages queued per loop tick at most (AgentSession splits frames at max_batch).
BATCH = 256


class Publisher:
    """Opaque payloads over ``conn``; e2ee.SecurePublisher encrypts them (``_publish``)."""

    def __init__(self, spec: PublisherSpec, conn: AgentConnection, rec: Recorder, *,
                 max_inflight: int) -> None:
        self.spec = spec
        self.rec = rec
        self.conn = conn
        self.traffic = Traffic(spec.size, spec.directed, spec.recipients,
                               random.Random(spec.seed))
        self.max_inflight = max_inflight
        self.head = 0  # the highest seq acknowledged
        self.acked = 0  # published messages acknowledged
        self.directed: Counter[str] = Counter()  # recipient -> sends the hub accepted
        self.inflight = 0
        self.lag_ns = 0
        self._low = 0
        self._room = asyncio.Event()

    async def connect(self) -> None:
        await self.conn.connect()

    async def close(self) -> None:
        await self.conn.close()

    async def run(self, rate: float | None, start_ns: int, end_ns: int,
                  tasks: asyncio.TaskGroup) -> None:
        """One phase: open loop at ``rate`` or closed loop with the shape's window."""
        if rate is None:
            await self._closed_loop(self.spec.window or 1, end_ns, tasks)
        else:
            await self._open_loop(Schedule(start_ns, end_ns, rate,
                                           phase=phase_of(self.spec.seed)), tasks)

    async def _open_loop(self, schedule: Schedule, tasks: asyncio.TaskGroup) -> None:
        self._low = self.max_inflight - 1
        while (due := schedule.next_ns) is not None:
            now = time.monotonic_ns()
            if due > now:
                self.lag_ns = 0
                await asyncio.sleep((due - now) / 1e9)
                continue
            self.lag_ns = now - due
            room = self.max_inflight - self.inflight
            if room <= 0:
                await self._wait_for_room(None)
                continue
            for intended in schedule.take(now, min(room, BATCH)):
                self._send(intended, now, tasks)
            await asyncio.sleep(0)  # let the connection write
        self.lag_ns = 0

    async def _closed_loop(self, window: int, end_ns: int, tasks: asyncio.TaskGroup) -> None:
        self._low = window // 2
        while (now := time.monotonic_ns()) < end_ns:
            room = window - self.inflight
            if room <= 0:
                if not await self._wait_for_room((end_ns - now) / 1e9):
                    break
                continue
            for _ in range(min(room, BATCH)):
                self._send(now, now, tasks)
            await asyncio.sleep(0)

    async def _wait_for_room(self, within: float | None) -> bool:
        """Wait until at most ``_low`` messages are in flight; False if ``within`` ran out."""
        self._room.clear()
        try:
            async with asyncio.timeout(within):
                await self._room.wait()
        except TimeoutError:
            return False
        return True

    def _send(self, intended: int, now: int, tasks: asyncio.TaskGroup) -> None:
        size, to = self.traffic.next()
        if to is not None:
            self.inflight += 1
            self.rec.count(m.DIRECTED_SENT)
            tasks.create_task(self._direct(to, self.traffic.payload(size, intended, now),
                                           intended))
            return
        try:
            fut = self._publish(size, intended, now)
        except (OpshubError, ConnectionError, ConnectionClosed) as exc:
            self.rec.error(f"publish: {getattr(exc, 'code', type(exc).__name__)}")
            return
        self.inflight += 1
        self.rec.count(m.SENT)
        fut.add_done_callback(functools.partial(self._published, intended))

    def _publish(self, size: int, intended: int, now: int) -> asyncio.Future[int]:
        """Queue one message; its future resolves to the seq. Raises what
        AgentConnection.publish_nowait raises."""
        return self.conn.publish_nowait(self.spec.op, self.traffic.payload(size, intended, now))

    def _published(self, intended: int, fut: asyncio.Future[int]) -> None:
        self.inflight -= 1
        if fut.cancelled():
            self.rec.error("publish: cancelled")
        elif (exc := fut.exception()) is not None:
            self.rec.error(f"publish: {getattr(exc, 'code', type(exc).__name__)}")
        else:
            self.head = max(self.head, fut.result())
            self.acked += 1
            self.rec.count(m.ACKED)
            self.rec.count(m.EXPECTED, self.spec.fanout)
            self.rec.acked(intended, time.monotonic_ns())
        if self.inflight <= self._low:
            self._room.set()

    async def _direct(self, to: str, payload: bytes, intended: int) -> None:
        try:
            await self.conn.send_directed(self.spec.op, to, payload)
        except (OpshubError, ConnectionError, ConnectionClosed, TimeoutError) as exc:
            self.rec.error(f"send: {getattr(exc, 'code', type(exc).__name__)}")
        else:
            self.directed[to] += 1
            self.rec.count(m.DIRECTED_ACKED)
            self.rec.count(m.EXPECTED)
            self.rec.acked(intended, time.monotonic_ns())
        finally:
            self.inflight -= 1
            if self.inflight <= self._low:
                self._room.set()

    async def settle(self, within: float) -> int:
        """Wait until every message has been answered; returns how many were not."""
        self._low = 0
        if self.inflight:
            await self._wait_for_room(within)
        return self.inflight
