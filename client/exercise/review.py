"""The exercise's after-action review: each expectation met or missed, how long it took, by
whom and how; per seat, the warnings and requests it left unanswered and its response
times; the inject timeline with what followed each; the score; and the replay's report of
the operation's traffic. Written as review.json, review.md, review.html (one page that
works offline, inline SVG charts) and review.csv (one row per expectation).

Pure: built from plain inputs (``ReviewInputs``), no clock, no event loop, no network;
only ``write_review`` touches the disk. The replay's part is the dict client/replay/aar.py
builds (``replay_report``), shown with client/replay/report.py's sections, tables and
charts, never rebuilt here; the exercise's own sections use the same building blocks
(report.py's private ones included, rather than copies), so both halves look alike.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from client.exercise.expectations import SeatReview, TrafficRecord, reference_to, review
from client.messages import default_catalog
from client.messages.summary import summarise
from client.messages.values import enum_words, utc_minute
from client.replay import aar
from client.replay.report import (
    Chart,
    Section,
    Table,
    fmt_count,
    fmt_measure,
    html_page,
    markdown_page,
    partial_notice,
    report_heading,
    report_sections,
    verdict,
)
from client.replay.report_svg import grouped_hbar_chart, hbar_chart
from protocol.errors import UsageError

if TYPE_CHECKING:
    from client.replay.engine import Replay

#: One message of the traffic, as ``ExerciseRun.records`` keeps it: virtual seconds, the
#: sender unit, the recipients (None: the message names them), the message.
Record = tuple[float, str, Sequence[str] | None, Mapping[str, Any]]

#: What ``ExerciseEngine.state()`` holds that the review reads.
STATE_KEYS = ("run", "status", "end", "ended", "injects", "expectations", "score")

CSV_COLUMNS = ("id", "inject", "seat", "action", "description", "state", "opened at",
               "deadline", "met at", "took (min)", "by", "how", "score", "points")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewInputs:
    """What the review is built from, as ``ExerciseRun`` holds it: ``state`` is
    ``ExerciseEngine.state()``; ``records`` the traffic (``ExerciseRun.records``);
    ``inject_ids`` maps an inject's number to the id of the message it sent; ``seats`` maps
    a seat's unit to its country; ``label`` shows virtual seconds to people
    (``ExerciseRun.label``); ``replay`` is the replay's report of the run
    (``replay_report``), None when no traffic ran. ``start`` is the exercise's time 0.
    Raises UsageError for a ``state`` without the engine's keys, a naive ``start`` or a
    ``replay`` that is not a replay report."""

    name: str
    scenario: str  # the scenario's code, or its path
    operation: str  # the run's operation id on the hub
    start: dt.datetime
    state: Mapping[str, Any]
    records: Sequence[Record]
    inject_ids: Mapping[str, str]
    seats: Mapping[str, str]
    label: Callable[[float], str]
    replay: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if missing := [k for k in STATE_KEYS if k not in self.state]:
            raise UsageError(f"state lacks {', '.join(missing)}: pass ExerciseEngine.state()")
        if self.start.tzinfo is None:
            raise UsageError(f"start {self.start.isoformat()} has no time zone")
        if self.replay is not None and not {"operation", "messages"} <= self.replay.keys():
            raise UsageError("replay lacks operation or messages: pass replay_report(replay)")


def replay_report(replay: Replay, *, partial: bool = True) -> dict[str, Any]:
    """The replay's report of the traffic so far, built as client/replay/run.py ``write``
    builds it (client/replay/aar.py over the OCU's tally and log), without writing it.
    ``partial``: the replay had not played the whole operation (at an exercise's end, it
    has not)."""
    speed = ("the exercise's clock" if replay.pace is not None
             else "max" if replay.speed is None else str(replay.speed))
    report = aar.build(replay.scenario, replay.tally, replay.log, seed=replay.seed,
                       speed=speed, extra=replay.outcome())
    report["partial"] = partial
    if partial:
        report["stopped_after"] = {"sent": replay.sent,
                                   "planned": replay.plan.expected_messages}
    return report


def write_review(inputs: ReviewInputs, out: Path) -> dict[str, Any]:
    """Build the review and write review.json, review.md, review.html and review.csv into
    ``out`` (created if missing), each replaced whole so that a page being served is never
    half-written. Returns the review. Raises OSError if a file cannot be written."""
    data = build_review(inputs)
    texts = {"review.json": json.dumps(data, indent=2, ensure_ascii=False) + "\n",
             "review.md": render_markdown(data), "review.html": render_html(data),
             "review.csv": render_csv(data)}
    out.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8", newline="")
        tmp.replace(out / name)
    return data


# -- the data -----------------------------------------------------------------------------


def build_review(inputs: ReviewInputs) -> dict[str, Any]:
    """The review as plain JSON-able data; every time also carries its label for people,
    so that the renderings need nothing else. The seats' part and the inject timeline
    read the traffic from the exercise's start to its end; the replay's report covers
    all of it."""
    st, label = inputs.state, inputs.label
    expectations = [_expectation(x, label) for x in st["expectations"]]
    # The replay plays the operation's days before the exercise at once, and runs on after
    # its end: the seats answer for the exercise's own window only.
    ended = st["ended"]
    until = math.inf if ended is None else ended["at"]
    records = sorted((r for r in map(TrafficRecord._make, inputs.records)
                      if 0 <= r.at <= until), key=lambda r: r.at)
    # a seat an expectation names but nobody held (--seat changed the seats) still counts
    seats = {**inputs.seats, **{x["seat"]: "" for x in expectations
                                if x["seat"] not in inputs.seats}}
    answers = review(records, seats, countries=seats)
    words = enum_words(default_catalog())
    asked: dict[str, TrafficRecord] = {}  # by id: its first delivery, as ``review`` reads
    for r in records:
        asked.setdefault(str(r.message.get("id")), r)
    return {
        "exercise": {
            "name": inputs.name, "scenario": inputs.scenario, "operation": inputs.operation,
            "run": st["run"], "status": st["status"], "start": _rfc3339(inputs.start, 0),
            "end": _rfc3339(inputs.start, st["end"]), "end_label": label(st["end"]),
            "ended": None if ended is None else {
                **ended, "at_label": label(ended["at"]),
                "when": _rfc3339(inputs.start, ended["at"])},
            "seats": [{"unit": u, "country": c} for u, c in seats.items()]},
        "score": {**st["score"], **_counts(expectations)},
        "seats": [_seat(unit, country, answers[unit], expectations, records, asked, label)
                  for unit, country in seats.items()],
        "expectations": expectations,
        "injects": [_inject(i, inputs.inject_ids.get(i["number"]), expectations, records,
                            label, words) for i in st["injects"]],
        "replay": None if inputs.replay is None else dict(inputs.replay),
    }


def _rfc3339(start: dt.datetime, seconds: float) -> str:
    return (start + dt.timedelta(seconds=seconds)).astimezone(dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def _labelled(label: Callable[[float], str], seconds: float | None) -> str:
    return "" if seconds is None else label(seconds)


def duration(seconds: float | None) -> str:
    """``0 min``, ``45 min``, ``2 h 05 min``: how long something took; "" for None."""
    if seconds is None:
        return ""
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _expectation(x: Mapping[str, Any], label: Callable[[float], str]) -> dict[str, Any]:
    took = x["taken"]
    return {"id": x["id"], "inject": x["inject"], "seat": x["seat"], "action": x["action"],
            "target": x["target"], "description": x["description"], "state": x["state"],
            "late": x["late"], "within": x["within"],
            "opened_at": x["opened_at"], "opened_label": _labelled(label, x["opened_at"]),
            "deadline": x["deadline"], "deadline_label": _labelled(label, x["deadline"]),
            "met_at": x["met_at"], "met_label": _labelled(label, x["met_at"]),
            "took": took, "took_label": duration(took), "by": x["by"], "how": x["how"],
            "score": x["score"], "points": x["points"]}


def _counts(expectations: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """How many expectations are in each state, and how many in all."""
    counts = {s: 0 for s in ("met", "missed", "open", "pending", "void")}
    for x in expectations:
        counts[x["state"]] = counts.get(x["state"], 0) + 1
    return {**counts, "expectations": len(expectations)}


def _seat(unit: str, country: str, answers: SeatReview, expectations: Sequence[Mapping[str, Any]],
          records: Sequence[TrafficRecord], asked: Mapping[str, TrafficRecord],
          label: Callable[[float], str]) -> dict[str, Any]:
    mine = [x for x in expectations if x["seat"] == unit]

    def unanswered(ids: Sequence[str]) -> list[dict[str, Any]]:
        return [{"id": i, "at": asked[i].at, "at_label": label(asked[i].at),
                 "from": asked[i].sender} for i in ids]

    minutes = [r.took / 60 for r in answers.responses]
    return {
        "unit": unit, "country": country,
        "sent": sum(1 for r in records if r.sender == unit),
        "score": {"points": sum(x["points"] for x in mine),
                  "possible": sum(x["score"] for x in mine), **_counts(mine)},
        "expectations": [x["id"] for x in mine],
        "warnings": list(answers.warnings),
        "unanswered_warnings": unanswered(answers.unanswered_warnings),
        "requests": list(answers.requests),
        "unanswered_requests": unanswered(answers.unanswered_requests),
        "responses": [{"kind": r.kind, "asked": r.asked, "answer": r.answer,
                       "asked_at": r.asked_at, "asked_label": label(r.asked_at),
                       "answered_at": r.answered_at, "answered_label": label(r.answered_at),
                       "took": r.took, "took_label": duration(r.took)}
                      for r in answers.responses],
        "response_minutes": {
            "count": len(minutes),
            "median": round(statistics.median(minutes), 1) if minutes else None,
            "max": round(max(minutes), 1) if minutes else None},
    }


def _inject(i: Mapping[str, Any], message_id: str | None,
            expectations: Sequence[Mapping[str, Any]], records: Sequence[TrafficRecord],
            label: Callable[[float], str], words: frozenset[str]) -> dict[str, Any]:
    message = i["message"]
    followed = [] if message_id is None else [
        {"at": r.at, "at_label": label(r.at), "from": r.sender,
         "type": str(r.message.get("type", "")), "id": str(r.message.get("id", "")),
         "reference": pointer, "summary": summarise(r.message, words)}
        for r in records if (pointer := reference_to(r.message, message_id)) is not None]
    return {
        "number": i["number"], "at": i["at"], "at_label": label(i["at"]),
        "sender": i["sender"], "to": list(i["to"]), "type": str(message.get("type", "")),
        "summary": summarise(message, words), "state": i["state"],
        "delivered_at": i["delivered_at"],
        "delivered_label": _labelled(label, i["delivered_at"]), "adhoc": i["adhoc"],
        "message_id": message_id, "expected_action": i["expected_action"],
        "notes": i["notes"], "followed_by": followed,
        "expectations": [x for x in expectations if x["id"] in i["expectations"]],
    }


# -- sections, shared by markdown and HTML -------------------------------------------------


def outcome(x: Mapping[str, Any]) -> str:
    """An expectation's outcome in words: "met in 45 min", "missed (met late, 1 h 10
    min)", "open until ...", "void", "pending"."""
    match x["state"]:
        case "met":
            return f"met in {x['took_label']}"
        case "missed":
            return f"missed (met late, {x['took_label']})" if x["late"] else "missed"
        case "open":
            return f"open until {x['deadline_label']}"
        case _:
            return str(x["state"])


