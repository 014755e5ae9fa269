"""End-to-end encryption through a real hub on 127.0.0.1: SecureAgents, SQLite, WebSockets.

The hub only ever sees routing headers and ciphertext; members read each other; the
attacks a member or the hub itself can mount are refused with a specific code, and
the attacked agent keeps working."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import msgpack
import pytest

from client.e2ee import message
from client.e2ee.suite import CLASSIC
from client.secure import Message, SecureAgent
from hub.app import RunningHub
from protocol import frames as f
from protocol.errors import Code, CryptoError, RequestError, UsageError
from protocol.statements import Statement, sign
from tests.conftest import Keys

OP = "OP-E2EE"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE", "DM-CUSTOMS"]
MARKERS = [b"MARKER-cocaine-417kg-MSCU7781", b"MARKER-vessel-NORDIC-STAR",
           b"MARKER-suspect-passport-X99"]


@pytest.fixture
async def secure(hub: RunningHub, keys: Keys) -> AsyncIterator[Callable[..., SecureAgent]]:
    opened: list[SecureAgent] = []

    async def start(unit: str, **kw: object) -> SecureAgent:
        kw.setdefault("suite", CLASSIC)  # X25519: fast; one test runs the hybrid default
        if kw["suite"] is None:
            del kw["suite"]
        agent = SecureAgent(hub.url, keys[unit], [keys.authority.public_key], **kw)  # type: ignore[arg-type]
        await agent.start()
        opened.append(agent)
        return agent

    yield start  # type: ignore[misc]
    for agent in opened:
        await agent.close()


async def _operation(secure: Callable[..., SecureAgent], keys: Keys,
                     members: list[str] = MEMBERS, **kw: object
                     ) -> tuple[SecureAgent, dict[str, SecureAgent]]:
    ocu = await secure("OCU-BB", **kw)
    agents = {u: await secure(u, **kw) for u in members}
    await ocu.create_operation(OP, "Operation E2EE", [keys[u].signed for u in members])
    for a in agents.values():
        await a.wait_for_epoch(OP, 0)
    return ocu, agents


async def _read(agent: SecureAgent, n: int) -> list[Message]:
    return [await agent.next_message() for _ in range(n)]


async def test_e2ee_hub_db_wal_and_logs_hold_no_plaintext(
        secure, keys, hub: RunningHub, db_path: Path, caplog) -> None:
    """Known markers go through the hub (publish, a join, a removal, a rotation); every
    member reads them, and neither the SQLite file, its WAL nor the logs contain them."""
    caplog.set_level(logging.DEBUG)
    ocu, agents = await _operation(secure, keys, MEMBERS[:2])
    await agents["JM-CUSTOMS"].publish(OP, MARKERS[0])
    assert (await agents["TT-POLICE"].next_message()).content == MARKERS[0]
    dm = await secure("DM-CUSTOMS")
    await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed])
    await dm.wait_for_epoch(OP, 1)
    await agents["TT-POLICE"].wait_for_epoch(OP, 1)
    await dm.publish(OP, MARKERS[1])
    assert (await agents["JM-CUSTOMS"].next_message()).content == MARKERS[1]
    await ocu.change(OP, remove=["TT-POLICE"])
    await ocu.rotate(OP)
    await dm.wait_for_epoch(OP, 3)
    await ocu.publish(OP, MARKERS[2])
    assert (await dm.next_message()).content == MARKERS[2]
    assert all(not a.rejected for a in (ocu, dm, *agents.values()))
    stored = b"".join(p.read_bytes() for p in db_path.parent.glob(db_path.name + "*"))
    assert len(stored) > 0
    assert b"Operation E2EE" in stored
    logs = caplog.text.encode()
    for marker in MARKERS:
        assert marker not in stored
        assert marker not in logs


async def test_e2ee_hybrid_kem_default_suite(secure, keys) -> None:
    """The default suite, ML-KEM-768 + X25519, through the hub."""
    ocu, agents = await _operation(secure, keys, MEMBERS[:1], suite=None)
    await ocu.publish(OP, b"post-quantum sealed")
    assert (await agents["JM-CUSTOMS"].next_message()).content == b"post-quantum sealed"


def _stored(db: Path, op: str) -> list[list]:
    """op's log as the SQLite file holds it: [seq, sender, kind, header, payload, at_ms]."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT body FROM segments WHERE op = ? ORDER BY last_seq", (op,))
        return [entry for (body,) in rows for entry in msgpack.unpackb(body)]


