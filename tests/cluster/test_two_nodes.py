"""Two hub nodes on one JetStream cluster (three NATS servers, R3): what one node stores,
the other serves, with the guarantees of a single hub. The nodes run in the test's process
here; tests/cluster/test_faults.py kills them as processes."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from client.connection import TIMEOUT, AgentConnection, Delivered
from client.e2ee.suite import CLASSIC, KeyPackageKeys
from hub.app import RunningHub
from opshub.cluster import NatsCluster
from protocol.errors import Code, RequestError
from tests.conftest import Keys, create_operation

pytestmark = pytest.mark.slow

MEMBERS = ["JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS", "INTERPOL-LO"]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    """Three NATS servers of the test's own (a directory shared between tests would hold
    the units of every test's authority)."""
    with NatsCluster(tmp_path / "nats", servers=3) as c:
        yield c


@pytest.fixture
async def nodes(cluster: NatsCluster, keys: Keys, tmp_path: Path
                ) -> AsyncIterator[list[RunningHub]]:
    """Two hub nodes on the cluster."""
    hubs = [RunningHub(keys.config(tmp_path / f"unused-{i}.db", store=",".join(cluster.urls),
                                   hub_id=f"node-{i}")) for i in range(2)]
    for running in hubs:
        await running.hub.open()
        running.hub.preload([u.signed for u in keys.units.values()])
        await running.start()
    try:
        yield hubs
    finally:
        for running in hubs:
            await running.stop()


@pytest.fixture
async def connect(keys: Keys) -> AsyncIterator:
    opened: list[AgentConnection] = []

    async def make(unit: str, url: str | list[str]) -> AgentConnection:
        conn = AgentConnection(url, keys[unit])
        await conn.connect()
        opened.append(conn)
        return conn

    yield make
    for conn in opened:
        await conn.close()


async def _read(conn: AgentConnection, head: int) -> list[Delivered]:
    got: list[Delivered] = []
    async with asyncio.timeout(TIMEOUT * 2):
        while not got or got[-1].seq < head:
            item = await conn.next_delivery()
            assert isinstance(item, Delivered)
            got.append(item)
    return got


async def test_two_nodes_one_log_whatever_node_a_publish_reaches(nodes, connect, keys):
    """Publishers on both nodes, one operation: one contiguous log, each subscriber (one per
    node) reads it whole, once, in order, and both read the same log."""
    a, b = nodes
    op = f"OP-TWO-{id(keys)}"
    ocu = await connect("OCU-BB", a.url)
    await create_operation(ocu, keys, op, MEMBERS)
    jm = await connect("JM-CUSTOMS", b.url)  # B may not have heard of op yet: it waits
    tt = await connect("TT-POLICE", b.url)
    dm = await connect("DM-CUSTOMS", a.url)
    for reader in (jm, dm):
        await reader.subscribe(op, after=0)
    futs = [p.publish_nowait(op, f"{p.unit}:{i}".encode())
            for i in range(300) for p in (ocu, tt)]
    seqs = await asyncio.gather(*futs)
    assert sorted(seqs) == list(range(2, 602))
    logs = [await _read(r, 601) for r in (jm, dm)]
    for got in logs:
        assert [d.seq for d in got] == list(range(1, 602))
        for p in ("OCU-BB", "TT-POLICE"):
            mine = [d.payload for d in got if d.sender == p and d.kind == 0]
            assert mine == [f"{p}:{i}".encode() for i in range(300)]
    assert [(d.seq, d.sender, d.payload) for d in logs[0]] == \
        [(d.seq, d.sender, d.payload) for d in logs[1]]


async def test_two_admins_race_for_one_epoch_on_two_nodes(nodes, connect, keys):
    """The admin's two desks, one on each node, send different statements for the same next
    epoch at the same moment: exactly one is accepted, the other is refused with a stable
    code, and both nodes then hold the same membership."""
    a, b = nodes
    op = f"OP-RACE-{id(keys)}"
    desk_a = await connect("OCU-BB", a.url)
    desk_b = await connect("OCU-BB", b.url)
    admin = await create_operation(desk_a, keys, op, MEMBERS)
    one = admin.change(remove=["TT-POLICE"])
    other = admin.change(remove=["DM-CUSTOMS"])
    # B must know the operation before it can decide anything about it
    await desk_b.subscribe(op, after=0)
    results = await asyncio.gather(desk_a.commit(*one), desk_b.commit(*other),
                                   return_exceptions=True)
    accepted = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, RequestError)]
    assert len(accepted) == 1, results
    assert len(refused) == 1, results
    assert refused[0].code in (Code.WRONG_EPOCH, Code.BAD_STATEMENT)
    assert accepted[0]["epoch"] == 1
    winner_removed = "TT-POLICE" if results[0] is accepted[0] else "DM-CUSTOMS"
    async with asyncio.timeout(TIMEOUT):
        while True:
            states = [n.hub.broker.router.ops.get(op) for n in nodes]
            if all(s is not None and s.epoch == 1 for s in states):
                break
            await asyncio.sleep(0.02)
    assert states[0] == states[1]
    assert states[0] is not None
    assert winner_removed not in states[0].members
    log = await _read(desk_b, 2)
    assert [d.kind for d in log] == [1, 1]  # one statement per epoch in the log


