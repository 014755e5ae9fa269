"""SecureAgents with a state file, through a real hub on 127.0.0.1 (client/secure_state.py):
a restarted agent goes on in its epoch, keys it deleted stay deleted, a file it cannot
open is refused with a stable code, and a burst of messages is a few writes."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from client.connection import ConnectionClosed
from client.e2ee.suite import CLASSIC
from client.identity import UnitIdentity, UnitSpec
from client.secure import AgentStopped, SecureAgent
from client.secure_state import DEBOUNCE
from client.state_file import StateFile, StateKey
from hub.app import RunningHub
from protocol.errors import Code, CryptoError, StateError
from tests.conftest import Keys

OP = "OP-STATE"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]

Start = Callable[..., Any]


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    return tmp_path / "state"


@pytest.fixture
def key(tmp_path: Path) -> StateKey:
    """A key file, kept out of the state directory (as the agent insists)."""
    (tmp_path / "secret").mkdir()
    path = tmp_path / "secret" / "state.key"
    path.write_bytes(os.urandom(32))
    return StateKey.from_file(path)


@pytest.fixture
async def start(hub: RunningHub, keys: Keys, state_dir: Path, key: StateKey
                ) -> AsyncIterator[Start]:
    """Starts SecureAgents with a state file each (X25519 suite: fast); closes them at the
    end."""
    opened: list[SecureAgent] = []

    async def start(unit: str) -> SecureAgent:
        agent = SecureAgent(hub.url, keys[unit], [keys.authority.public_key], suite=CLASSIC,
                            state_path=state_dir / f"{unit}.state", state_key=key)
        opened.append(agent)
        await agent.start()
        return agent

    yield start
    for agent in opened:
        await agent.close()


async def _crew(start: Start, keys: Keys) -> dict[str, SecureAgent]:
    """The OCU and MEMBERS in OP, each holding epoch 0's keys."""
    crew = {u: await start(u) for u in ["OCU-BB", *MEMBERS]}
    await crew["OCU-BB"].create_operation(OP, "state", [keys[u].signed for u in MEMBERS])
    for u in MEMBERS:
        await crew[u].wait_for_epoch(OP, 0)
    return crew


def _hub_epoch(db: Path, op: str) -> int:
    """The operation's epoch as the hub stored it (read from its SQLite file)."""
    with sqlite3.connect(db) as conn:
        (epoch,) = conn.execute("SELECT MAX(epoch) FROM statements WHERE op = ?",
                                (op,)).fetchone()
    return int(epoch)