async def _until(cond: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():
            await asyncio.sleep(0.01)


async def test_e2ee_removed_member_cannot_decrypt_the_next_epoch(secure, keys, db_path) -> None:
    ocu, agents = await _operation(secure, keys)
    dm = agents["DM-CUSTOMS"]
    await ocu.change(OP, remove=["DM-CUSTOMS"])
    await agents["JM-CUSTOMS"].wait_for_epoch(OP, 1)
    await agents["JM-CUSTOMS"].publish(OP, b"not for DM")
    assert (await agents["TT-POLICE"].next_message()).content == b"not for DM"
    _seq, _, _, header, payload, _ = _stored(db_path, OP)[-1]
    with pytest.raises(CryptoError) as exc:  # even with the ciphertext in hand
        dm.member.decrypt(OP, header, payload, now=time.time())
    assert exc.value.code == Code.UNKNOWN_EPOCH
    assert dm.member.channels[OP].removed


async def test_e2ee_removed_member_added_back_reads_and_sends_again(secure, keys) -> None:
    """A member removed and later added back (the same agent, still running) reads and
    sends from the epoch it came back in; what was sent while it was out it skips, as a
    joiner skips what came before it, without rejecting anything it read before."""
    ocu, agents = await _operation(secure, keys)
    dm = agents["DM-CUSTOMS"]
    await agents["JM-CUSTOMS"].publish(OP, b"before")
    assert (await dm.next_message()).content == b"before"
    await ocu.change(OP, remove=["DM-CUSTOMS"])
    await agents["JM-CUSTOMS"].wait_for_epoch(OP, 1)
    await agents["JM-CUSTOMS"].publish(OP, b"while DM was out")
    await agents["TT-POLICE"].next_message()
    await agents["TT-POLICE"].next_message()
    await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed])
    await dm.wait_for_epoch(OP, 2)
    await agents["JM-CUSTOMS"].wait_for_epoch(OP, 2)
    await agents["JM-CUSTOMS"].publish(OP, b"after DM came back")
    assert (await dm.next_message()).content == b"after DM came back"
    await dm.publish(OP, b"DM again")
    assert (await agents["JM-CUSTOMS"].next_message()).content == b"DM again"
    assert dm.rejected == []
    assert dm.skipped_before_join == 1


async def test_e2ee_joiner_cannot_decrypt_earlier_epochs(secure, keys, db_path) -> None:
    ocu, agents = await _operation(secure, keys, MEMBERS[:2])
    await agents["JM-CUSTOMS"].publish(OP, b"before DM joined")
    await agents["TT-POLICE"].next_message()
    before = _stored(db_path, OP)[-1]
    dm = await secure("DM-CUSTOMS")
    await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed])
    await dm.wait_for_epoch(OP, 1)
    await agents["JM-CUSTOMS"].publish(OP, b"after DM joined")
    got = await dm.next_message()
    assert got.content == b"after DM joined"  # the earlier one never reached the inbox
    assert dm.skipped_before_join == 1
    assert not dm.rejected
    with pytest.raises(CryptoError) as exc:
        dm.member.decrypt(OP, before[3], before[4], now=time.time())
    assert exc.value.code == Code.UNKNOWN_EPOCH


