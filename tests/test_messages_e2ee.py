"""Schema messages through a real hub on 127.0.0.1 and the encrypted channel: reports
arrive exactly as sent, an invalid message never leaves its sender, and a receiver
rejects one sent by a misbehaving member and goes on."""

from __future__ import annotations

import asyncio
import contextlib
import copy
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from client.connection import TIMEOUT
from client.e2ee.suite import CLASSIC
from client.messages import content
from client.messages.catalog import SCHEMA_DIR
from client.messages.content import load_file
from client.secure import SecureAgent
from hub.app import RunningHub
from protocol.codec import Limits
from protocol.errors import Code, CryptoError, SchemaError, UsageError
from tests.conftest import Keys, stored_seqs

OP = "OP-SCHEMAS"
MEMBERS = ["JM-CUSTOMS", "TT-POLICE"]
COUNTRY = {"OCU-BB": "BB", "JM-CUSTOMS": "JM", "TT-POLICE": "TT", "DM-CUSTOMS": "DM"}
VALID = sorted((SCHEMA_DIR / "examples" / "valid").glob("*.json"))


def example(kind: str, unit: str) -> dict[str, Any]:
    """A valid example of ``kind``, as sent by ``unit`` in this test's operation."""
    for p in VALID:
        m = load_file(p)
        if m["type"] == kind:
            m = copy.deepcopy(m)
            m["operation"] = OP
            m["sender"] = {"unit": unit, "country": COUNTRY[unit],
                           "agency": "police" if "POLICE" in unit else "customs"}
            # references to messages of the example's own operation do not resolve here
            m.get("event", {}).get("detection", {}).pop("warning_ref", None)
            return m  # type: ignore[no-any-return]
    raise LookupError(kind)


@contextlib.asynccontextmanager
async def _channel(url: str, keys: Keys) -> AsyncIterator[dict[str, SecureAgent]]:
    """The OCU and MEMBERS as SecureAgents on the hub at ``url``, in OP at epoch 0."""
    agents: dict[str, SecureAgent] = {}
    try:
        for unit in ["OCU-BB", *MEMBERS]:
            agents[unit] = SecureAgent(url, keys[unit], [keys.authority.public_key],
                                       suite=CLASSIC)
            await agents[unit].start()
        await agents["OCU-BB"].create_operation(OP, "schemas",
                                                [keys[u].signed for u in MEMBERS])
        for u in MEMBERS:
            await agents[u].wait_for_epoch(OP, 0)
        yield agents
    finally:
        for a in agents.values():
            await a.close()


@pytest.fixture
async def channel(hub: RunningHub, keys: Keys) -> AsyncIterator[dict[str, SecureAgent]]:
    async with _channel(hub.url, keys) as agents:
        yield agents