async def _until(cond: Callable[[], bool], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not cond():
            await asyncio.sleep(0.01)


async def test_agent_state_member_restart_resumes_in_the_same_epoch(start, keys,
                                                                     db_path) -> None:
    """A member closed and started again from its state file reads what was sent while it
    was away and is read again, in the same epoch: no rejoin, no new epoch on the hub."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    await jm.publish(OP, b"before")
    assert (await tt.next_message()).content == b"before"
    await tt.close()
    for i in range(5):
        await jm.publish(OP, b"away %d" % i)
    tt = await start("TT-POLICE")
    assert tt.epoch(OP) == 0  # at once: from the file, not from a welcome
    got = [await tt.next_message() for _ in range(5)]
    assert [m.content for m in got] == [b"away %d" % i for i in range(5)]
    await tt.publish(OP, b"back")
    assert (await jm.next_message()).content == b"back"
    assert _hub_epoch(db_path, OP) == 0
    assert (tt.rejected, jm.rejected) == ([], [])


async def test_agent_state_admin_restart_keeps_its_epoch_and_its_duties(start, keys,
                                                                        db_path) -> None:
    """The OCU started again from its state file forces no new epoch, reads and is read in
    the current one, and still adds a member (whose welcome and commit work)."""
    crew = await _crew(start, keys)
    dm = await start("DM-CUSTOMS")  # its key packages on the hub, for the add
    await crew["OCU-BB"].close()
    ocu = await start("OCU-BB")
    assert ocu.epoch(OP) == 0
    await crew["JM-CUSTOMS"].publish(OP, b"to the OCU")
    assert (await ocu.next_message()).content == b"to the OCU"
    assert _hub_epoch(db_path, OP) == 0
    assert await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed]) == 1
    for agent in (dm, crew["JM-CUSTOMS"], crew["TT-POLICE"]):
        await agent.wait_for_epoch(OP, 1)
    await ocu.publish(OP, b"welcome DM")
    assert (await dm.next_message()).content == b"welcome DM"
    assert [(await crew["TT-POLICE"].next_message()).content for _ in range(2)] == [
        b"to the OCU", b"welcome DM"]
    assert ocu.rejected == []


async def test_agent_state_admin_sends_again_what_a_crash_cut_short(start, keys,
                                                                     state_dir) -> None:
    """The OCU dies between the hub accepting its commit and sending the joiner's welcome:
    restarted from its state file, it sends the commit again (the hub has it already) and
    the welcome, and the joiner gets the epoch."""
    crew = await _crew(start, keys)
    dm = await start("DM-CUSTOMS")
    ocu = crew["OCU-BB"]
    path = state_dir / "OCU-BB.state"
    at_the_crash: list[bytes] = []

    async def crash(op: str, to: str, payload: bytes) -> int:
        at_the_crash.append(path.read_bytes())
        raise ConnectionClosed("the OCU died here")

    ocu.conn.send_directed = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionClosed):
        await ocu.change(OP, add=[keys["DM-CUSTOMS"].signed])
    await ocu.close()
    path.write_bytes(at_the_crash[0])
    await start("OCU-BB")
    await dm.wait_for_epoch(OP, 1)
    await crew["JM-CUSTOMS"].wait_for_epoch(OP, 1)
    await crew["JM-CUSTOMS"].publish(OP, b"hello DM")
    assert (await dm.next_message()).content == b"hello DM"


async def test_agent_state_keeps_deleted_keys_deleted(start, keys, state_dir, key) -> None:
    """After a restart, a message already read does not decrypt from the restored state
    (replayed), and the decrypted state holds none of the deleted secrets: the used message
    key and ratchet secret, the opened key package's private half, a dropped epoch."""
    ocu, jm, tt = [await start(u) for u in ["OCU-BB", *MEMBERS]]
    before = {bytes(k) for _, k in tt.keys.to_state()["private"]}
    await ocu.create_operation(OP, "state", [keys[u].signed for u in MEMBERS])
    await tt.wait_for_epoch(OP, 0)
    opened = before - {bytes(k) for _, k in tt.keys.to_state()["private"]}
    assert len(opened) == 1  # the package its welcome was sealed to
    epoch0 = tt.member.channels[OP].current
    assert epoch0 is not None
    leaf = epoch0.index["JM-CUSTOMS"]
    ratchet = epoch0.receiver(leaf)
    used_secret = ratchet.secret
    used_key, used_nonce, _ = epoch0.tree.ratchet_step(ratchet.secret, ratchet.generation)
    header, ciphertext = jm.member.encrypt(OP, b"read once", now=time.time())
    await jm.conn.publish(OP, ciphertext, header=header)
    assert (await tt.next_message()).content == b"read once"
    for epoch in (1, 2):  # two rotations: epoch 0 is beyond the one previous epoch kept
        await ocu.rotate(OP)
        await tt.wait_for_epoch(OP, epoch)
    current = tt.member.channels[OP].current
    assert current is not None
    kept = current.receiver(current.index["JM-CUSTOMS"]).secret
    await tt.close()

    blob = StateFile(state_dir / "TT-POLICE.state", key, "TT-POLICE").read()
    assert kept in blob  # the check can see a secret that is there
    for secret in (used_secret, used_key, used_nonce, *opened, epoch0.init_secret,
                   epoch0.confirmation_key):
        assert secret not in blob
    tt = await start("TT-POLICE")
    with pytest.raises(CryptoError) as err:
        tt.member.decrypt(OP, header, ciphertext, now=time.time())
    assert err.value.code == Code.UNKNOWN_EPOCH  # epoch 0's keys are gone altogether


async def test_agent_state_read_message_is_replayed_after_restart(start, keys) -> None:
    """In the epoch still held, a message read before the restart is refused as replayed
    by the restored agent: its key was consumed and is not in the state."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    header, ciphertext = jm.member.encrypt(OP, b"read once", now=time.time())
    await jm.conn.publish(OP, ciphertext, header=header)
    assert (await tt.next_message()).content == b"read once"
    await tt.close()
    tt = await start("TT-POLICE")
    with pytest.raises(CryptoError) as err:
        tt.member.decrypt(OP, header, ciphertext, now=time.time())
    assert err.value.code == Code.REPLAYED


async def test_agent_state_crash_goes_on_from_the_last_write(start, keys, state_dir) -> None:
    """An agent that dies some time after its last write (the file copied at the "crash",
    put back once the agent is gone) reads again what came after that write, which still
    decrypts; what it read before stays consumed; and what it sends after the restart skips
    every generation it may have used since, so the others accept it."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    await tt.publish(OP, b"tt early")
    assert (await jm.next_message()).content == b"tt early"
    header, ciphertext = jm.member.encrypt(OP, b"one", now=time.time())
    await jm.conn.publish(OP, ciphertext, header=header)
    assert (await tt.next_message()).content == b"one"
    tt._state.debounce = 3600.0  # from here on, only what must be written is
    await asyncio.sleep(2 * DEBOUNCE)  # (a debounce already running has fired)
    await tt._state.flush()  # the last write before the crash
    for text in (b"two", b"three"):
        await jm.publish(OP, text)
        assert (await tt.next_message()).content == text
    await tt.publish(OP, b"tt late")  # a generation used after the last write
    assert (await jm.next_message()).content == b"tt late"
    path = state_dir / "TT-POLICE.state"
    at_the_crash = path.read_bytes()
    await tt.close()
    path.write_bytes(at_the_crash)

    tt = await start("TT-POLICE")
    assert [(await tt.next_message()).content for _ in range(2)] == [b"two", b"three"]
    with pytest.raises(CryptoError) as err:
        tt.member.decrypt(OP, header, ciphertext, now=time.time())
    assert err.value.code == Code.REPLAYED
    await tt.publish(OP, b"after the crash")
    assert (await jm.next_message()).content == b"after the crash"
    assert jm.rejected == []


async def test_agent_state_restarts_alone_do_not_push_the_sender_away(start, keys,
                                                                      state_dir) -> None:
    """Restarts without sending in between, clean or after a crash, never move the
    generation a member sends at next: after eight of them its message is still within
    what the others accept (a lease moves only for sending)."""
    crew = await _crew(start, keys)
    await crew["TT-POLICE"].publish(OP, b"first")  # a lease was written for this
    assert (await crew["JM-CUSTOMS"].next_message()).content == b"first"
    path = state_dir / "TT-POLICE.state"
    for i in range(8):
        await crew["TT-POLICE"]._state.flush()  # the restarted agent's own write
        at_the_crash = path.read_bytes()
        await crew["TT-POLICE"].close()
        if i % 4:
            path.write_bytes(at_the_crash)  # as if it had died instead of closing
        crew["TT-POLICE"] = await start("TT-POLICE")
    await crew["TT-POLICE"].publish(OP, b"still heard")
    assert (await crew["JM-CUSTOMS"].next_message()).content == b"still heard"
    assert crew["JM-CUSTOMS"].rejected == []


async def test_agent_state_unread_messages_survive_a_restart(start, keys) -> None:
    """Messages decrypted but not yet taken by the application are in the state file and
    handed over again after a restart (their keys are consumed: they could not be read
    from the log again)."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    for i in range(3):
        await jm.publish(OP, b"unread %d" % i)
    await _until(lambda: tt.unread == 3)
    await tt.close()
    tt = await start("TT-POLICE")
    assert [(await tt.next_message()).content for _ in range(3)] == [
        b"unread %d" % i for i in range(3)]
    with pytest.raises(TimeoutError):
        await tt.next_message(within=0.5)


async def test_agent_state_burst_of_messages_is_a_few_writes(start, keys) -> None:
    """A burst of N messages published one after the other (so that most arrive in a
    delivery of their own) and read makes far fewer than N writes of either state file:
    writes are debounced, and sends reserve generations ahead."""
    crew = await _crew(start, keys)
    jm, tt = crew["JM-CUSTOMS"], crew["TT-POLICE"]
    writes = {a.unit: a._state.file.writes for a in (jm, tt)}
    n = 300
    for i in range(n):
        await jm.publish(OP, b"burst %d" % i)
    got = [await tt.next_message() for _ in range(n)]
    assert [m.content for m in got] == [b"burst %d" % i for i in range(n)]
    await asyncio.sleep(2 * tt._state.debounce)
    done = {a.unit: a._state.file.writes - writes[a.unit] for a in (jm, tt)}
    assert 1 <= done["TT-POLICE"] < n // 10
    assert 1 <= done["JM-CUSTOMS"] < n // 10


async def test_agent_state_fresh_agent_writes_its_file(start, keys, state_dir) -> None:
    """An agent with a state file that does not exist yet starts fresh and writes one,
    readable by its owner only, before its key packages leave."""
    await start("TT-POLICE")
    path = state_dir / "TT-POLICE.state"
    assert path.exists()
    assert path.stat().st_mode & 0o777 == 0o600


async def test_agent_state_file_it_cannot_open_is_refused_and_left_alone(
        start, hub, keys, state_dir, key) -> None:
    """A wrong key, another unit's file, the same unit under a new identity key and an
    altered file each stop start() with StateError naming the file and a stable code; the
    file is left as it was."""
    await (await start("TT-POLICE")).close()
    path = state_dir / "TT-POLICE.state"
    original = path.read_bytes()

    async def refused(who: str | UnitIdentity, state_key: StateKey) -> StateError:
        identity = keys[who] if isinstance(who, str) else who
        agent = SecureAgent(hub.url, identity, [keys.authority.public_key], suite=CLASSIC,
                            state_path=path, state_key=state_key)
        try:
            with pytest.raises(StateError) as err:
                await agent.start()
        finally:
            await agent.close()
        assert str(path) in err.value.message
        return err.value

    assert (await refused("TT-POLICE", StateKey(raw=os.urandom(32)))).code == \
        Code.STATE_WRONG_KEY
    assert (await refused("JM-CUSTOMS", key)).code == Code.STATE_MISMATCH
    renewed = keys.authority.enroll(UnitSpec("TT-POLICE", "TT", "police"), now=keys.now)
    assert (await refused(renewed, key)).code == Code.STATE_MISMATCH
    assert path.read_bytes() == original
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    assert (await refused("TT-POLICE", key)).code == Code.STATE_WRONG_KEY


async def test_agent_state_write_that_fails_stops_the_agent(start, keys, state_dir) -> None:
    """A state that can no longer be written stops the agent (its keys would be lost on
    the next restart): reading on raises AgentStopped caused by state_write_failed."""
    crew = await _crew(start, keys)
    tt = crew["TT-POLICE"]
    tt._state.file.path = state_dir / "gone" / "TT-POLICE.state"  # a directory that is not
    await crew["JM-CUSTOMS"].publish(OP, b"to be saved")

    async def read_until_it_stops() -> None:
        while True:
            await tt.next_message(within=5)

    with pytest.raises(AgentStopped) as err:
        await read_until_it_stops()
    assert isinstance(err.value.__cause__, StateError)
    assert err.value.__cause__.code == Code.STATE_WRITE