async def test_e2ee_attacks_by_a_member_are_rejected_and_agents_go_on(secure, keys,
                                                                     db_path) -> None:
    """A tampered ciphertext, a replay, and a message signed by one member posing as
    another each get their own code at every reader; genuine traffic keeps flowing."""
    ocu, agents = await _operation(secure, keys)
    jm, tt, dm = (agents[u] for u in MEMBERS)
    # tampered in transit: same generation, one bit flipped
    header, ct = jm.member.encrypt(OP, b"genuine", now=time.time())
    await jm.conn.publish(OP, ct[:-1] + bytes([ct[-1] ^ 1]), header=header)
    await jm.conn.publish(OP, ct, header=header)  # the ratchet was not moved by the fake
    assert (await tt.next_message()).content == b"genuine"
    # replay: DM re-publishes JM's stored message
    _, _, _, header, payload, _ = _stored(db_path, OP)[-1]
    await dm.conn.publish(OP, payload, header=header)
    # impersonation: DM holds every leaf's keys, so it seals on JM's next generation,
    # but it can only sign with its own identity key
    epoch = dm.member.channels[OP].current
    assert epoch is not None
    leaf = epoch.index["JM-CUSTOMS"]
    ratchet = epoch.receiver(leaf)
    key, nonce, _ = epoch.tree.ratchet_step(ratchet.secret, ratchet.generation)
    forged = message.Header(1, epoch.number, leaf, ratchet.generation, b"\x00" * 4)
    ct = message.seal(op=OP, header=forged, content=b"transfer the case to DM", key=key,
                      nonce=nonce, signer=keys["DM-CUSTOMS"].key)
    await dm.conn.publish(OP, ct, header=forged.to_bytes())
    await jm.publish(OP, b"still working")
    assert (await tt.next_message()).content == b"still working"
    assert [r.code for r in tt.rejected] == [Code.DECRYPT_FAILED, Code.REPLAYED, Code.BAD_SENDER]
    await _until(lambda: len(ocu.rejected) == 3)
    assert [r.code for r in ocu.rejected] == [Code.DECRYPT_FAILED, Code.REPLAYED,
                                              Code.BAD_SENDER]


async def test_e2ee_commit_not_signed_by_the_admin_is_refused_by_the_hub(secure, keys) -> None:
    ocu, agents = await _operation(secure, keys)
    jm = agents["JM-CUSTOMS"]
    chain = jm.member.channels[OP].chain
    assert chain is not None
    stmt = Statement(op=OP, epoch=1, prev=chain.head, admin="OCU-BB", removes=("TT-POLICE",),
                     roster=b"")
    with pytest.raises(RequestError) as exc:
        await jm.conn.commit(*sign(keys["JM-CUSTOMS"].key, stmt))
    assert exc.value.code == Code.BAD_SIGNATURE
    await ocu.publish(OP, b"after the attempt")
    assert (await jm.next_message()).content == b"after the attempt"


async def _restart_with_commit_entry(first: RunningHub, keys: Keys, db_path: Path,
                                     payload: bytes) -> RunningHub:
    """Stop ``first``, append to OP's log a commit entry holding ``payload`` (as whoever
    controls the hub's database could), and start a hub on the same port and file."""
    await first.stop()
    head = _stored(db_path, OP)[-1][0]
    with sqlite3.connect(db_path) as conn:
        conn.execute("INSERT INTO segments (op, first_seq, last_seq, body) VALUES "
                     "(?, ?, ?, ?)", (OP, head + 1, head + 1, msgpack.packb(
                         [[head + 1, "OCU-BB", f.KIND_COMMIT, b"", payload, 0]])))
    second = RunningHub(keys.config(db_path, port=first.port))
    await second.start()
    return second