async def _until(pred: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not pred():
            await asyncio.sleep(0.01)


async def test_messages_report_round_trip_is_exact(channel) -> None:
    """A seizure report sent by one unit is read by the others exactly as sent (equal,
    same key order), after schema checks on both sides."""
    report = example("seizure_report", "JM-CUSTOMS")
    await channel["JM-CUSTOMS"].send(OP, report)
    for unit in ("TT-POLICE", "OCU-BB"):
        got = await channel[unit].next_message()
        assert got.content_type == content.MESSAGE
        assert got.sender == "JM-CUSTOMS"
        assert got.body == report
        assert list(got.body) == list(report)
        assert content.decode(got.content) == report
    assert not channel["TT-POLICE"].rejected
    assert not channel["OCU-BB"].rejected


async def test_messages_invalid_message_never_leaves_the_sender(channel, db_path: Path
                                                                 ) -> None:
    """send() refuses an invalid report with every problem listed; the hub stores
    nothing for it, and the agent goes on sending valid ones."""
    before = stored_seqs(db_path, OP)
    bad = example("seizure_report", "JM-CUSTOMS")
    bad["items"][0]["quantity"] = {"value": -1, "unit": "kg"}
    bad["sender"]["country"] = "QQ"
    with pytest.raises(SchemaError) as info:
        await channel["JM-CUSTOMS"].send(OP, bad)
    assert {p.path for p in info.value.problems} == {"/items/0/quantity/value",
                                                     "/sender/country"}
    assert stored_seqs(db_path, OP) == before
    await channel["JM-CUSTOMS"].send(OP, example("alert", "JM-CUSTOMS"))
    assert (await channel["TT-POLICE"].next_message()).body["type"] == "alert"


async def test_messages_sender_must_be_the_signer(channel) -> None:
    """A message whose content names another unit as sender is refused before sending."""
    forged = example("alert", "TT-POLICE")
    with pytest.raises(SchemaError) as info:
        await channel["JM-CUSTOMS"].send(OP, forged)
    assert [p.path for p in info.value.problems] == ["/sender/unit"]


async def test_messages_receiver_rejects_a_misbehaving_members_messages(channel) -> None:
    """Content that bypassed the sender's checks (not JSON, failing the schema, claiming
    another sender) is recorded as rejected with invalid_message and its paths; the
    receiver keeps reading."""
    jm, tt = channel["JM-CUSTOMS"], channel["TT-POLICE"]
    bad = example("seizure_report", "JM-CUSTOMS")
    bad["items"][0]["category"] = "weapon"
    claims = example("alert", "TT-POLICE")
    await jm.publish(OP, b"{not json", content_type=content.MESSAGE)
    await jm.publish(OP, content.encode(bad), content_type=content.MESSAGE)
    await jm.publish(OP, content.encode(claims), content_type=content.MESSAGE)
    await jm.send(OP, example("alert", "JM-CUSTOMS"))
    got = await tt.next_message()
    assert got.body is not None
    assert got.body["sender"]["unit"] == "JM-CUSTOMS"
    assert [r.code for r in tt.rejected] == [Code.INVALID_MESSAGE] * 3
    assert [[p.path for p in r.problems] for r in tt.rejected] == [
        [""], ["/items/0/category"], ["/sender/unit"]]


async def test_messages_feedback_must_follow_a_warning(channel) -> None:
    """A feedback referring to no warning is refused at /refers_to; once the warning has
    been received, the same feedback is sent and accepted by the others."""
    ocu, jm, tt = channel["OCU-BB"], channel["JM-CUSTOMS"], channel["TT-POLICE"]
    warning = example("warning", "OCU-BB")
    feedback = example("feedback", "JM-CUSTOMS")
    feedback["refers_to"] = warning["id"]
    feedback.pop("seizure_ref", None)
    with pytest.raises(SchemaError) as info:
        await jm.send(OP, feedback)
    assert [(p.path, p.keyword) for p in info.value.problems] == [("/refers_to",
                                                                   "reference")]
    await ocu.send(OP, warning)
    assert (await jm.next_message()).body == warning
    await jm.send(OP, feedback)
    assert (await tt.next_message()).body == warning
    assert (await tt.next_message()).body == feedback
    assert (await ocu.next_message()).body == feedback
    assert not tt.rejected
    assert not ocu.rejected


async def test_messages_id_cannot_be_reused_by_pipelined_sends(channel) -> None:
    """Two sends of the same message id, the second before the first is acknowledged,
    do not both go out: the second is refused at /id."""
    jm = channel["JM-CUSTOMS"]
    alert = example("alert", "JM-CUSTOMS")
    first = asyncio.ensure_future(jm.send(OP, alert))
    await asyncio.sleep(0)  # the first is checked and queued, not yet acknowledged
    with pytest.raises(SchemaError) as info:
        await jm.send(OP, dict(alert))
    assert [(p.path, p.keyword) for p in info.value.problems] == [("/id", "unique")]
    await first


async def test_messages_id_is_free_again_after_a_send_without_keys(channel, hub, keys
                                                                  ) -> None:
    """A send refused because the unit holds no keys for the operation yet publishes
    nothing and does not use up its message id: once the unit is added, the same message
    goes out and is read."""
    dm = SecureAgent(hub.url, keys["DM-CUSTOMS"], [keys.authority.public_key],
                     suite=CLASSIC)
    await dm.start()
    try:
        alert = example("alert", "DM-CUSTOMS")
        with pytest.raises(CryptoError) as info:
            await dm.send(OP, alert)
        assert info.value.code == Code.UNKNOWN_EPOCH
        epoch = await channel["OCU-BB"].change(OP, add=[keys["DM-CUSTOMS"].signed])
        await dm.wait_for_epoch(OP, epoch)
        seq = await dm.send(OP, alert)
        got = await channel["TT-POLICE"].next_message()
        assert (got.seq, got.sender, got.body) == (seq, "DM-CUSTOMS", alert)
    finally:
        await dm.close()


async def test_messages_id_is_free_again_after_a_send_too_large_for_the_hub(keys, db_path
                                                                           ) -> None:
    """A send whose ciphertext is over the hub's max_payload is refused before it leaves
    and does not use up its message id: the same id, with a shorter body, goes out."""
    running = RunningHub(keys.config(db_path, limits=Limits(max_payload=8192)))
    running.hub.preload([u.signed for u in keys.units.values()])
    async with running, _channel(running.url, keys) as agents:
        jm, tt = agents["JM-CUSTOMS"], agents["TT-POLICE"]
        alert = example("alert", "JM-CUSTOMS")
        with pytest.raises(UsageError) as info:
            await jm.send(OP, {**alert, "body": "x" * 10_000})
        assert info.value.code == Code.LIMIT
        await jm.send(OP, alert)
        assert (await tt.next_message()).body == alert
        assert stored_seqs(db_path, OP) == [1, 2]


async def test_messages_id_of_a_send_not_acknowledged_in_time_stays_taken(keys, db_path
                                                                         ) -> None:
    """A send not acknowledged in time (the hub is down) may still be stored: the
    connection re-sends it until the hub answers. Its id stays taken meanwhile (a second
    send is refused as not yet stored); when the hub is back it is stored once, and the
    id is then taken by that log seq."""
    first = RunningHub(keys.config(db_path))
    first.hub.preload([u.signed for u in keys.units.values()])
    await first.start()
    second: RunningHub | None = None
    try:
        async with _channel(first.url, keys) as agents:
            jm, tt = agents["JM-CUSTOMS"], agents["TT-POLICE"]
            alert = example("alert", "JM-CUSTOMS")
            await first.stop()
            with pytest.raises(TimeoutError):
                await jm.send(OP, alert, within=TIMEOUT / 20)
            with pytest.raises(SchemaError, match="not yet stored"):
                await jm.send(OP, dict(alert))
            second = RunningHub(keys.config(db_path, port=first.port))
            await second.start()
            got = await tt.next_message()
            assert got.body == alert
            async with asyncio.timeout(TIMEOUT):
                while jm.ledger(OP).seen[alert["id"]].seq != got.seq:
                    await asyncio.sleep(0.01)
            with pytest.raises(SchemaError, match=f"log seq {got.seq}"):
                await jm.send(OP, dict(alert))
            assert stored_seqs(db_path, OP) == [1, 2]
    finally:
        await first.stop()
        if second is not None:
            await second.stop()
