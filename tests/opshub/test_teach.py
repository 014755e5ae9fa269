"""`opshub teach` end to end, without a browser: a lesson over its own hub (a child
process, a real SQLite file), driven through its HTTP API as the page drives it. The
"as the hub stores it" pane is checked against the database read here independently, and
the "as members read it" pane against what the members' agents decrypted."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack
import pytest

from client.e2ee.message import Header
from client.replay.scenario import load, resolve
from opshub.teach import run_lesson

COCAIR = load(resolve("cocair-v"))
FIRST_STORY = COCAIR.storylines[0]["id"]


class Lesson:
    def __init__(self, http: aiohttp.ClientSession, ready: dict[str, Any]) -> None:
        self.http = http
        self.ready = ready
        self.api = f"{ready['url']}/api/lesson/{ready['token']}"

    async def state(self) -> dict[str, Any]:
        async with self.http.get(f"{self.api}/state") as r:
            assert r.status == 200
            return await r.json()  # type: ignore[no-any-return]

    async def control(self, action: str, **args: Any) -> tuple[int, dict[str, Any]]:
        async with self.http.post(f"{self.api}/control", json={"action": action, **args}
                                  ) as r:
            return r.status, await r.json()

    async def do(self, action: str, **args: Any) -> dict[str, Any]:
        """The action, accepted, then the state once it is carried out."""
        status, body = await self.control(action, **args)
        assert status == 200, body
        return await self.settled()

    async def settled(self) -> dict[str, Any]:
        async with asyncio.timeout(30):
            while True:
                s = await self.state()
                if not s["moving"]:
                    return s
                await asyncio.sleep(0.02)

    def stored(self, seq: int) -> list[Any]:
        """Entry ``seq`` of the lesson's operation as the hub's SQLite file holds it."""
        with sqlite3.connect(f"file:{self.ready['db']}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT body FROM segments WHERE op = ?",
                                (self.ready["operation"],))
            for (body,) in rows:
                for entry in msgpack.unpackb(body):
                    if entry[0] == seq:
                        return entry  # type: ignore[no-any-return]
        raise AssertionError(f"no entry {seq} in the hub's database")


@pytest.fixture
async def lesson(tmp_path: Path) -> AsyncIterator[Lesson]:
    ready_file = tmp_path / "ready.json"
    stop = asyncio.Event()
    task = asyncio.create_task(run_lesson(COCAIR, host="127.0.0.1", port=0,
                                          ready_file=ready_file, late=("NG-NDLEA-LOS",),
                                          stop=stop, say=lambda _line: None))
    try:
        async with asyncio.timeout(60):
            while not ready_file.exists():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        ready = json.loads(ready_file.read_text())
        async with aiohttp.ClientSession() as http:
            one = Lesson(http, ready)
            await one.settled()
            yield one
    finally:
        stop.set()
        await task


def _check_stored_pane(lesson: Lesson, current: dict[str, Any]) -> list[Any]:
    entry = current["stored"]["entry"]
    seq, sender, kind, header, payload, _at = lesson.stored(entry["seq"])
    assert (entry["sender"], entry["payload_size"]) == (sender, len(payload))
    assert entry["header_hex"] == header.hex(" ")
    assert entry["excerpt_hex"] == payload[:48].hex(" ")
    assert entry["kind"] == ("commit" if kind == 1 else "message")
    if kind == 0:
        assert entry["header"]["epoch"] == Header.from_bytes(header).epoch == current["epoch"]
    return [seq, sender, kind, header, payload]


async def test_teach_opens_the_channel_as_its_first_item(lesson: Lesson) -> None:
    """The lesson starts showing the OCU's opening commit, as the hub stored it, with
    every member holding epoch 0's keys and the late unit holding none."""
    s = await lesson.state()
    assert (s["cursor"], s["done"], s["epoch"]) == (0, 1, 0)
    current = s["current"]
    assert current["written"]["kind"] == "membership"
    entry = _check_stored_pane(lesson, current)
    assert (entry[1], entry[2]) == (COCAIR.ocu, 1)  # the OCU's commit
    no_keys = {r["unit"] for r in current["readers"] if not r["can"]}
    assert no_keys == {"NG-NDLEA-LOS"}