def _count(n: int, thing: str) -> str:
    return f"{fmt_count(n)} {thing}{'s' * (n != 1)}"


def _score_line(score: Mapping[str, Any]) -> str:
    return (f"Score: {fmt_count(score['points'])} of {fmt_count(score['possible'])} points; "
            f"{score['met']} of {score['expectations']} expectations met, "
            f"{score['missed']} missed, {score['open']} open, "
            f"{score['void'] + score['pending']} void or pending")


def _heading(review_: Mapping[str, Any]) -> tuple[str, list[str]]:
    ex = review_["exercise"]
    lines = [f"Scenario {ex['scenario']} · operation {ex['operation']}, run {ex['run']} · "
             f"from {utc_minute(ex['start'])} to {ex['end_label']}",
             "Seats: " + ", ".join(f"{s['unit']} ({s['country']})" if s["country"]
                                   else s["unit"] for s in ex["seats"])]
    if ex["ended"] is not None:
        who = "by the director" if ex["ended"]["by_director"] else "at its end time"
        lines.append(f"Ended {who} at {ex['ended']['at_label']}")
    else:
        lines.append(f"Written while the exercise was {ex['status']}: open expectations "
                     f"may still be met")
    return f"{ex['name']} — after-action review", lines


def _exercise_sections(review_: Mapping[str, Any]) -> Iterator[Section]:
    seats, expectations = review_["seats"], review_["expectations"]
    caption = "Points per seat"
    groups = [(s["unit"], [float(s["score"]["points"]), float(s["score"]["possible"])])
              for s in seats]
    charts = [Chart(caption, partial(grouped_hbar_chart, caption, ["points", "possible"],
                                     groups, fmt_count))] if groups else []
    opened = [(f"{x['id']} {x['seat']}", [None if x["took"] is None else x["took"] / 60,
                                           x["within"] / 60])
              for x in expectations if x["opened_at"] is not None]
    caption = "Time taken and time allowed per expectation (minutes)"
    if opened:
        charts.append(Chart(caption, partial(grouped_hbar_chart, caption,
                                             ["took", "allowed"], opened, fmt_measure)))
    rows = [[s["unit"], s["country"] or "—", fmt_count(s["sent"]),
             *(fmt_count(s["score"][k]) for k in ("met", "missed", "open", "void",
                                                  "points", "possible"))] for s in seats]
    yield Section("Score", charts=charts,
                  tables=[Table(["Seat", "Country", "Sent", "Met", "Missed", "Open", "Void",
                                 "Points", "Possible"], [False, False, *[True] * 7], rows)])
    yield Section("Seats")
    by_id = {x["id"]: x for x in expectations}
    for s in seats:
        yield _seat_section(s, [by_id[i] for i in s["expectations"]])
    yield Section("Injects", paragraphs=["Each inject as it went, what referred to its "
                                         "message, and the expectations it opened."])
    for i in review_["injects"]:
        yield _inject_section(i)