@contextlib.asynccontextmanager
async def _hub_of_three(keys: Keys, db_path: Path
                        ) -> AsyncIterator[tuple[RunningHub, dict[str, SecureAgent]]]:
    """A hub, and OCU-BB, JM-CUSTOMS and TT-POLICE in OP at epoch 0; the agents are closed
    before the hub (the test may restart it: its ``stop`` is called again)."""
    first = RunningHub(keys.config(db_path))
    first.hub.preload([u.signed for u in keys.units.values()])
    await first.start()
    agents = {u: SecureAgent(first.url, keys[u], [keys.authority.public_key], suite=CLASSIC)
              for u in ["OCU-BB", *MEMBERS[:2]]}
    try:
        for a in agents.values():
            await a.start()
        await agents["OCU-BB"].create_operation(OP, "forgery",
                                                [keys[u].signed for u in MEMBERS[:2]])
        await agents["TT-POLICE"].wait_for_epoch(OP, 0)
        yield first, agents
    finally:
        for a in agents.values():
            await a.close()
        await first.stop()


async def test_e2ee_commit_forged_by_the_hub_is_rejected_by_members(keys, db_path) -> None:
    """Whoever controls the hub's database writes a commit the admin never signed (it
    removes a member); agents refuse it with bad_signature and keep their epoch."""
    async with _hub_of_three(keys, db_path) as (first, agents):
        ocu, jm, tt = agents["OCU-BB"], agents["JM-CUSTOMS"], agents["TT-POLICE"]
        chain = jm.member.channels[OP].chain
        assert chain is not None
        forged = Statement(op=OP, epoch=1, prev=chain.head, admin="OCU-BB",
                           removes=("TT-POLICE",), roster=b"", key_material=b"")
        body, sig = sign(keys["JM-CUSTOMS"].key, forged)  # not the admin's key
        second = await _restart_with_commit_entry(first, keys, db_path,
                                                  msgpack.packb([body, sig]))
        try:
            await _until(lambda: len(jm.rejected) == 1 and len(tt.rejected) == 1, within=10)
            assert jm.rejected[0].code == Code.BAD_SIGNATURE
            assert jm.epoch(OP) == 0
            assert tt.epoch(OP) == 0
            await ocu.publish(OP, b"after the forgery")
            assert (await tt.next_message()).content == b"after the forgery"
        finally:
            for a in agents.values():
                await a.close()
            await second.stop()


@pytest.mark.parametrize("payload", [b"\xc1 not msgpack", msgpack.packb([1, 2]),
                                     msgpack.packb([b"only the statement"])],
                         ids=["not-msgpack", "not-bytes", "one-field"])
async def test_e2ee_malformed_commit_entry_is_rejected_as_bad_statement(keys, db_path,
                                                                       payload) -> None:
    """A commit entry that is not [statement, signature] (written straight into the hub's
    database) is rejected with bad_statement by every member, who keep their epoch and
    go on reading."""
    async with _hub_of_three(keys, db_path) as (first, agents):
        ocu, jm, tt = agents["OCU-BB"], agents["JM-CUSTOMS"], agents["TT-POLICE"]
        second = await _restart_with_commit_entry(first, keys, db_path, payload)
        try:
            await _until(lambda: len(jm.rejected) == 1 and len(tt.rejected) == 1, within=10)
            assert [r.code for r in jm.rejected + tt.rejected] == [Code.BAD_STATEMENT] * 2
            assert (jm.epoch(OP), tt.epoch(OP)) == (0, 0)
            await ocu.publish(OP, b"after the malformed commit")
            assert (await tt.next_message()).content == b"after the malformed commit"
        finally:
            for a in agents.values():
                await a.close()
            await second.stop()


async def test_e2ee_reordered_publishes_decrypt(secure, keys) -> None:
    """Generations published out of order (within the window) all decrypt."""
    _ocu, agents = await _operation(secure, keys, MEMBERS[:2])
    jm = agents["JM-CUSTOMS"]
    sealed = [jm.member.encrypt(OP, b"part %d" % i, now=time.time()) for i in range(5)]
    for i in (3, 1, 4, 0, 2):
        await jm.conn.publish(OP, sealed[i][1], header=sealed[i][0])
    got = [m.content for m in await _read(agents["TT-POLICE"], 5)]
    assert got == [b"part %d" % i for i in (3, 1, 4, 0, 2)]