async def test_teach_steps_through_the_first_storyline_and_back(lesson: Lesson) -> None:
    """Each step forward sends the next message; its panes agree with the hub's database
    (header, sizes, bytes) and with every member's decryption (identical to what was
    written); back shows the earlier one again without sending anything."""
    s = await lesson.state()
    story = [i for i in s["items"] if i["storyline"] == FIRST_STORY]
    seen = []
    while s["cursor"] < story[-1]["index"]:
        s = await lesson.do("forward")
        current = s["current"]
        item = s["items"][s["cursor"]]
        written = current["written"]
        assert written["id"] == item["id"]
        _check_stored_pane(lesson, current)
        readers = {r["unit"]: r for r in current["readers"]}
        assert readers[item["sender"]]["reason"] == "sender"
        for unit, r in readers.items():
            if unit not in (item["sender"], "NG-NDLEA-LOS"):
                assert (r["reason"], r.get("same")) == ("read", True), r
        assert readers["NG-NDLEA-LOS"]["reason"] == "not_member"
        seen.append(current["stored"]["entry"]["seq"])
    assert seen == sorted(set(seen))
    done = s["done"]
    s = await lesson.do("back")
    assert (s["cursor"], s["done"]) == (done - 2, done)
    assert s["current"]["stored"]["entry"]["seq"] == seen[-2]


async def test_teach_removed_member_cannot_read_what_follows(lesson: Lesson) -> None:
    """After the OCU removes a unit, the next message is at a new epoch: the removed unit
    is shown as unable to read it, and its own keys, tried on the stored bytes, fail."""
    s = await lesson.do("forward")
    s = await lesson.do("remove", unit="CI-JAITF-ABJ")
    assert (s["current"]["written"]["action"], s["epoch"]) == ("remove", 1)
    _check_stored_pane(lesson, s["current"])
    s = await lesson.do("forward")
    assert s["current"]["epoch"] == 1
    _check_stored_pane(lesson, s["current"])
    ci = next(r for r in s["current"]["readers"] if r["unit"] == "CI-JAITF-ABJ")
    assert (ci["can"], ci["reason"]) == (False, "removed")
    assert ci["tried"].startswith("unknown_epoch")
    assert "removed at epoch 1" in ci["text"]


async def test_teach_late_unit_added_reads_from_its_epoch_only(lesson: Lesson) -> None:
    """A unit added during the lesson reads what follows; on an earlier message it is
    shown as joined later."""
    s = await lesson.do("forward")
    before = s["cursor"]
    s = await lesson.do("add", unit="NG-NDLEA-LOS")
    assert s["epoch"] == 1
    s = await lesson.do("forward")
    ng = next(r for r in s["current"]["readers"] if r["unit"] == "NG-NDLEA-LOS")
    assert (ng["reason"], ng.get("same")) == ("read", True)
    s = await lesson.do("jump", index=before)
    ng = next(r for r in s["current"]["readers"] if r["unit"] == "NG-NDLEA-LOS")
    assert (ng["can"], ng["reason"]) == (False, "not_yet")


async def test_teach_refusals_name_the_problem_and_change_nothing(lesson: Lesson) -> None:
    before = await lesson.state()
    for action, args, words in [
            ("back", {}, "first item"), ("remove", {"unit": "OCU-WCO"}, "is the OCU"),
            ("jump", {"index": 999}, "no item 999"), ("fly", {}, "unknown action 'fly'"),
            ("pace", {"seconds": "fast"}, "'seconds' must be a number")]:
        status, body = await lesson.control(action, **args)
        assert status == 409, body
        assert words in body["error"]["message"], body
    after = await lesson.state()
    assert (after["cursor"], after["done"]) == (before["cursor"], before["done"])
    async with lesson.http.get(f"{lesson.ready['url']}/api/lesson/not-the-token/state") as r:
        assert r.status == 403


@pytest.mark.parametrize("name", ["cocair-v", "trigger-vii", "calypso-2"])
async def test_teach_plays_every_documented_operation_to_its_end(tmp_path: Path,
                                                                  name: str) -> None:
    """Each documented operation's lesson carries out every storyline message to the last
    one, each read by every member with what was written, each with a workflow step the
    explanations know."""
    scenario = load(resolve(name))
    ready_file = tmp_path / "ready.json"
    stop = asyncio.Event()
    task = asyncio.create_task(run_lesson(scenario, host="127.0.0.1", port=0,
                                          ready_file=ready_file, stop=stop,
                                          say=lambda _line: None))
    try:
        async with asyncio.timeout(60):
            while not ready_file.exists():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
        async with aiohttp.ClientSession() as http:
            lesson = Lesson(http, json.loads(ready_file.read_text()))
            await lesson.settled()
            s = await lesson.do("jump", index=len(scenario.steps))
            assert (s["failure"], s["done"]) == (None, len(scenario.steps) + 1)
            steps = set()
            for index in range(1, s["total"]):
                s = await lesson.do("jump", index=index)
                current = s["current"]
                assert all(r["can"] for r in current["readers"]), current["readers"]
                assert all(r.get("same", True) for r in current["readers"])
                assert current["written"]["explain"]["step"]
                steps.add(current["written"]["explain"]["step_key"])
            assert len(steps) >= 4
    finally:
        stop.set()
        await task