def _expectation_table(expectations: Sequence[Mapping[str, Any]]) -> Table:
    rows, classes = [], []
    for x in expectations:
        rows.append([x["id"], x["inject"], x["action"].replace("_", " "),
                     x["description"] or "—", outcome(x), x["deadline_label"] or "—",
                     x["by"] or "—", x["how"] or "—", f"{x['points']} / {x['score']}"])
        classes.append({"met": "ok", "missed": "fail"}.get(x["state"], ""))
    return Table(["Id", "Inject", "Action", "Expected", "Outcome", "Deadline", "By", "How",
                  "Points"], [False, False, False, False, False, False, False, False, True],
                 rows, classes)


def _seat_section(s: Mapping[str, Any], expectations: Sequence[Mapping[str, Any]]
                  ) -> Section:
    score, times = s["score"], s["response_minutes"]
    said = [f"Sent {_count(s['sent'], 'message')}; {fmt_count(score['points'])} of "
            f"{fmt_count(score['possible'])} points, {score['met']} of "
            f"{_count(score['expectations'], 'expectation')} met."]
    if times["count"]:
        said.append(f"Response times ({times['count']} answered): median "
                    f"{fmt_measure(times['median'])} min, longest {fmt_measure(times['max'])} "
                    f"min.")
    left = [f"Warning {w['id']} from {w['from']} ({w['at_label']}): left unanswered"
            for w in s["unanswered_warnings"]]
    left += [f"Request {r['id']} from {r['from']} ({r['at_label']}): left unanswered"
             for r in s["unanswered_requests"]]
    if not left and (s["warnings"] or s["requests"]):
        left = [f"Answered every warning and request it received "
                f"({_count(len(s['warnings']), 'warning')}, "
                f"{_count(len(s['requests']), 'request')})"]
    tables = [_expectation_table(expectations)] if expectations else []
    charts = []
    if responses := s["responses"]:
        tables.append(Table(["Asked", "Asked at", "Answer", "Answered at", "Took"],
                            [False] * 5, [[r["asked"], r["asked_label"], r["answer"],
                                           r["answered_label"], r["took_label"]]
                                          for r in responses]))
        caption = f"Response times of {s['unit']} (minutes)"
        bars = [(f"{r['kind'].replace('_', ' ')} to {r['asked']}", r["took"] / 60)
                for r in responses]
        charts.append(Chart(caption, partial(hbar_chart, caption, bars, fmt_measure)))
    heading = f"{s['unit']} ({s['country']})" if s["country"] else s["unit"]
    return Section(heading, level=3, paragraphs=said, bullets=left, charts=charts,
                   tables=tables)


