"""Faults on a real local cluster: three nats-server processes (JetStream, R3, fsync before
ack) and two hub nodes (`opshub serve --store ...` processes), agents on both nodes, each
given both nodes' URLs. Mid-stream: kill -9 of the operation's stream leader; kill -9 of a
hub node (its agents move to the other and resume); both at once; a NATS server killed and
restarted on its data. After each: no acknowledged message lost, none delivered twice, no
gap, every agent's log the same, and the same as the stream the cluster keeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.connection import AgentConnection, Delivered
from client.identity import UnitIdentity, UnitSpec, generate
from client.membership import OperationAdmin
from hub.store.jetstream import JetStreamStore, op_stream
from opshub.cluster import HubProcesses, NatsCluster

pytestmark = pytest.mark.slow

UNITS = [
    UnitSpec("OCU-BB", "BB", "customs", "ocu"),
    UnitSpec("JM-CUSTOMS", "JM", "customs"),
    UnitSpec("TT-POLICE", "TT", "police"),
    UnitSpec("DM-CUSTOMS", "DM", "customs"),
]
OP = "OP-FAULT"
#: messages per publisher, and how many may wait for their ack at once
PER_PUBLISHER = 400
WINDOW = 32
#: every fault test ends within this (seconds), whatever happens
BOUND = 120.0


@dataclass
class Rig:
    cluster: NatsCluster
    hubs: HubProcesses
    ids: dict[str, UnitIdentity]
    conns: list[AgentConnection] = field(default_factory=list)

    async def connect(self, unit: str, first: int) -> AgentConnection:
        """An agent given both nodes, ``first`` tried first."""
        urls = self.hubs.urls[first:] + self.hubs.urls[:first]
        conn = AgentConnection(urls, self.ids[unit])
        await conn.connect()
        self.conns.append(conn)
        return conn


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    keys = tmp_path / "keys"
    _, identities = generate(keys, UNITS, now=int(time.time()) - 60)
    with NatsCluster(tmp_path / "nats", servers=3) as cluster, \
            HubProcesses(keys, cluster.urls, hubs=2) as hubs:
        yield Rig(cluster, hubs, {i.unit: i for i in identities})


async def _publish(conn: AgentConnection, acked: dict[int, bytes]) -> None:
    """PER_PUBLISHER messages, at most WINDOW waiting for their ack."""
    window = asyncio.Semaphore(WINDOW)

    async def one(i: int) -> None:
        async with window:
            payload = f"{conn.unit}:{i}".encode()
            # an election may take longer than the default wait: the guarantee checked
            # here is that nothing is lost or doubled, not how fast it goes
            seq = await conn.publish(OP, payload, within=BOUND)
            assert acked.setdefault(seq, payload) == payload, f"seq {seq} acked twice"

    await asyncio.gather(*(one(i) for i in range(PER_PUBLISHER)))


async def _read(conn: AgentConnection, into: list[Delivered], until: Callable[[], int]) -> None:
    while not into or into[-1].seq < until():
        item = await conn.next_delivery(within=BOUND)
        assert isinstance(item, Delivered)
        into.append(item)


async def _run(rig: Rig, fault: Callable[[], object], after: int = 150,
               then: Callable[[], object] | None = None) -> None:
    """The traffic, ``fault`` once ``after`` messages are acknowledged (it must land
    mid-stream: fewer than all acknowledged once it is done), ``then`` (if any) while the
    traffic goes on, then every check."""
    async with asyncio.timeout(BOUND):
        ocu = await rig.connect("OCU-BB", 0)
        admin = OperationAdmin(rig.ids["OCU-BB"], OP, now=time.time)
        await admin.send(ocu, admin.create("Fault drill", [rig.ids[u].signed for u in
                                                           ("JM-CUSTOMS", "TT-POLICE",
                                                            "DM-CUSTOMS")]))
        readers = [await rig.connect("JM-CUSTOMS", 0), await rig.connect("DM-CUSTOMS", 1)]
        tt = await rig.connect("TT-POLICE", 1)
        for r in readers:
            await r.subscribe(OP, after=0)
        acked: dict[int, bytes] = {}
        total = 1 + 2 * PER_PUBLISHER
        logs: list[list[Delivered]] = [[], []]
        reading = [asyncio.create_task(_read(r, log, lambda: total))
                   for r, log in zip(readers, logs, strict=True)]
        publishing = asyncio.gather(_publish(ocu, acked), _publish(tt, acked))
        while len(acked) < after:
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, fault)
        assert len(acked) < 2 * PER_PUBLISHER - WINDOW, "the fault came after the traffic"
        if then is not None:
            await asyncio.get_running_loop().run_in_executor(None, then)
        await publishing
        await asyncio.gather(*reading)
        for conn in rig.conns:
            await conn.close()

    # every acknowledged message is in the log under its seq, once; nothing else is
    assert sorted(acked) == list(range(2, total + 1))
    for log in logs:
        assert [d.seq for d in log] == list(range(1, total + 1))  # no gap, no duplicate
        assert {d.seq: d.payload for d in log if d.kind == 0} == acked
    assert [(d.seq, d.sender, d.payload) for d in logs[0]] == \
        [(d.seq, d.sender, d.payload) for d in logs[1]]
    store = JetStreamStore([u for i, u in enumerate(rig.cluster.urls)
                            if rig.cluster.servers[i].running])
    await store.open()
    try:
        kept = await store.read_log(OP, 0, total + 10)
    finally:
        await store.close()
    assert [(e.seq, e.payload) for e in kept] == [(d.seq, d.payload) for d in logs[0]]


async def test_kill_9_of_the_stream_leader_mid_stream(rig: Rig) -> None:
    def fault() -> None:
        rig.cluster.kill(rig.cluster.leader_of(op_stream(OP)))

    await _run(rig, fault)


async def test_kill_9_of_a_hub_node_its_agents_move_to_the_other(rig: Rig) -> None:
    await _run(rig, lambda: rig.hubs.kill(0))
    assert {c.unit: c.current_url for c in rig.conns} == dict.fromkeys(
        ("OCU-BB", "JM-CUSTOMS", "DM-CUSTOMS", "TT-POLICE"), rig.hubs.urls[1])


async def test_kill_9_of_the_stream_leader_and_a_hub_node_at_once(rig: Rig) -> None:
    def fault() -> None:
        leader = rig.cluster.leader_of(op_stream(OP))
        rig.hubs.kill(1)
        rig.cluster.kill(leader)

    await _run(rig, fault)


async def test_a_nats_server_restarted_on_its_data_catches_up(rig: Rig) -> None:
    """A server killed mid-stream comes back on its data directory while traffic goes on,
    and ends with the stream as the others have it."""
    down: list[int] = []

    def fault() -> None:
        down.append(rig.cluster.leader_of(op_stream(OP)))
        rig.cluster.kill(down[0])

    def restart() -> None:
        time.sleep(1.0)
        rig.cluster.restart(down[0])

    await _run(rig, fault, then=restart)
    stream = op_stream(OP)
    deadline = time.monotonic() + 30
    while True:
        states = [rig.cluster.stream_state(i, stream) for i in range(3)]
        lasts = {(s or {}).get("last_seq") for s in states}
        if len(lasts) == 1 and None not in lasts:
            break
        assert time.monotonic() < deadline, f"replicas differ: {states}"
        await asyncio.sleep(0.2)
    assert lasts == {1 + 2 * PER_PUBLISHER}
