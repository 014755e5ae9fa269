"""ExerciseRun over a real hub on 127.0.0.1 (in this process): the sample exercise with
its two seats, driven through the same calls the web app makes. What a seat types never
reaches the hub's database in the clear; a reset starts the traffic afresh."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from client.exercise.exercise_file import EXERCISES_DIR, load
from client.exercise.runtime import ExerciseRun
from client.replay.engine import identities_for
from hub.app import RunningHub
from hub.config import HubConfig
from protocol.errors import UsageError

SEAT = "TG-JAITF-LFW"
WAIT = 30.0


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[tuple[ExerciseRun, Path]]:
    """The sample exercise over its own in-process hub; the hub's database file."""
    ex = load(EXERCISES_DIR / "cocair-v-tabletop.yaml")
    authority, ids = identities_for(ex.scenario, now=int(time.time()))
    db = tmp_path / "hub.db"
    hub = RunningHub(HubConfig(host="127.0.0.1", port=0, db=db,
                               authorities=(authority.public_key,)))
    hub.hub.preload([i.signed for i in ids.values()])
    async with hub:
        run = ExerciseRun(ex, url=hub.url, identities=ids, authority=authority,
                          operation_id=lambda n: f"DRILL-{n}", speed=60.0,
                          out=tmp_path / "out")
        task = asyncio.create_task(run.run())
        try:
            yield run, db
        finally:
            run.stop()
            await task


async def _until(check: Callable[[], Any], what: str) -> Any:
    async with asyncio.timeout(WAIT):
        while not (found := check()):
            await asyncio.sleep(0.05)
    assert found, what
    return found


def _inbox(run: ExerciseRun, message_id: str) -> dict[str, Any] | None:
    return next((m for m in run.seat_state(SEAT)["inbox"] if m["id"] == message_id), None)


async def test_runtime_seat_text_never_reaches_the_hub_in_the_clear(running) -> None:
    """A feedback typed at a seat reaches the OCU (its expectation is met, the console
    shows it) while the hub's database holds only ciphertext: the typed words are not in
    the SQLite file."""
    run, db = running
    await run.control("resume", {})
    await run.control("pause", {})
    await run.control("deliver", {"inject": "2"})
    warning = await _until(lambda: _inbox(run, "OCU-WCO.X2"), "the warning reaches the seat")
    typed = "Passenger controlled at gate 7; bags opened, zebra-striped umbrella only"
    reply = {**warning["reply"]["content"], "type": "feedback", "result": typed}
    assert run.check(SEAT, reply) == []
    sent = await run.send(SEAT, reply)
    await _until(lambda: any(x["id"] == "2.1" and x["state"] == "met"
                             for x in run.state()["expectations"]), "2.1 met")
    assert any(m["id"] == sent["id"] for m in run.state()["traffic"])
    await asyncio.sleep(0.5)  # the hub's group commit
    stored = b"".join(p.read_bytes() for p in db.parent.glob("hub.db*"))
    assert b"zebra-striped" not in stored
    assert "zebra-striped".encode("utf-16-le") not in stored


async def test_runtime_reset_starts_a_fresh_run(running) -> None:
    """After a reset the injects are pending again, the seats' inboxes are empty and the
    traffic runs as a new operation on the hub."""
    run, _ = running
    await run.control("resume", {})
    await run.control("deliver", {"inject": "2"})
    await _until(lambda: _inbox(run, "OCU-WCO.X2"), "the warning reaches the seat")
    await run.control("reset", {})
    state = run.state()
    assert state["clock"]["operation"] == "DRILL-2"
    assert {i["state"] for i in state["injects"]} == {"pending"}
    assert _inbox(run, "OCU-WCO.X2") is None
    await run.control("resume", {})
    await run.control("deliver", {"inject": "2"})
    await _until(lambda: _inbox(run, "OCU-WCO.X2"), "the warning reaches the seat again")


async def test_runtime_refused_action_names_the_reason(running) -> None:
    """A director's action the engine refuses raises UsageError with the engine's reason,
    and an unknown action names the ones there are."""
    run, _ = running
    with pytest.raises(UsageError, match="deliver"):
        await run.control("explode", {})
    await run.control("resume", {})
    await run.control("deliver", {"inject": "2"})
    with pytest.raises(UsageError):
        await run.control("deliver", {"inject": "2"})


async def test_runtime_end_writes_the_review_of_what_the_seats_did(running) -> None:
    """Ending the exercise writes the run's after-action review: the seat's feedback meets
    its expectation there, and the console links the review."""
    run, _ = running
    await run.control("resume", {})
    await run.control("deliver", {"inject": "2"})
    warning = await _until(lambda: _inbox(run, "OCU-WCO.X2"), "the warning reaches the seat")
    await run.send(SEAT, {**warning["reply"]["content"], "type": "feedback"})
    await _until(lambda: any(x["id"] == "2.1" and x["state"] == "met"
                             for x in run.state()["expectations"]), "2.1 met")
    await run.control("end", {})
    folder = run.reviews[1]
    assert {p.name for p in folder.iterdir()} >= {"review.html", "review.json", "review.md",
                                                  "review.csv"}
    rows = {r["id"]: r for r in csv.DictReader(io.StringIO((folder / "review.csv").read_text()))}
    assert rows["2.1"]["state"] == "met"
    assert rows["2.1"]["by"] == SEAT
    assert run.state()["review"].endswith("/review/review.html")


async def test_runtime_desk_agent_answers_a_seats_request(running) -> None:
    """A request for information a person sends to a desk that an agent plays is answered
    as the agent answers any request: the response reaches the seat's inbox, referring to
    the seat's request."""
    run, _ = running
    await run.control("resume", {})
    rfi = {**run.seat_state(SEAT)["templates"]["request_for_information"],
           "type": "request_for_information",
           "to": [{"unit": "RILO-WA", "country": "SN", "agency": "customs",
                   "name": "RILO West Africa"}],
           "databases": ["wco_cen"], "respond_by": "2015-12-09T18:00:00Z"}
    await _until(lambda: run.ready(SEAT), "the seat holds the operation's keys")
    assert run.check(SEAT, rfi) == []
    sent = await run.send(SEAT, rfi)
    await run.control("speed", {"speed": 3600})  # desks answer an hour or two later
    answer = await _until(lambda: next(
        (m for m in run.seat_state(SEAT)["inbox"]
         if m["type"] == "rfi response" and m["sender"] == "RILO-WA"), None),
        "RILO-WA answers")
    assert sent["id"] in answer["html"]
    assert answer["thread"][-1].startswith("REQUEST FOR INFORMATION " + sent["id"])


async def test_runtime_adhoc_inject_reaches_the_seats_it_names(running) -> None:
    """An inject the director writes during play goes at once from exercise control to the
    seats it names, and is listed with the others as delivered; without a text it is
    refused."""
    run, _ = running
    await run.control("resume", {})
    await run.control("inject", {"to": [SEAT], "subject": "Radio check",
                                 "body": "Confirm the radio link to the OCU works."})
    item = await _until(lambda: next((m for m in run.seat_state(SEAT)["inbox"]
                                      if m["sender"] == "EXCON"
                                      and "Radio check" in m["html"]), None), "inject")
    assert item["id"].startswith("EXCON.XA")
    assert not any("Radio check" in m["html"]
                   for m in run.seat_state("INTERPOL-DESK")["inbox"])
    assert {"A1": "delivered"}.items() <= {i["number"]: i["state"]
                                           for i in run.state()["injects"]}.items()
    with pytest.raises(UsageError, match="subject and a text"):
        await run.control("inject", {"subject": "no text"})