def _inject_section(i: Mapping[str, Any]) -> Section:
    to = ", ".join(i["to"]) or "the whole operation"
    state = {"delivered": f"Delivered at {i['delivered_label']} as message "
                          f"{i['message_id'] or '—'}",
             "pending": "Not delivered (pending)"}.get(i["state"], str(i["state"]).title())
    said = [f"Planned at {i['at_label']}: {i['sender']} to {to}, {i['type'].replace('_', ' ')}"
            f" ({i['summary']}). {state}{' (written during play)' * i['adhoc']}."]
    if i["expected_action"]:
        said.append(f"Expected: {i['expected_action']}")
    bullets = [f"Expectation {x['id']}, {x['seat']} {x['action'].replace('_', ' ')}: "
               f"{outcome(x)}" + (f" by {x['by']}" if x["by"] else "")
               for x in i["expectations"]]
    followed = i["followed_by"]
    if i["state"] == "delivered" and not followed:
        bullets.append("No message referred to it")
    table = Table(["At", "From", "Type", "Message", "Refers by", "Summary"], [False] * 6,
                  [[f["at_label"], f["from"], f["type"].replace("_", " "), f["id"],
                    f["reference"], f["summary"]] for f in followed])
    return Section(f"Inject {i['number']}", level=3, paragraphs=said, bullets=bullets,
                   tables=[table] if followed else [])


