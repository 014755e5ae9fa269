"""The after-action review of an exercise. A real ExerciseEngine plays the sample's injects
(seeds/exercises/cocair-v-tabletop.yaml) through events; the seats answer with real
messages (copies of schemas/examples/valid, re-addressed and checked with the catalog) that
meet expectations as the runtime's rules find them; the review's JSON, CSV, markdown and
HTML then say what each seat did."""

from __future__ import annotations

import copy
import csv
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from client.exercise.engine import (
    End,
    Event,
    ExerciseEngine,
    Met,
    Resume,
    SendInject,
    Tick,
)
from client.exercise.exercise_file import load
from client.exercise.expectations import OpenExpectation, meets
from client.exercise.model import CONTROL, ExpectationState, Inject
from client.exercise.review import (
    CSV_COLUMNS,
    ReviewInputs,
    build_review,
    render_markdown,
    replay_report,
    write_review,
)
from client.exercise.times import format_offset
from client.messages import default_catalog
from client.messages.catalog import SCHEMA_DIR
from client.messages.checks import problems
from client.messages.content import load_file
from client.replay.engine import Replay
from client.replay.scenario import envelope
from protocol.errors import UsageError

EXERCISE = load(Path(__file__).resolve().parents[3] / "seeds" / "exercises"
                / "cocair-v-tabletop.yaml")
SCENARIO = EXERCISE.scenario
VALID = SCHEMA_DIR / "examples" / "valid"
OPERATION = "COCAIR-V.R1"
LOME, DESK = "TG-JAITF-LFW", "INTERPOL-DESK"
#: the ids the runtime gives the injects' messages (ExerciseRun._send_inject)
WARNING_2, REQUEST_3, WARNING_4 = "OCU-WCO.X2", "GH-JAITF-ACC.X3", "RILO-WA.X4"


def label(virtual: float) -> str:
    """As ExerciseRun.label shows a virtual time."""
    when = EXERCISE.start + dt.timedelta(seconds=virtual)
    return f"{format_offset(virtual)} ({when:%d %b %H:%M})"


class Drill:
    """The runtime's part, in memory: the engine on a clock at speed 1 (wall seconds are
    virtual seconds), injects sent under the runtime's ids, every message the OCU reads
    kept as a traffic record and in the replay's tally, and the expectation rules' finds
    fed back to the engine as Met events."""

    def __init__(self) -> None:
        self.engine = ExerciseEngine(EXERCISE.injects, end=EXERCISE.end, speed=1.0)
        self.records: list[tuple[float, str, list[str] | None, dict[str, Any]]] = []
        self.inject_ids: dict[str, str] = {}
        self.replay = Replay(SCENARIO, operation_id=OPERATION, held=frozenset(EXERCISE.seats))
        self.offset = (EXERCISE.start - SCENARIO.t0).total_seconds()

    def handle(self, event: Event) -> None:
        went = [(a.inject, a.at) for a in self.engine.handle(event) if isinstance(a, SendInject)]
        for inject, at in went:
            self._send_inject(inject, at)

    def _send_inject(self, inject: Inject, at: float) -> None:
        message_id = f"{inject.sender}.X{inject.number}".upper()
        self.inject_ids[inject.number] = message_id
        if inject.sender == CONTROL:  # handed to the seats: the OCU never reads it
            return
        body = {**copy.deepcopy(inject.message), "id": message_id}
        self.read(at, envelope(OPERATION, SCENARIO.participants[inject.sender], message_id,
                               at + self.offset, body, start_of=SCENARIO.data))

    def read(self, at: float, message: dict[str, Any]) -> None:
        """The OCU reads ``message`` at virtual time ``at``; the rules meet what it meets."""
        assert problems(default_catalog(), message) == []
        self.handle(Tick(now=at))
        sender = message["sender"]["unit"]
        self.records.append((at, sender, None, message))
        self.replay.record(message)
        opened = [OpenExpectation(expectation=r.expectation, opened_at=r.opened_at,
                                  message_id=self.inject_ids[r.expectation.inject])
                  for r in self.engine.expectations()
                  if r.state is ExpectationState.OPEN and r.opened_at is not None]
        for met in meets(opened, sender=sender, message=message, at=at):
            self.handle(Met(now=at, expectation=met.expectation_id, by=met.by, how=met.how,
                            at=met.at))

    def send(self, at: float, unit: str, example: str, id_: str, **fields: Any) -> None:
        """Seat ``unit`` sends a copy of ``example`` as ``id_`` at ``at``, with ``fields``
        set (None removes one)."""
        m: dict[str, Any] = copy.deepcopy(load_file(VALID / example))
        m.update(id=id_, operation=OPERATION, sender=SCENARIO.participants[unit].party(),
                 sent_at=EXERCISE.when(at))
        for key, value in fields.items():
            if value is None:
                m.pop(key, None)
            else:
                m[key] = value
        self.read(at, m)

    def inputs(self, replay: Mapping[str, Any] | None = None) -> ReviewInputs:
        return ReviewInputs(
            name=EXERCISE.name, scenario=SCENARIO.code, operation=OPERATION,
            start=EXERCISE.start, state=self.engine.state(), records=self.records,
            inject_ids=self.inject_ids,
            seats={u: SCENARIO.participants[u].country for u in EXERCISE.seats},
            label=label, replay=replay)


