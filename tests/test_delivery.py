"""End-to-end delivery guarantees against a real hub on 127.0.0.1 with real agents, on
each store: SQLite, and JetStream (a NATS server of the test's own)."""

from __future__ import annotations

import asyncio

import pytest

from client.connection import TIMEOUT, AgentConnection, Delivered
from hub.app import RunningHub
from tests.conftest import STORES, create_operation

pytestmark = pytest.mark.parametrize("store", STORES, indirect=True)

MEMBERS = ["JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS", "INTERPOL-LO"]


async def _drain(conn: AgentConnection, op_heads: dict[str, int]) -> dict[str, list[Delivered]]:
    """Read deliveries until every operation has reached its head."""
    got: dict[str, list[Delivered]] = {op: [] for op in op_heads}
    async with asyncio.timeout(TIMEOUT):
        while any((got[op][-1].seq if got[op] else 0) < h for op, h in op_heads.items()):
            item = await conn.next_delivery()
            assert isinstance(item, Delivered)
            got[item.op].append(item)
    return got


async def _count(stored, op: str) -> int:
    """Entries of op's log as the store holds them; they are numbered 1, 2, 3, ..."""
    seqs = await stored(op)
    assert seqs == list(range(1, len(seqs) + 1))
    return len(seqs)


async def test_delivery_ordered_without_loss_across_operations_and_agents(hub, agents, keys):
    """Three publishers on two operations: every subscriber gets each op's log once, in order."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-A", MEMBERS)
    await create_operation(ocu, keys, "OP-B", MEMBERS[:2])
    readers = [await agents(u) for u in ("JM-CUSTOMS", "TT-POLICE")]
    for r in readers:
        await r.subscribe("OP-A", after=0)
        await r.subscribe("OP-B", after=0)
    pubs = [ocu, readers[0], readers[1]]
    futs = [p.publish_nowait(op, f"{p.unit}:{op}:{i}".encode())
            for i in range(200) for p in pubs for op in ("OP-A", "OP-B")]
    seqs = await asyncio.gather(*futs)
    heads = {"OP-A": 601, "OP-B": 601}  # 600 messages + the creating commit each
    assert sorted(seqs) == sorted(list(range(2, 602)) * 2)
    for r in readers:
        got = await _drain(r, heads)
        for op in heads:
            assert [d.seq for d in got[op]] == list(range(1, 602))
            # each publisher's own messages keep their publish order
            for p in pubs:
                mine = [d.payload for d in got[op] if d.sender == p.unit and d.kind == 0]
                assert mine == [f"{p.unit}:{op}:{i}".encode() for i in range(200)]


async def test_delivery_resumes_after_dropped_connection(hub, agents, keys):
    """A subscriber whose socket drops gets what was published meanwhile, once, in order."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-R", MEMBERS)
    jm = await agents("JM-CUSTOMS")
    await jm.subscribe("OP-R", after=0)
    for i in range(20):
        await ocu.publish("OP-R", b"before %d" % i)
    await _drain(jm, {"OP-R": 21})
    await jm.drop()
    await asyncio.gather(*(ocu.publish("OP-R", b"during %d" % i) for i in range(50)))
    got = await _drain(jm, {"OP-R": 71})
    assert [d.seq for d in got["OP-R"]] == list(range(22, 72))
    assert jm.connects == 2


async def test_delivery_idempotent_retry_stores_one_copy(hub, agents, keys, stored):
    """Publishing the same client id twice returns the original seq and stores one row."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-I", MEMBERS)
    first = await ocu.publish("OP-I", b"seizure report", cid=42)
    again = await ocu.publish("OP-I", b"seizure report", cid=42)
    other = await ocu.publish("OP-I", b"another report", cid=43)
    assert (first, again, other) == (2, 2, 3)
    assert await _count(stored, "OP-I") == 3  # commit + two messages


async def test_delivery_retry_after_reconnect_is_not_duplicated(hub, agents, keys, stored):
    """Unacked publishes re-sent after a reconnect keep their client ids: one copy each."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-X", MEMBERS)
    futs = [ocu.publish_nowait("OP-X", b"m%d" % i) for i in range(300)]
    await asyncio.sleep(0)  # the frame is written; drop before (most) acks arrive
    await ocu.drop()
    seqs = await asyncio.gather(*futs)
    assert sorted(seqs) == list(range(2, 302))
    assert await _count(stored, "OP-X") == 301


