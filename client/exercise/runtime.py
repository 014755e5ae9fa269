"""ExerciseRun: one exercise over a hub, on the members' side. It runs the replay's agents
for every unit no person holds, holds the seats' keys (their SecureAgents), feeds the
engine (client/exercise/engine.py) the wall clock, the director's actions and what the
expectation rules find in the decrypted traffic, and carries out what the engine decides:
injects sent as their sender, a fresh run after a reset, the end.

Injects from exercise control (EXCON) go to the seats' inboxes directly, as a control
cell would hand them over; every other inject is a message of the operation, encrypted
by its sender's agent. The hub sees ciphertext only, as in a replay.

The web app (client/exercise/web.py) reads ``state`` and ``seat_state`` and calls
``control``, ``check`` and ``send``; ``changes`` wakes its pages.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Any

from client.connection import HubUrls
from client.exercise import engine as e
from client.exercise.exercise_file import Exercise
from client.exercise.expectations import OpenExpectation, meets
from client.exercise.feed import Feed
from client.exercise.forms import FILLED_IN
from client.exercise.model import CONTROL, ExpectationState, Inject, Status
from client.exercise.review import ReviewInputs, duration, replay_report, write_review
from client.exercise.times import format_offset
from client.identity import Authority, UnitIdentity
from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.content import load_file
from client.messages.render import headline, render_html
from client.replay.engine import Replay
from client.replay.scenario import envelope
from client.secure import Message
from protocol.errors import UsageError

log = logging.getLogger("opshub.exercise")

#: How often the engine is told the time: the console sees a message within this (plus
#: the browser's fetch) of the OCU reading it.
TICK = 0.05
#: Messages a seat may write, with the example each form starts from.
WRITABLE = {
    "feedback": "feedback-cocair-seized.json",
    "seizure_report": "seizure-cocair-airport-cocaine.json",
    "request_for_information": "rfi-dominica-parcel.json",
    "rfi_response": "rfi-response-multiple-purchases.json",
    "warning": "warning-cocair-couriers.json",
    "alert": "alert-auto-sears.json",
}
#: Filled in when a seat's message is sent; a form does not show them.
ENVELOPE = FILLED_IN
TRAFFIC_SHOWN = 200
#: Answers agents may give to what the seats send, beyond the replay's plan (a bound on
#: the replay's agenda all the same).
REACTIONS = 5000
#: Seconds an inject waits for its sender to hold the operation's keys at the start.
SETUP = 120.0


@dataclass(slots=True)
class InboxItem:
    id: str
    at: float  # exercise virtual seconds
    sender: str
    message: dict[str, Any]


@dataclass(slots=True)
class Seat:
    unit: str
    token: str
    country: str
    inbox: list[InboxItem] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)  # ids of what it sent
    last_action: str = ""


class ExerciseRun:
    def __init__(self, exercise: Exercise, *, url: HubUrls,
                 identities: dict[str, UnitIdentity],
                 authority: Authority, operation_id: Callable[[int], str], seed: int = 1,
                 speed: float = 60.0, wall: Callable[[], float] = time.monotonic,
                 token: Callable[[], str] = lambda: secrets.token_urlsafe(12),
                 base_url: str = "", out: Path | None = None,
                 ssl: SSLContext | None = None) -> None:
        """``url``: the hub, or several nodes of one cluster (the agents are spread over
        them, see ``Replay.run``). ``out``: where each run's after-action review is
        written (``run-N/``), at the end and when the director asks; None: nowhere.
        ``ssl``: for wss:// URLs, what verifies the hub's certificate (AgentConnection)."""
        self.exercise = exercise
        self.scenario = exercise.scenario
        self.url = url
        self.ssl = ssl
        self.identities = identities
        self.authority = authority
        self.operation_id = operation_id
        self.seed = seed
        self.wall = wall
        self.base_url = base_url
        self.out = out
        #: the folder of the latest review written, per run
        self.reviews: dict[int, Path] = {}
        #: why the operation's traffic stopped, shown on the console (None: it runs)
        self.failure: str | None = None
        self.catalog = default_catalog()
        self.engine = e.ExerciseEngine(exercise.injects, end=exercise.end, speed=speed)
        self.director_token = token()
        self.seats = {u: Seat(u, token(), self.scenario.participants[u].country)
                      for u in exercise.seats}
        #: exercise time 0 in the replay's virtual seconds (the operation's first day)
        self.offset = (exercise.start - self.scenario.t0).total_seconds()
        self._listeners: set[asyncio.Queue[str]] = set()
        self._pages: dict[int, str] = {}  # id(queue) -> whose page it is
        self._moved = asyncio.Event()
        self._stopped = asyncio.Event()
        self._replay: Replay | None = None
        self._replay_task: asyncio.Task[Any] | None = None
        self._tasks: asyncio.TaskGroup | None = None
        #: injects on their way (waiting for the channel, or being sent)
        self._sending: set[asyncio.Task[None]] = set()
        self._reset_runs()

    def _reset_runs(self) -> None:
        #: what the console shows: the latest messages by exercise time
        self.traffic = Feed(TRAFFIC_SHOWN)
        self._read_at: dict[str, float] = {}
        self._sent_by: dict[str, dict[str, dict[str, Any]]] = {}  # seat -> id -> message
        #: id(message) -> (message, its rendering); the message is kept so the id stays its
        self._rendered: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
        self._log_seen = 0
        self._inject_ids: dict[str, str] = {}
        self._sent_count = 0
        self.records: list[tuple[float, str, list[str] | None, dict[str, Any]]] = []
        for seat in self.seats.values():
            seat.inbox.clear()
            seat.sent.clear()
            seat.last_action = ""

    # --- running -------------------------------------------------------------------------

    async def run(self) -> None:
        """Run until ``stop``: the clock, and the operation's traffic run after run."""
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            ticker = tasks.create_task(self._ticker(), name="exercise-clock")
            self._start_replay()
            try:
                await self._stopped.wait()
            finally:
                ticker.cancel()
                self._stop_replay()
                for sending in self._sending:
                    sending.cancel()
        self._tasks = None

    def stop(self) -> None:
        self._stopped.set()

    @property
    def op(self) -> str:
        return self.operation_id(self.engine.run)

    @property
    def replay(self) -> Replay:
        if self._replay is None:
            raise UsageError("the exercise is not running")
        return self._replay

    def _start_replay(self) -> None:
        assert self._tasks is not None
        replay = Replay(self.scenario, seed=self.seed, operation_id=self.op, pace=self._pace,
                        held=frozenset(self.seats))
        replay.on_held = self._on_held
        replay.on_record = self._ocu_read
        replay.reaction_allowance = REACTIONS
        self._replay = replay
        self._replay_task = self._tasks.create_task(
            self._play(replay), name=f"exercise-traffic-{self.engine.run}")

    async def _play(self, replay: Replay) -> None:
        try:
            await replay.run(self.url, self.identities, self.authority, ssl=self.ssl)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the traffic stops; the exercise and its pages go on
            log.exception("the operation's traffic stopped")
            self.failure = f"the operation's traffic stopped: {exc}"
            self._notify("state")

    def _stop_replay(self) -> None:
        if self._replay_task is not None:
            self._replay_task.cancel()
            self._replay_task = None

    async def _pace(self, t: float) -> None:
        """The replay may play virtual time ``t`` (its own seconds) once the exercise's
        clock has reached it; before the exercise's start it plays at once."""
        while self.engine.status is not Status.ENDED and t - self.offset > self.engine.virtual:
            self._moved.clear()
            await self._moved.wait()

    async def _ticker(self) -> None:
        while True:
            self._apply(self.engine.handle(e.Tick(now=self.wall())))
            self._read_traffic()
            self._moved.set()
            await asyncio.sleep(TICK)

    # --- the engine's decisions ----------------------------------------------------------

    def _apply(self, actions: list[e.Action]) -> None:
        """Carry out the engine's actions; raises UsageError after them if it refused the
        event (the director's mistake, shown to the director)."""
        changed = False
        refused = None
        for action in actions:
            match action:
                case e.SendInject(inject=inject, at=at):
                    self._send_inject(inject, at)
                case e.NewRun():
                    self.failure = None
                    for sending in self._sending:  # injects of the run that ended
                        sending.cancel()
                    self._stop_replay()
                    self._reset_runs()
                    self._start_replay()
                case e.Ended():
                    self._moved.set()
                    self.write_review()
                case e.ClockChanged() | e.InjectChanged() | e.ExpectationChanged():
                    pass
                case e.Refused(reason=reason):
                    refused = reason
            changed = True
        if changed:
            self._notify("state")
        if refused is not None:
            raise UsageError(refused)

    def _send_inject(self, inject: Inject, at: float) -> None:
        message_id = f"{inject.sender}.X{inject.number}".upper()[:64]
        self._inject_ids[inject.number] = message_id
        body = copy.deepcopy(inject.message)
        if inject.sender == CONTROL:
            item = InboxItem(message_id, at, CONTROL, {**body, "id": message_id})
            for unit in inject.to or tuple(self.seats):
                if unit in self.seats:
                    self.seats[unit].inbox.append(item)
            self._show(at, {**item.message, "sender": {"unit": CONTROL}})
            return
        message = envelope(self.op, self.scenario.participants[inject.sender], message_id,
                           at + self.offset, {**body, "id": message_id},
                           start_of=self.scenario.data)
        assert self._tasks is not None
        task = self._tasks.create_task(self._send_as(self.replay, inject.sender, message))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send_as(self, replay: Replay, sender: str, message: dict[str, Any]) -> None:
        """Send an inject as ``sender`` once its agent holds the operation's keys (an
        inject delivered at once may come before the channel is set up)."""
        try:
            async with asyncio.timeout(SETUP):
                while (sender not in replay.agents
                       or replay.agents[sender].agent.epoch(replay.op) is None):
                    self._moved.clear()
                    await self._moved.wait()  # set by every tick
            await replay.agents[sender].agent.send(replay.op, message)
        except Exception as exc:  # an inject that cannot go is logged, not fatal
            log.warning("inject %s from %s not sent: %s", message["id"], sender, exc)

    # --- what the traffic says -------------------------------------------------------------

    def _on_held(self, unit: str, m: Message, body: dict[str, Any]) -> None:
        seat = self.seats[unit]
        sender = body["sender"]["unit"]
        if sender == unit or not self._for_seat(seat, body):
            return
        at = self._virtual(body["sent_at"])
        seat.inbox.append(InboxItem(body["id"], at, sender, body))
        self._notify(unit)

    def _for_seat(self, seat: Seat, body: dict[str, Any]) -> bool:
        """A message a person at ``seat`` should see: addressed to the unit or its country,
        or an answer to something the seat sent."""
        names = {seat.unit, seat.country}
        for key in ("addressees", "to", "recipients"):
            for who in body.get(key) or []:
                if (who if isinstance(who, str) else who.get("unit")
                        or who.get("country")) in names:
                    return True
        return body.get("refers_to") in seat.sent

    def _ocu_read(self, message: dict[str, Any]) -> None:
        """When the OCU read each message (wall clock): how late the console shows it is
        measured from here (``opshub bench exercise``)."""
        self._read_at[message["id"]] = self.wall()

    def _read_traffic(self) -> None:
        """What the OCU read since the last tick: the console's feed, and the expectations
        it meets."""
        if self._replay is None:
            return
        log_ = self._replay.log
        new, self._log_seen = log_[self._log_seen:], len(log_)
        if not new:
            return
        now = self.wall()
        open_ = self._open_expectations()
        for message in new:
            at = self._virtual(message["sent_at"])
            sender = message["sender"]["unit"]
            self._show(at, message)
            self.records.append((at, sender, None, message))
            for met in meets(open_, sender=sender, message=message, at=at):
                opened = self.engine.expectation(met.expectation_id)
                # messages carry whole seconds: one sent in the second its inject went may
                # read as a fraction earlier than the inject
                when = max(met.at, opened.opened_at or met.at) if opened else met.at
                self.engine.handle(e.Met(now=now, expectation=met.expectation_id, by=met.by,
                                         how=met.how, at=when))
                open_ = [o for o in open_ if o.expectation.id != met.expectation_id]
        self._notify("traffic")

    def _show(self, at: float, message: dict[str, Any]) -> None:
        self.traffic.show(at, message)

    def _open_expectations(self) -> list[OpenExpectation]:
        out = []
        for r in self.engine.expectations():
            message_id = self._inject_ids.get(r.expectation.inject)
            if r.state is ExpectationState.OPEN and r.opened_at is not None and message_id:
                out.append(OpenExpectation(expectation=r.expectation,
                                           opened_at=math.floor(r.opened_at),
                                           message_id=message_id))
        return out

    def _virtual(self, rfc3339: str) -> float:
        t = dt.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
        return (t - self.exercise.start).total_seconds()

    def write_review(self) -> dict[str, Any] | None:
        """Write this run's after-action review (review.json, .md, .html, .csv) into
        ``out/run-N`` and return its data; None without ``out``."""
        if self.out is None:
            return None
        self._read_traffic()  # the last messages count
        folder = self.out / f"run-{self.engine.run}"
        data = write_review(ReviewInputs(
            name=self.exercise.name, scenario=self.scenario.code, operation=self.op,
            start=self.exercise.start, state=self.engine.state(), records=list(self.records),
            inject_ids=dict(self._inject_ids),
            seats={u: s.country for u, s in self.seats.items()}, label=self.label,
            replay=None if self._replay is None else replay_report(self._replay)), folder)
        self.reviews[self.engine.run] = folder
        self._notify("review")
        return data

    # --- the director ----------------------------------------------------------------------

    async def control(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        """Raises UsageError naming what is wrong (an unknown action, or what the engine
        refused and why)."""
        now = self.wall()
        event: e.Event
        match action:
            case "resume":
                event = e.Resume(now=now)
            case "pause":
                event = e.Pause(now=now)
            case "step":
                event = e.Step(now=now)
            case "speed":
                event = e.SetSpeed(now=now, speed=float(args.get("speed", 0)))
            case "deliver":
                event = e.DeliverNow(now=now, number=str(args.get("inject")))
            case "cancel":
                event = e.Cancel(now=now, number=str(args.get("inject")))
            case "skip":
                event = e.Skip(now=now, number=str(args.get("inject")))
            case "validate":
                event = e.Met(now=now, expectation=str(args.get("expectation")),
                              by="director", how=str(args.get("how") or "validated by hand"))
            case "end":
                event = e.End(now=now)
            case "reset":
                event = e.Reset(now=now)
            case "inject":
                event = e.AddInject(now=now, inject=self._adhoc(args))
            case "review":
                if self.write_review() is None:
                    raise UsageError("this exercise writes no review (no output folder)")
                return {"status": self.engine.status.value, "review": self._review_link()}
            case _:
                raise UsageError(f"no action {action!r}; one of resume, pause, step, speed, "
                                 f"deliver, cancel, skip, validate, end, reset, inject, "
                                 f"review")
        self._apply(self.engine.handle(event))
        self._moved.set()
        return {"status": self.engine.status.value}

    def _adhoc(self, args: dict[str, Any]) -> Inject:
        """An inject the director writes during play: a message from exercise control to
        some seats (all by default), going now. Raises UsageError naming what is
        missing."""
        subject = str(args.get("subject") or "").strip()
        body = str(args.get("body") or "").strip()
        if not subject or not body:
            raise UsageError("an ad hoc inject needs a subject and a text")
        to = tuple(args.get("to") or self.seats)
        unknown = [u for u in to if u not in self.seats]
        if unknown:
            raise UsageError(f"no seat {', '.join(unknown)} in this exercise")
        taken = {r.inject.number for r in self.engine.injects()}
        number = next(f"A{n}" for n in range(1, len(taken) + 2) if f"A{n}" not in taken)
        return Inject(number=number, at=self.engine.virtual, sender=CONTROL, to=to,
                      message={"type": "alert", "subject": subject[:200], "severity": str(
                          args.get("severity") or "info"), "body": body[:4000],
                               "marking": {"tlp": "AMBER", "nominal": False}},
                      expected_action=str(args.get("expected_action") or ""))

    # --- the seats -----------------------------------------------------------------------------

    def seat_units(self) -> dict[str, str]:
        return {s.token: s.unit for s in self.seats.values()}

    def _full(self, unit: str, message: dict[str, Any]) -> dict[str, Any]:
        """The seat's message with its envelope filled in as it would be sent now."""
        seat = self.seats[unit]
        body = {k: v for k, v in message.items() if k not in ENVELOPE}
        body.setdefault("type", "")
        message_id = f"{unit}.P{len(seat.sent) + 1:04d}".upper()
        return envelope(self.op, self.scenario.participants[unit], message_id,
                        self.engine.virtual + self.offset, body, start_of=self.scenario.data)

    def ready(self, unit: str) -> bool:
        """Whether ``unit``'s agent holds the operation's keys (the channel is set up)."""
        replay = self._replay
        return (replay is not None and unit in replay.agents
                and replay.agents[unit].agent.epoch(replay.op) is not None)

    def check(self, unit: str, message: dict[str, Any]) -> list[dict[str, str]]:
        if not self.ready(unit):
            return [{"path": "", "keyword": "ready", "message": "the operation's channel is "
                     "still being set up: check again in a moment"}]
        agent = self.replay.agents[unit].agent
        return [p.to_json() for p in agent.problems(self.op, self._full(unit, message))]

    async def send(self, unit: str, message: dict[str, Any]) -> dict[str, Any]:
        """Raises SchemaError (nothing sent) or what SecureAgent.send raises."""
        if self.engine.status is not Status.RUNNING and self.engine.status is not Status.PAUSED:
            raise UsageError(f"the exercise is {self.engine.status.value}: nothing can be sent")
        seat = self.seats[unit]
        async with asyncio.timeout(SETUP):
            while not self.ready(unit):
                self._moved.clear()
                await self._moved.wait()  # set by every tick
        full = self._full(unit, message)
        await self.replay.agents[unit].agent.send(self.op, full)
        seat.sent.append(full["id"])
        self._sent_by.setdefault(unit, {})[full["id"]] = full
        seat.last_action = f"{full['type'].replace('_', ' ')} {full['id']}"
        self._notify(unit)
        return {"id": full["id"]}

    # --- views ---------------------------------------------------------------------------------

    def _review_link(self) -> str | None:
        if self.engine.run not in self.reviews:
            return None
        return f"/director/{self.director_token}/review/review.html"

    def review_file(self, name: str) -> Path | None:
        """A file of the current run's latest review (review.html, .json, .md, .csv)."""
        folder = self.reviews.get(self.engine.run)
        if folder is None or name not in ("review.html", "review.json", "review.md",
                                          "review.csv"):
            return None
        return folder / name

    def label(self, virtual: float) -> str:
        """``D+0 H+3 M+20 (08 Dec 09:20)``; before the exercise's start, the date alone."""
        when = self.exercise.start + dt.timedelta(seconds=virtual)
        if virtual < 0:
            return f"before the start ({when:%d %b %H:%M})"
        return f"{format_offset(virtual)} ({when:%d %b %H:%M})"

    def _clock(self) -> dict[str, Any]:
        st = self.engine.state()
        virtual = st["virtual"]
        if st["status"] == Status.RUNNING.value and st["wall"] is not None:
            virtual = min(self.engine.end, virtual + (self.wall() - st["wall"]) * st["speed"])
        return {"status": st["status"], "virtual": virtual, "speed": st["speed"],
                "label": self.label(virtual), "run": st["run"], "operation": self.op}

    def _render(self, at: float, message: dict[str, Any]) -> dict[str, Any]:
        """A message as the pages show it. Rendered once: every fetch of the console
        shows the last 200, and rendering is most of a fetch's cost."""
        key = id(message)
        done = self._rendered.get(key)
        if done is None or done[0] is not message:
            view = {"id": message.get("id", ""), "at_label": self.label(at),
                    "sender": message.get("sender", {}).get("unit", ""),
                    "type": str(message.get("type", "")).replace("_", " "),
                    "headline": headline(message) or str(message.get("type", "")),
                    "html": render_html(self.catalog, message)}
            if len(self._rendered) > 4 * TRAFFIC_SHOWN:
                self._rendered.clear()
            done = self._rendered[key] = (message, view)
        return dict(done[1])

    def state(self) -> dict[str, Any]:
        st = self.engine.state()
        open_by_seat: dict[str, int] = {}
        expectations = []
        for x in st["expectations"]:
            record = self.engine.expectation(x["id"])
            assert record is not None
            exp = record.expectation
            if record.state is ExpectationState.OPEN:
                open_by_seat[exp.seat] = open_by_seat.get(exp.seat, 0) + 1
            expectations.append({
                "id": exp.id, "seat": exp.seat, "action": exp.action.value.replace("_", " "),
                "description": exp.description, "state": record.state.value,
                "deadline_label": "" if record.deadline is None else self.label(record.deadline),
                "took_label": "" if record.taken is None else duration(record.taken),
                "how": record.how})
        totals = self._replay.tally.totals() if self._replay is not None else {}
        return {
            "title": self.exercise.name, "clock": self._clock(), "review": self._review_link(),
            "failure": self.failure,
            "injects": [{"number": r.inject.number, "at_label": self.label(r.inject.at),
                         "sender": r.inject.sender, "to": list(r.inject.to),
                         "headline": _inject_headline(r.inject), "state": r.state.value}
                        for r in self.engine.injects()],
            "expectations": expectations,
            "score": st["score"],
            "seats": [{"unit": s.unit, "link": f"{self.base_url}/seat/{s.token}",
                       "connected": self.connected(s.unit),
                       "sent": len(s.sent), "last_action": s.last_action,
                       "open": open_by_seat.get(s.unit, 0)} for s in self.seats.values()],
            "tally": {k: int(totals.get(k, 0)) for k in ("messages", "reports", "arrests",
                                                        "hits")},
            "traffic": [{**self._render(at, m), "seq": seq,
                         "read_at": self._read_at.get(m.get("id", ""))}
                        for seq, at, m in self.traffic],
        }

    def seat_state(self, unit: str) -> dict[str, Any]:
        seat = self.seats[unit]
        inbox = []
        for item in sorted(seat.inbox, key=lambda i: i.at, reverse=True):  # newest first
            view = self._render(item.at, item.message)
            view["sender"] = item.sender
            view["reply"] = self._reply(item.message)
            view["thread"] = self._thread(seat, item.message)
            inbox.append(view)
        open_ = [{"description": r.expectation.description or r.expectation.action.value,
                  "deadline_label": "" if r.deadline is None else self.label(r.deadline)}
                 for r in self.engine.expectations()
                 if r.expectation.seat == unit and r.state is ExpectationState.OPEN]
        return {"unit": unit, "title": self.exercise.name, "clock": self._clock(),
                "inbox": inbox, "types": list(WRITABLE), "templates": _templates(),
                "open": open_}

    def _thread(self, seat: Seat, message: dict[str, Any]) -> list[str]:
        """What ``message`` refers to, oldest first, as far as the seat has seen it: the
        headlines of the chain of ``refers_to``."""
        known = {i.id: i.message for i in seat.inbox}
        known.update(self._sent_by.get(seat.unit, {}))
        chain: list[str] = []
        ref = message.get("refers_to")
        while isinstance(ref, str) and ref in known and len(chain) < 10:
            earlier = known[ref]
            chain.insert(0, headline(earlier) or ref)
            ref = earlier.get("refers_to")
        if isinstance(ref, str) and (not chain or ref not in known):
            chain.insert(0, ref)
        return chain

    @staticmethod
    def _reply(message: dict[str, Any]) -> dict[str, Any] | None:
        kind = {"warning": "feedback", "request_for_information": "rfi_response"}.get(
            str(message.get("type")))
        if kind is None or not message.get("id"):
            return None
        return {"type": kind, "content": {**_templates()[kind], "refers_to": message["id"]}}

    # --- live updates ----------------------------------------------------------------------------

    def changes(self, who: str = "") -> asyncio.Queue[str]:
        """A queue of change notices for a page of ``who`` (a seat's unit, or "" for the
        director); a seat with a page listening counts as connected."""
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=64)
        self._listeners.add(queue)
        self._pages[id(queue)] = who
        if who in self.seats:
            self._notify("seats")
        return queue

    def forget(self, queue: asyncio.Queue[str]) -> None:
        self._listeners.discard(queue)
        who = self._pages.pop(id(queue), "")
        if who in self.seats:
            self._notify("seats")

    def connected(self, unit: str) -> bool:
        return unit in self._pages.values()

    def _notify(self, what: str) -> None:
        for queue in self._listeners:
            if not queue.full():  # a page that is behind fetches everything anyway
                queue.put_nowait(what)


def _inject_headline(inject: Inject) -> str:
    m = inject.message
    kind = str(m.get("type", "")).replace("_", " ")
    what = m.get("subject") or m.get("title") or m.get("summary") or ""
    if isinstance(what, dict):  # a warning's subject: {kind, description}
        what = what.get("description", "")
    return f"{kind}: {what}" if what else kind


_TEMPLATES: dict[str, dict[str, Any]] = {}


def _templates() -> dict[str, dict[str, Any]]:
    """The form's starting content of each writable type: a valid example's body."""
    if not _TEMPLATES:
        for kind, name in WRITABLE.items():
            example = load_file(SCHEMA_DIR / "examples" / "valid" / name)
            # the example's references name messages of another operation: left out
            _TEMPLATES[kind] = {k: v for k, v in example.items()
                                if k not in ENVELOPE and k not in ("refers_to", "seizure_ref")}
    return _TEMPLATES


def links(run: ExerciseRun, base: str) -> dict[str, str]:
    """The director's and each seat's link under ``base`` (http://host:port)."""
    out = {"director": f"{base}/director/{run.director_token}"}
    out.update({s.unit: f"{base}/seat/{s.token}" for s in run.seats.values()})
    return out