def _play(drill: Drill, *, end: bool = True) -> Drill:
    """The sample played to H+4 (to H+1 M+15 without ``end``): Lomé confirms by phone and
    answers warning 2 in 45 min; the desk leaves its STARTEX check and answers Accra's
    request late, which the director marks; Lomé reports the seizure on warning 4 in 30
    min but never answers the warning; then the director ends it."""
    drill.handle(Resume(now=0.0))
    drill.handle(Tick(now=1800.0))  # injects 1 (M+5) and 2 (M+30) go
    drill.handle(Met(now=1900.0, expectation="1.1", by="director", how="confirmed by phone"))
    drill.handle(Tick(now=2200.0))  # 1.2 missed at M+35
    drill.send(4500.0, LOME, "feedback-cocair-seized.json", "TG-JAITF-LFW.P0001",
               refers_to=WARNING_2, seizure_ref=None, controlled_at=EXERCISE.when(4000.0))
    if not end:
        return drill
    drill.handle(Tick(now=9100.0))  # inject 3 at H+1 M+30; 3.1 missed at H+2 M+30
    drill.send(9600.0, DESK, "rfi-response-multiple-purchases.json", "INTERPOL-DESK.P0001",
               refers_to=REQUEST_3, responded_by=None)
    # the rules only meet open expectations: the director marks the late answer by hand
    drill.handle(Met(now=9700.0, expectation="3.1", by="director", how="answered late"))
    drill.handle(Tick(now=10800.0))  # inject 4 at H+3
    report = copy.deepcopy(load_file(VALID / "seizure-cocair-airport-cocaine.json"))
    event = {**report["event"], "when": EXERCISE.when(12000.0)}
    event["detection"] = {**event["detection"], "warning_ref": WARNING_4}
    drill.send(12600.0, LOME, "seizure-cocair-airport-cocaine.json", "TG-JAITF-LFW.P0002",
               event=event)
    drill.handle(End(now=14400.0))
    return drill


@pytest.fixture(scope="module")
def drill() -> Drill:
    return _play(Drill())