async def test_delivery_subscribe_without_after_resumes_from_cursor(hub, agents, keys):
    """A new connection subscribing with after=None starts after its acknowledged cursor."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-C", MEMBERS)
    jm = await agents("JM-CUSTOMS", ack_interval=0.01)
    await jm.subscribe("OP-C", after=0)
    for i in range(10):
        await ocu.publish("OP-C", b"%d" % i)
    await _drain(jm, {"OP-C": 11})
    await asyncio.sleep(0.1)  # let the cumulative ack reach the hub
    await jm.close()
    for i in range(5):
        await ocu.publish("OP-C", b"later %d" % i)
    jm2 = await agents("JM-CUSTOMS")
    info = await jm2.subscribe("OP-C")
    assert info["after"] == 11
    got = await _drain(jm2, {"OP-C": 16})
    assert [d.seq for d in got["OP-C"]] == list(range(12, 17))


async def test_delivery_directed_kept_until_acknowledged(hub, agents, keys):
    """A directed message survives reconnects until its recipient acknowledges it."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-D", MEMBERS)
    lo = await agents("INTERPOL-LO")
    sent = await ocu.send_directed("OP-D", "INTERPOL-LO", b"trace request")
    first = await lo.next_directed()
    assert (first.id, first.payload, first.sender) == (sent, b"trace request", "OCU-BB")
    await lo.close()  # not acknowledged
    lo2 = await agents("INTERPOL-LO")
    again = await lo2.next_directed()
    assert again.id == sent
    lo2.ack_directed(sent)
    await asyncio.sleep(0.2)
    await lo2.close()
    lo3 = await agents("INTERPOL-LO")
    await asyncio.sleep(0.3)
    assert lo3._directed.empty()


async def test_delivery_removed_member_subscription_ends(hub, agents, keys):
    """Removing a member ends its subscription after the removing commit and refuses it."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, "OP-M", MEMBERS)
    dm = await agents("DM-CUSTOMS")
    await dm.subscribe("OP-M", after=0)
    await admin.send(ocu, admin.change(remove=["DM-CUSTOMS"]))
    seen = []
    async with asyncio.timeout(TIMEOUT):
        while True:
            item = await dm.next_delivery()
            seen.append(item)
            if not isinstance(item, Delivered):
                break
    assert [getattr(i, "seq", None) for i in seen[:-1]] == [1, 2]
    assert seen[-1].reason.startswith("removed")


async def test_delivery_removal_as_last_entry_of_a_transaction_keeps_others_live(
        hub, agents, keys, caplog):
    """A removal statement that ends its transaction's entries: the removed member's
    subscription ends, the others stay live, and the fan-out hook raises nothing (it
    once tried to deliver the empty remainder of the transaction)."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, "OP-L", MEMBERS)
    jm, dm = await agents("JM-CUSTOMS"), await agents("DM-CUSTOMS")
    await jm.subscribe("OP-L", after=0)
    await dm.subscribe("OP-L", after=0)
    await admin.send(ocu, admin.change(remove=["DM-CUSTOMS"]))
    await ocu.publish("OP-L", b"after the removal")
    got = [await jm.next_delivery() for _ in range(3)]
    assert [getattr(i, "seq", None) for i in got] == [1, 2, 3]
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


async def test_delivery_hub_restart_loses_no_acknowledged_message(keys, hub_config, stored):
    """A hub stopped and restarted on the same database mid-stream keeps every acked
    message, and agents reconnect and resume on their own."""
    first = RunningHub(hub_config())
    await first.hub.open()
    first.hub.preload([u.signed for u in keys.units.values()])
    await first.start()
    port = first.port
    url = first.url
    ocu = AgentConnection(url, keys["OCU-BB"])
    jm = AgentConnection(url, keys["JM-CUSTOMS"])
    await ocu.connect()
    await jm.connect()
    try:
        await create_operation(ocu, keys, "OP-S", MEMBERS)
        await jm.subscribe("OP-S", after=0)
        acked: list[int] = []

        async def publisher() -> None:
            for i in range(400):
                acked.append(await ocu.publish("OP-S", b"n%d" % i))

        task = asyncio.create_task(publisher())
        while len(acked) < 100:
            await asyncio.sleep(0.005)
        await first.stop()
        second = RunningHub(hub_config(port=port))
        await second.start()
        try:
            async with asyncio.timeout(TIMEOUT * 2):
                await task
            assert acked == list(range(2, 402))
            got = await _drain(jm, {"OP-S": 401})
            assert [d.seq for d in got["OP-S"]] == list(range(1, 402))
            assert [d.payload for d in got["OP-S"][1:]] == [b"n%d" % i for i in range(400)]
        finally:
            await ocu.close()
            await jm.close()
            await second.stop()
    finally:
        await ocu.close()
        await jm.close()
        await first.stop()
    assert await _count(stored, "OP-S") == 401