async def test_key_packages_are_claimed_once_across_nodes(nodes, connect, keys):
    """Two OCU desks on two nodes claim one unit's packages at the same time: no one-time
    package is handed out twice, and none is lost."""
    a, b = nodes
    jm = await connect("JM-CUSTOMS", b.url)
    made = KeyPackageKeys("JM-CUSTOMS", keys["JM-CUSTOMS"].key, CLASSIC,
                          os.urandom).generate(6, now=keys.now)
    assert await jm.put_key_packages(made) == 6
    desks = [await connect("OCU-BB", a.url), await connect("OCU-BB", b.url)]
    op = f"OP-KP-{id(keys)}"
    # two connections of one unit: their cids must differ (protocol.md 8.2), so name them
    claims = await asyncio.gather(*(desks[i % 2].claim_key_packages(op, ["JM-CUSTOMS"], cid=i)
                                    for i in range(6)))
    handed = [got["JM-CUSTOMS"] for got, missing in claims]
    assert sorted(handed) == sorted(made)


async def test_a_retried_claim_gets_the_same_package_on_either_node(nodes, connect, keys):
    """The admin's claim retried on the other node, or sent to both nodes at once, gets one
    answer: the same package, and no package is lost or handed out twice."""
    a, b = nodes
    jm = await connect("JM-CUSTOMS", b.url)
    made = KeyPackageKeys("JM-CUSTOMS", keys["JM-CUSTOMS"].key, CLASSIC,
                          os.urandom).generate(4, now=keys.now)
    assert await jm.put_key_packages(made) == 4
    op = f"OP-KPC-{id(keys)}"
    desk_a, desk_b = await connect("OCU-BB", a.url), await connect("OCU-BB", b.url)
    await create_operation(desk_a, keys, op, ["JM-CUSTOMS"])
    first = await desk_a.claim_key_packages(op, ["JM-CUSTOMS"], cid=5)
    assert first == ({"JM-CUSTOMS": made[0]}, [])
    assert await desk_b.claim_key_packages(op, ["JM-CUSTOMS"], cid=5) == first
    both = await asyncio.gather(desk_a.claim_key_packages(op, ["JM-CUSTOMS"], cid=6),
                                desk_b.claim_key_packages(op, ["JM-CUSTOMS"], cid=6))
    assert both[0] == both[1]
    rest = [await desk.claim_key_packages(op, ["JM-CUSTOMS"], cid=cid)
            for desk, cid in ((desk_b, 7), (desk_a, 8))]
    handed = [got["JM-CUSTOMS"] for got, _ in (first, both[0], *rest)]
    assert sorted(handed) == sorted(made)
    assert await desk_b.claim_key_packages(op, ["JM-CUSTOMS"], cid=9) == ({}, ["JM-CUSTOMS"])


async def test_a_unit_moving_to_the_other_node_resumes_after_its_cursor(nodes, connect, keys):
    """A unit acks on node A, leaves, and subscribes on node B without saying where: B starts
    after the cursor A saved. A directed message sent through A reaches it on B."""
    a, b = nodes
    op = f"OP-MOVE-{id(keys)}"
    ocu = await connect("OCU-BB", a.url)
    await create_operation(ocu, keys, op, MEMBERS)
    for i in range(20):
        await ocu.publish(op, b"%d" % i)
    jm = AgentConnection(a.url, keys["JM-CUSTOMS"], ack_interval=0.01)
    await jm.connect()
    await jm.subscribe(op, after=0)
    await _read(jm, 21)
    await asyncio.sleep(1.0)  # the ack goes out, the node saves the cursor (every 0.5 s)
    await jm.close()
    for i in range(20, 25):
        await ocu.publish(op, b"%d" % i)
    moved = await connect("JM-CUSTOMS", b.url)
    await moved.subscribe(op)
    got = await _read(moved, 26)
    assert [d.seq for d in got] == list(range(22, 27))
    sent = await ocu.send_directed(op, "JM-CUSTOMS", b"welcome")
    async with asyncio.timeout(TIMEOUT):
        async for item in moved.directed():
            assert (item.id, item.payload) == (sent, b"welcome")
            break