async def test_e2ee_messages_in_flight_across_a_rotation_decrypt(secure, keys) -> None:
    """Sealed in epoch 0, published after the rotation to epoch 1 has been applied:
    readers still hold epoch 0's receive keys (grace period) and decrypt them."""
    ocu, agents = await _operation(secure, keys, MEMBERS[:2])
    jm, tt = agents["JM-CUSTOMS"], agents["TT-POLICE"]
    in_flight = [jm.member.encrypt(OP, b"in flight %d" % i, now=time.time()) for i in range(3)]
    await ocu.rotate(OP)
    await tt.wait_for_epoch(OP, 1)
    await jm.wait_for_epoch(OP, 1)
    for header, ct in in_flight:
        await jm.conn.publish(OP, ct, header=header)
    await jm.publish(OP, b"new epoch")
    got = await _read(tt, 4)
    assert [(m.epoch, m.content) for m in got] == [
        (0, b"in flight 0"), (0, b"in flight 1"), (0, b"in flight 2"), (1, b"new epoch")]


async def test_e2ee_rotation_by_message_count(secure, keys) -> None:
    """The admin rotates on its own after the configured number of messages."""
    ocu, agents = await _operation(secure, keys, MEMBERS[:1], rotate_messages=5)
    jm = agents["JM-CUSTOMS"]
    for i in range(6):
        await jm.publish(OP, b"n%d" % i)
    await jm.wait_for_epoch(OP, 1)
    got = await _read(ocu, 6)
    assert [m.content for m in got] == [b"n%d" % i for i in range(6)]
    await jm.publish(OP, b"after rotation")
    assert (await ocu.next_message()).epoch >= 1


async def test_e2ee_member_that_lost_its_keys_asks_for_a_welcome(secure, keys) -> None:
    """A member whose state is gone (a new agent, same identity) after several rotations
    follows the chain without keys, asks the admin, and gets a fresh epoch with a welcome
    sealed to it; then it reads and is read again."""
    ocu, agents = await _operation(secure, keys, MEMBERS[:2])
    await ocu.rotate(OP)
    await ocu.rotate(OP)
    await agents["TT-POLICE"].wait_for_epoch(OP, 2)
    await agents["TT-POLICE"].close()
    tt = await secure("TT-POLICE")  # fresh state: key packages and epochs are gone
    await tt.conn.subscribe(OP, after=0)
    await _until(lambda: OP in tt.member.channels and tt.member.channels[OP].chain is not None
                 and tt.member.channels[OP].chain.epoch == 2)  # type: ignore[union-attr]
    assert tt.epoch(OP) is None
    assert not tt.rejected
    await tt.request_welcome(OP)
    await tt.wait_for_epoch(OP, 3)
    await agents["JM-CUSTOMS"].wait_for_epoch(OP, 3)
    await agents["JM-CUSTOMS"].publish(OP, b"welcome back")
    assert (await tt.next_message()).content == b"welcome back"
    await tt.publish(OP, b"thanks")
    assert (await agents["JM-CUSTOMS"].next_message()).content == b"thanks"


async def test_e2ee_oversize_content_is_refused_before_it_leaves(secure, keys) -> None:
    """Content whose ciphertext would exceed the hub's max_payload is refused locally by
    name; the connection stays up and the next message goes through."""
    ocu, agents = await _operation(secure, keys, MEMBERS[:1])
    with pytest.raises(UsageError) as exc:
        await ocu.publish(OP, bytes(300 * 1024))
    assert exc.value.code == Code.LIMIT
    await ocu.publish(OP, b"small")
    assert (await agents["JM-CUSTOMS"].next_message()).content == b"small"