def _replay_sections(replay: Mapping[str, Any] | None) -> Iterator[Section]:
    """The replay's report under one heading, its own sections one level down."""
    if replay is None:
        yield Section("The operation's traffic",
                      paragraphs=["No report: the operation's traffic did not run."])
        return
    title, lines = report_heading(dict(replay))
    ok, sentence = verdict([c for c in replay.get("checks") or [] if isinstance(c, dict)])
    said = [title, *lines]
    if notice := partial_notice(replay):
        said.append(notice + ".")
    said.append(f"{sentence}." if ok else f"⚠ {sentence}.")
    yield Section("The operation's traffic", paragraphs=said)
    for s in report_sections(replay):
        yield s._replace(level=s.level + 1)




def _all_sections(review_: Mapping[str, Any]) -> Iterator[Section]:
    yield from _exercise_sections(review_)
    yield from _replay_sections(review_["replay"])


# -- renderings ---------------------------------------------------------------------------


def render_markdown(review_: Mapping[str, Any]) -> str:
    """The review as GitHub-flavoured markdown."""
    title, lines = _heading(review_)
    return markdown_page(title, lines, _verdicts(review_), _all_sections(review_))


def render_html(review_: Mapping[str, Any]) -> str:
    """The review as one HTML page that works offline: inline style and SVG charts, no
    scripts, nothing fetched."""
    title, lines = _heading(review_)
    return html_page(title, lines, _verdicts(review_), _all_sections(review_))


def _verdicts(review_: Mapping[str, Any]) -> list[tuple[str, str]]:
    score = review_["score"]
    return [("ok" if score["missed"] == 0 else "fail", _score_line(score))]


def render_csv(review_: Mapping[str, Any]) -> str:
    """One row per expectation (``CSV_COLUMNS``), times as people read them, the time it
    took in minutes."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for x in review_["expectations"]:
        took = "" if x["took"] is None else f"{round(x['took'] / 60, 1):g}"
        writer.writerow([x["id"], x["inject"], x["seat"], x["action"], x["description"],
                         x["state"], x["opened_label"], x["deadline_label"], x["met_label"],
                         took, x["by"], x["how"], x["score"], x["points"]])
    return text.getvalue()