async def test_delivery_per_delivery_reference_mode_keeps_order(keys, hub_config):
    """The benchmark's naive reference fan-out (one frame per entry) still delivers in order."""
    running = RunningHub(hub_config(fanout="per-delivery"))
    await running.hub.open()
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running:
        ocu = AgentConnection(running.url, keys["OCU-BB"])
        jm = AgentConnection(running.url, keys["JM-CUSTOMS"])
        await ocu.connect()
        await jm.connect()
        try:
            await create_operation(ocu, keys, "OP-N", MEMBERS)
            await jm.subscribe("OP-N", after=0)
            await asyncio.gather(*(ocu.publish("OP-N", b"%d" % i) for i in range(50)))
            got = await _drain(jm, {"OP-N": 51})
            assert [d.seq for d in got["OP-N"]] == list(range(1, 52))
        finally:
            await ocu.close()
            await jm.close()


async def test_delivery_commit_retry_in_flight_answered_after_it_is_durable(hub, agents, keys):
    """The same statement sent twice at once is stored once; the retry's ok comes only after
    the original's, once the statement is on disk."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, "OP-K", MEMBERS)
    signed = admin.change(remove=["DM-CUSTOMS"])
    answered: list[str] = []

    async def send(name: str) -> dict[str, object]:
        info = await ocu.commit(*signed)
        answered.append(name)
        return info

    first, again = await asyncio.gather(send("first"), send("retry"))
    assert first == {"op": "OP-K", "epoch": 1, "seq": 2}
    assert again == {"op": "OP-K", "epoch": 1, "duplicate": True}
    assert answered == ["first", "retry"]


async def test_delivery_directed_retry_after_reconnect_is_stored_once(hub, agents, keys,
                                                                     stored_directed):
    """A directed send whose answer is lost with the connection is re-sent with its cid and
    stored once."""
    ocu = await agents("OCU-BB")
    await create_operation(ocu, keys, "OP-W", MEMBERS)
    sending = asyncio.create_task(ocu.send_directed("OP-W", "INTERPOL-LO", b"welcome"))
    await asyncio.sleep(0)  # the frame is written; the answer is lost with the socket
    await ocu.drop()
    sent = await sending
    assert await stored_directed("INTERPOL-LO") == [sent]


async def _collect(conn, op: str, until_payload: bytes, within: float = 10.0) -> list:
    out = []
    async with asyncio.timeout(within):
        while True:
            d = await conn.next_delivery()
            out.append(d)
            if getattr(d, "payload", None) == until_payload:
                return out


async def test_delivery_filtered_by_sender_skips_others_and_resumes(hub, agents, keys):
    """A subscription filtered to one sender gets that sender's messages and every commit,
    in order, and nothing else; after a dropped connection it resumes with the same
    filter, from the store and live, without duplicates."""
    ocu = await agents("OCU-BB")
    admin = await create_operation(ocu, keys, "OP-F", MEMBERS)
    jm, tt = await agents("JM-CUSTOMS"), await agents("TT-POLICE")
    for i in range(5):  # before the subscription: read back from the store
        await jm.publish("OP-F", f"jm-{i}".encode())
        await tt.publish("OP-F", f"tt-{i}".encode())
    dm = await agents("DM-CUSTOMS")
    await dm.subscribe("OP-F", after=0, senders=["JM-CUSTOMS"])
    got = await _collect(dm, "OP-F", b"jm-4")
    assert (got[0].sender, got[0].kind) == ("OCU-BB", 1)  # the creating commit
    assert [d.payload for d in got[1:]] == [f"jm-{i}".encode() for i in range(5)]
    assert [d.seq for d in got] == sorted({d.seq for d in got})
    await dm.drop()
    for i in range(5, 10):  # while DM is away, and after it is back: live
        await tt.publish("OP-F", f"tt-{i}".encode())
        await jm.publish("OP-F", f"jm-{i}".encode())
    await admin.send(ocu, admin.change(add=[], remove=["TT-POLICE"]))
    await jm.publish("OP-F", b"jm-last")
    later = await _collect(dm, "OP-F", b"jm-last")
    assert [d.payload for d in later if d.kind == 0] == (
        [f"jm-{i}".encode() for i in range(5, 10)] + [b"jm-last"])
    assert [d.sender for d in later if d.kind != 0] == ["OCU-BB"]  # the removal statement
    assert min(d.seq for d in later) > max(d.seq for d in got)
