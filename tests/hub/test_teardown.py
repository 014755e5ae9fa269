"""Slow consumers against a real hub on 127.0.0.1, over real sockets: a peer that stops
reading is closed with 1013 ``slow_consumer`` when it can still take the close frame, and
reset otherwise, leaving nothing in the kernel; a peer reading slowly is not a slow
consumer (protocol.md 13.3, 14.4)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.connection import TIMEOUT, AgentConnection
from hub.app import RunningHub
from protocol import frames as f
from protocol.errors import CloseCode, Code
from tests.conftest import Keys, create_operation
from tests.hub.raw_websocket import RawWebSocket

OP = "OP-DRAIN"
#: slow_consumer_timeout of the hubs below: short, scaled with the client's TIMEOUT.
STALL = TIMEOUT / 10
#: Payload of each published message: deliver frames of ~1 MiB hold a few of them.
BIG = 200 * 1024
#: The slow peer's receive buffer (the kernel doubles it): small, so the hub's side holds
#: the backlog, as it does for a peer across a real network.
RCVBUF = 64 * 1024
#: /proc/net/tcp state numbers (include/net/tcp_states.h).
TCP_STATES = {1: "ESTABLISHED", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
              7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 11: "CLOSING"}


def hub_side_socket(hub_port: int, peer_port: int) -> tuple[str, int] | None:
    """The state and send-queue bytes of the hub's socket to ``peer_port``, read from the
    kernel's table (/proc/net/tcp), or None if the kernel holds no such socket."""
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote, state = fields[1], fields[2], int(fields[3], 16)
            if (int(local.split(":")[1], 16) == hub_port
                    and int(remote.split(":")[1], 16) == peer_port):
                return TCP_STATES.get(state, str(state)), int(fields[4].split(":")[0], 16)
    return None


@dataclass
class Backlog:
    """A hub, a publisher, and a raw subscriber ``peer`` that reads nothing."""

    running: RunningHub
    publisher: AgentConnection
    peer: RawWebSocket
    published: int = 0

    async def publish(self, n: int) -> None:
        """n messages of BIG bytes, acknowledged."""
        async with asyncio.timeout(TIMEOUT):
            await asyncio.gather(*(self.publisher.publish_nowait(
                OP, b"%08d" % (self.published + i) + bytes(BIG - 8)) for i in range(n)))
        self.published += n

    async def until_given_up(self) -> None:
        """Publish 8 MB for the peer, and wait for the hub to close it as a slow consumer."""
        await self.publish(40)
        metrics = self.running.hub.metrics
        async with asyncio.timeout(TIMEOUT):
            while metrics.slow_consumers == 0:
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def backlog(keys: Keys, db: Path, **config: object) -> AsyncIterator[Backlog]:
    settings: dict[str, object] = {"slow_consumer_timeout": STALL,
                                   "max_outbound_bytes": 2 * 1024 * 1024, **config}
    running = RunningHub(keys.config(db, **settings))
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running, AgentConnection(running.url, keys["OCU-BB"]) as publisher:
        await create_operation(publisher, keys, OP, ["JM-CUSTOMS"])
        peer = await RawWebSocket.connect("127.0.0.1", running.port, rcvbuf=RCVBUF)
        try:
            await peer.handshake(keys["JM-CUSTOMS"])
            peer.send(f.Subscribe(rid=1, op=OP, after=1))
            assert isinstance(await peer.frame(), f.Ok)
            yield Backlog(running, publisher, peer)
        finally:
            peer.close()


async def test_teardown_of_a_peer_that_reads_nothing_frees_its_socket(keys, tmp_path):
    """A slow consumer that never reads again: within a few seconds of the hub giving up,
    the hub's socket to it is gone from the kernel's table (reset: no FIN_WAIT1 holding
    megabytes of stale deliveries in the send buffer)."""
    async with backlog(keys, tmp_path / "hub.db") as b:
        await b.until_given_up()
        given_up = time.monotonic()
        port, peer_port = b.running.port, b.peer.local_port
        seen = hub_side_socket(port, peer_port)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(3 * STALL):
                while (seen := hub_side_socket(port, peer_port)) is not None:
                    await asyncio.sleep(0.05)
        assert seen is None, (f"{time.monotonic() - given_up:.1f} s after the close the "
                              f"hub's socket is {seen[0]} with {seen[1]} bytes unsent")


@pytest.mark.parametrize("rate", [None, 1024 * 1024], ids=["at-once", "1-MiB-per-s"])
async def test_teardown_peer_reading_again_sees_1013_slow_consumer(keys, tmp_path, rate):
    """A slow consumer that starts reading again when the hub gives up, as fast as it can
    or at a steady 1 MiB/s, reads through what the socket already held and gets the close
    frame 1013 ``slow_consumer`` (not an abnormal end, 1006, halfway through)."""
    async with backlog(keys, tmp_path / "hub.db") as b:
        await b.until_given_up()
        b.peer.rate = rate
        async with asyncio.timeout(TIMEOUT):
            code, reason, skipped = await b.peer.until_close()
        assert (code, reason) == (CloseCode.TRY_AGAIN_LATER, Code.SLOW_CONSUMER), skipped


async def test_teardown_spares_a_peer_reading_one_large_frame_slowly(keys, tmp_path):
    """A peer that reads steadily, but so slowly that one ~1 MiB deliver frame takes
    several slow_consumer_timeouts to cross, is not a slow consumer: progress is counted
    in bytes the peer takes, not in frames."""
    async with backlog(keys, tmp_path / "hub.db") as b:
        rate = 512 * 1024 / (3 * STALL)  # half a frame every three timeouts
        b.peer.rate = rate
        await b.publish(40)  # 8 MB: more than the socket's buffers hold
        reading = asyncio.create_task(b.peer.until_close())
        try:
            await asyncio.sleep(6 * STALL)
            assert b.running.hub.metrics.slow_consumers == 0
            assert b.peer.bytes_read > 4 * STALL * rate  # it did read, steadily
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, EOFError, ConnectionError):
                await reading