@pytest.fixture(scope="module")
def written(drill: Drill, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("review")
    return write_review(drill.inputs(replay_report(drill.replay)), out), out


def _expectations(review: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {x["id"]: x for x in review["expectations"]}


def _seat(review: Mapping[str, Any], unit: str) -> dict[str, Any]:
    seats: list[dict[str, Any]] = [s for s in review["seats"] if s["unit"] == unit]
    assert len(seats) == 1
    return seats[0]


# -- the data ------------------------------------------------------------------------------


def test_review_each_expectation_met_or_missed_with_its_time(
        written: tuple[dict[str, Any], Path]) -> None:
    """Each expectation carries its outcome and how long it took: met on time, missed,
    missed then met late (with the time), and void for injects that never went."""
    got = {i: (x["state"], x["took"], x["late"])
           for i, x in _expectations(written[0]).items()}
    assert got == {"1.1": ("met", 1600.0, False), "1.2": ("missed", None, False),
                   "2.1": ("met", 2700.0, False), "3.1": ("missed", 4300.0, True),
                   "4.1": ("met", 1800.0, False), "4.2": ("missed", None, False),
                   "4.3": ("missed", None, False), "5.1": ("void", None, False),
                   "6.1": ("void", None, False)}


def test_review_expectation_says_by_whom_and_how(written: tuple[dict[str, Any], Path]) -> None:
    """A met expectation names the seat or the director that met it and the rule or words."""
    x = _expectations(written[0])
    assert (x["1.1"]["by"], x["1.1"]["how"]) == ("director", "confirmed by phone")
    assert (x["2.1"]["by"], x["2.1"]["took_label"]) == (LOME, "45 min")
    assert x["2.1"]["how"] == f"feedback TG-JAITF-LFW.P0001 answers warning {WARNING_2}"


def test_review_seat_lists_the_warning_it_left_unanswered(
        written: tuple[dict[str, Any], Path]) -> None:
    """Lomé received both warnings (one addressed to its country) and answered only the
    first: the second is listed as unanswered, with when and from whom."""
    lome = _seat(written[0], LOME)
    assert lome["warnings"] == [WARNING_2, WARNING_4]
    assert lome["unanswered_warnings"] == [
        {"id": WARNING_4, "at": 10800.0, "at_label": label(10800.0), "from": "RILO-WA"}]
    assert lome["unanswered_requests"] == []


def test_review_seat_response_times(written: tuple[dict[str, Any], Path]) -> None:
    """Each seat's answers carry the time from the warning or request to the answer."""
    review = written[0]
    times = {s["unit"]: [(r["kind"], r["asked"], r["took"]) for r in s["responses"]]
             for s in review["seats"]}
    assert times == {LOME: [("feedback", WARNING_2, 2700.0)],
                     DESK: [("rfi_response", REQUEST_3, 4200.0)]}
    assert _seat(review, DESK)["response_minutes"] == {"count": 1, "median": 70.0, "max": 70.0}


def test_review_score_in_all_and_per_seat(written: tuple[dict[str, Any], Path]) -> None:
    """The score is the engine's, and each seat's is the sum of its own expectations."""
    review = written[0]
    assert (review["score"]["points"], review["score"]["possible"]) == (6, 14)
    assert (review["score"]["met"], review["score"]["missed"], review["score"]["void"]) == (
        3, 4, 2)
    per_seat = {s["unit"]: (s["score"]["points"], s["score"]["possible"])
                for s in review["seats"]}
    assert per_seat == {LOME: (6, 8), DESK: (0, 6)}


def test_review_inject_timeline_shows_what_referred_to_each(
        written: tuple[dict[str, Any], Path]) -> None:
    """Each delivered inject lists the messages that name its message, by refers_to or by
    another reference (a seizure report's warning_ref); an EXCON inject's has none."""
    followed = {i["number"]: [(f["id"], f["reference"]) for f in i["followed_by"]]
                for i in written[0]["injects"]}
    assert followed == {"1": [], "2": [("TG-JAITF-LFW.P0001", "/refers_to")],
                        "3": [("INTERPOL-DESK.P0001", "/refers_to")],
                        "4": [("TG-JAITF-LFW.P0002", "/event/detection/warning_ref")],
                        "5": [], "6": []}


def test_review_inject_timeline_shows_the_expectations_it_opened(
        written: tuple[dict[str, Any], Path]) -> None:
    """Each inject lists the expectations it opened with their outcome; one that never
    went has no message id and void expectations."""
    injects = {i["number"]: i for i in written[0]["injects"]}
    assert [(x["id"], x["state"]) for x in injects["4"]["expectations"]] == [
        ("4.1", "met"), ("4.2", "missed"), ("4.3", "missed")]
    assert (injects["4"]["state"], injects["4"]["message_id"]) == ("delivered", WARNING_4)
    assert (injects["6"]["state"], injects["6"]["message_id"]) == ("pending", None)
    assert [x["state"] for x in injects["6"]["expectations"]] == ["void"]


def test_review_holds_the_exercise(written: tuple[dict[str, Any], Path]) -> None:
    """The exercise part names the exercise, its scenario, run, operation, seats and times."""
    ex = written[0]["exercise"]
    assert (ex["name"], ex["scenario"], ex["operation"], ex["run"]) == (
        EXERCISE.name, "COCAIR-V", OPERATION, 1)
    assert (ex["start"], ex["end"]) == ("2015-12-08T06:00:00Z", "2015-12-08T18:00:00Z")
    assert ex["ended"]["when"] == "2015-12-08T10:00:00Z"
    assert ex["seats"] == [{"unit": LOME, "country": "TG"}, {"unit": DESK, "country": "FR"}]


def test_review_holds_the_replay_report_of_the_run(
        drill: Drill, written: tuple[dict[str, Any], Path]) -> None:
    """The replay's report is the one client/replay/aar.py builds from the OCU's tally:
    the same totals and checks, marked partial."""
    replay = written[0]["replay"]
    assert replay["totals"] == drill.replay.tally.totals()
    assert replay["totals"]["messages"] == len(drill.records) == 6
    assert [c["metric"] for c in replay["checks"]] == [r["metric"] for r in SCENARIO.results]
    assert replay["partial"] is True


def test_review_seats_answer_for_the_exercise_window_only(drill: Drill) -> None:
    """Warnings the replay played before the exercise's start or after its end are not
    held against a seat, nor counted as what followed an inject."""
    inputs = drill.inputs()
    before, after = copy.deepcopy(drill.records[0]), copy.deepcopy(drill.records[0])
    before[3]["id"], after[3]["id"] = "OCU-WCO-W-0001", "OCU-WCO-W-0099"
    records = [(-3600.0, *before[1:]), *drill.records, (14500.0, *after[1:])]
    review = build_review(replace(inputs, records=records))
    assert _seat(review, LOME)["warnings"] == [WARNING_2, WARNING_4]
    assert build_review(inputs)["seats"] == review["seats"]


# -- the files -----------------------------------------------------------------------------


def test_review_csv_has_one_row_per_expectation(written: tuple[dict[str, Any], Path]) -> None:
    """review.csv parses back to one row per expectation, with its outcome, times and score."""
    with (written[1] / "review.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(CSV_COLUMNS)
    assert [r["id"] for r in rows] == ["1.1", "1.2", "2.1", "3.1", "4.1", "4.2", "4.3",
                                       "5.1", "6.1"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["2.1"] | {"description": "", "how": ""} == {
        "id": "2.1", "inject": "2", "seat": LOME, "action": "feedback", "description": "",
        "state": "met", "opened at": label(1800.0), "deadline": label(9000.0),
        "met at": label(4500.0), "took (min)": "45", "by": LOME, "how": "", "score": "2",
        "points": "2"}
    assert (by_id["3.1"]["state"], by_id["3.1"]["met at"], by_id["3.1"]["points"]) == (
        "missed", label(9700.0), "0")


def test_review_html_is_one_offline_page_with_a_chart(
        written: tuple[dict[str, Any], Path]) -> None:
    """review.html fetches nothing (no http(s) URL in src or href, no script) and draws
    inline SVG charts."""
    html = (written[1] / "review.html").read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert "<script" not in html.lower()
    assert '<svg class="chart"' in html
    assert "Points per seat" in html
    assert "Published figures" in html  # the replay's report, inside the same page


def test_review_markdown_lists_each_seat(written: tuple[dict[str, Any], Path]) -> None:
    """review.md has a section per seat saying what it left unanswered."""
    md = (written[1] / "review.md").read_text(encoding="utf-8")
    assert "### TG-JAITF-LFW (TG)" in md
    assert "### INTERPOL-DESK (FR)" in md
    assert f"- Warning {WARNING_4} from RILO-WA" in md


def test_review_json_is_what_write_review_returns(written: tuple[dict[str, Any], Path]
                                                  ) -> None:
    """review.json holds the same data write_review returns."""
    import json

    assert json.loads((written[1] / "review.json").read_text(encoding="utf-8")) == written[0]


# -- on demand, and misuse -----------------------------------------------------------------


def test_review_on_demand_shows_open_expectations() -> None:
    """A review written while the exercise runs shows what is still open, with its
    deadline, and no replay report when none is given."""
    review = build_review(_play(Drill(), end=False).inputs())
    x = _expectations(review)
    assert (x["2.1"]["state"], x["4.1"]["state"]) == ("met", "pending")
    assert review["exercise"]["ended"] is None
    assert review["replay"] is None
    md = render_markdown(review)
    assert "Written while the exercise was running" in md
    assert "pending" in md


def test_review_inputs_refuse_a_state_that_is_not_the_engines(drill: Drill) -> None:
    """ReviewInputs names the keys missing from a state that ExerciseEngine.state() did not
    make."""
    with pytest.raises(UsageError, match="state lacks injects, expectations"):
        ReviewInputs(name="x", scenario="x", operation="X", start=EXERCISE.start,
                     state={"run": 1, "status": "ended", "end": 1.0, "ended": None,
                            "score": {}}, records=[], inject_ids={}, seats={},
                     label=label)
