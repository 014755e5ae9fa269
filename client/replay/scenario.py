"""Scenario files: load a documented operation (YAML), check everything that can be
checked before anything runs, and hand the replay a typed Scenario.

Checks, each problem with file, line and JSON path: the scenario schema
(schemas/scenario.schema.json); participants (one OCU, unique units); every storyline
step (a known sender, a resolvable time, references to earlier steps, and its message
valid under the message schemas once the envelope is filled in); the published results
(known metrics, and storyline figures that already exceed an exact or at-most figure:
unreachable). Problems a YAML pitfall caused (NO read as false, 0123 as 83, a comma
splitting a value inside {...}) say so and what to quote. Pure apart from reading the file.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from client.messages import default_catalog
from client.messages.catalog import Catalog
from client.messages.checks import problems as message_problems
from client.messages.content import _Loader
from client.replay import yaml_nodes as yn
from protocol.errors import ScenarioError

SEEDS_DIR = Path(__file__).resolve().parents[2] / "seeds"
_REF = re.compile(r"^@([a-z0-9][a-z0-9-]*)$")


@dataclass(frozen=True, slots=True)
class ScenarioProblem:
    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '/'}: {self.message}"


@dataclass(frozen=True, slots=True)
class Participant:
    unit: str
    name: str
    country: str
    agency: str
    role: str
    databases: tuple[str, ...] = ()
    places: tuple[dict[str, Any], ...] = ()
    weight: float = 1.0

    def party(self) -> dict[str, Any]:
        return {"unit": self.unit, "country": self.country, "agency": self.agency,
                "name": self.name}


@dataclass(frozen=True, slots=True)
class Step:
    storyline: str
    id: str
    at: float  # virtual seconds since the operation's first day, 00:00 UTC
    sender: str
    message: dict[str, Any]  # the full message, envelope included


@dataclass(slots=True)
class Scenario:
    path: Path
    data: dict[str, Any]
    code: str
    name: str
    start: dt.date
    end: dt.date
    participants: dict[str, Participant]
    ocu: str
    steps: list[Step]
    results: list[dict[str, Any]]
    background: dict[str, Any]
    storylines: list[dict[str, Any]] = field(default_factory=list)
    #: seizures the sources describe one by one (client/replay/cases.py checks them)
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    @property
    def t0(self) -> dt.datetime:
        return dt.datetime.combine(self.start, dt.time(), tzinfo=dt.UTC)

    def when(self, seconds: float) -> str:
        """RFC 3339 time of a virtual offset."""
        return (self.t0 + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")

    def by_role(self, role: str) -> list[Participant]:
        return [p for p in self.participants.values() if p.role == role]


def resolve(name_or_path: str) -> Path:
    """A scenario by name in seeds/ (``cocair-v``) or a path to any scenario file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    for name in (name_or_path, name_or_path.lower()):
        candidate = SEEDS_DIR / f"{name}.yaml"
        if candidate.exists():
            return candidate
    known = ", ".join(sorted(f.stem for f in SEEDS_DIR.glob("*.yaml")))
    raise ScenarioError(f"no scenario {name_or_path!r} in {SEEDS_DIR} (known: {known})")


def load(path: Path, catalog: Catalog | None = None) -> Scenario:
    """Load and check a scenario. Raises ScenarioError listing every problem."""
    catalog = catalog or default_catalog()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader subclass
        nodes = yn.nodes(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = ScenarioProblem(str(path), line, "", f"not valid YAML: "
                                  f"{getattr(exc, 'problem', None) or exc}")
        raise ScenarioError(str(problem), problems=[problem]) from None
    if nodes.keys:  # the schema validator takes field names as text only
        _raise(path, [ScenarioProblem(
            str(path), nodes.lines.get(pointer), pointer,
            f"YAML read the field name {name} as {yn.shown(yn.yaml_value(name))}; write it in "
            f"quotes: {yn.quoted(name)}") for pointer, name in nodes.keys.items()])
    scenario, found = _check(path, data, catalog, nodes.lines)
    _raise(path, _explain(path, data, catalog, nodes, found))
    assert scenario is not None
    return scenario


def _check(path: Path, data: Any, catalog: Catalog, lines: dict[str, int],
           ) -> tuple[Scenario | None, list[tuple[ScenarioProblem, str]]]:
    """The scenario (None if the schema check failed) and every problem found, each with
    its schema keyword (empty for the checks of this module)."""
    found: list[tuple[ScenarioProblem, str]] = []

    def add(pointer: str, message: str, keyword: str = "") -> None:
        line = lines.get(pointer)
        probe = pointer
        while line is None and probe:
            probe = probe.rsplit("/", 1)[0]
            line = lines.get(probe)
        found.append((ScenarioProblem(str(path), line, pointer, message), keyword))

    validator = catalog.document_validator("scenario.schema.json")
    if not validator.is_valid(data):
        for error in validator.iter_errors(data):
            for p in catalog.phrase(error):
                add(p.path, p.message, p.keyword)
        return None, found
    return _build(path, data, catalog, add), found


def _explain(path: Path, data: Any, catalog: Catalog, nodes: yn.Nodes,
             found: list[tuple[ScenarioProblem, str]]) -> list[ScenarioProblem]:
    """The problems, those that a YAML pitfall caused said as such: a value split by a
    comma in {...}, and plain text YAML 1.1 read as a boolean or a number (NO, on, 0123,
    8:40) where the schemas want text: quoting it removes the problem, or leaves another
    one that is not about the type."""
    typed = [p.path for p, _ in found if p.path in nodes.typed and p.path not in nodes.split]
    again: list[tuple[ScenarioProblem, str]] = []
    if typed:  # check once more with each such value as the text written
        quoted = copy.deepcopy(data)
        for pointer in typed:
            yn.put(quoted, pointer, nodes.typed[pointer])
        again = _check(path, quoted, catalog, nodes.lines)[1]
    out = []
    for p, keyword in found:
        message = p.message
        if p.path in nodes.split:
            message = ("a comma inside a {...} value splits it: quote the value: "
                       + nodes.split[p.path])
        elif p.path in typed:
            text = nodes.typed[p.path]
            read = f"YAML read {text} as {yn.shown(yn.yaml_value(text))}"
            still = [(q, k) for q, k in again
                     if q.path == p.path or q.path.startswith(p.path + "/")]
            if not still:
                message = f"{read}; write it in quotes: {yn.quoted(text)}"
            elif keyword and still[0][1] != "type":  # text is wrong too, in another way
                message = f"{read}; in quotes, {still[0][0].message}"
        out.append(ScenarioProblem(p.file, p.line, p.path, message))
    return out


def _raise(path: Path, found: list[ScenarioProblem]) -> None:
    if found:
        found.sort(key=lambda p: (p.line or 0, p.path))
        raise ScenarioError(f"{path}: {len(found)} problem(s):\n  "
                            + "\n  ".join(map(str, found)), problems=found)


def _build(path: Path, data: dict[str, Any], catalog: Catalog, add: Any) -> Scenario:
    op = data["operation"]
    start, end = dt.date.fromisoformat(op["start"]), dt.date.fromisoformat(op["end"])
    if end < start:
        add("/operation/end", f"the operation ends ({end}) before it starts ({start})")
    participants: dict[str, Participant] = {}
    for i, p in enumerate(data["participants"]):
        if p["unit"] in participants:
            add(f"/participants/{i}/unit", f"unit {p['unit']!r} is listed twice")
        participants[p["unit"]] = Participant(
            p["unit"], p["name"], p["country"], p["agency"], p["role"],
            tuple(p.get("databases", ())), tuple(p.get("places", ())), p.get("weight", 1.0))
    ocus = [p.unit for p in participants.values() if p.role == "ocu"]
    if len(ocus) != 1:
        add("/participants", f"exactly one participant must have role ocu, found {len(ocus)}")
    ocu = ocus[0] if ocus else ""
    if ocu and op["ocu"]["unit"] != ocu:
        add("/operation/ocu/unit", f"{op['ocu']['unit']!r} is not the participant with role "
            f"ocu ({ocu!r})")
    if not [p for p in participants.values() if p.role == "unit"]:
        add("/participants", "no participant has role unit")
    days = (end - start).days + 1
    steps = _steps(data, participants, days, op["code"], catalog, add)
    scenario = Scenario(path, data, op["code"], op["name"], start, end, participants, ocu,
                        steps, data["results"], data["background"], data["storylines"],
                        data.get("cases", []))
    _check_results(scenario, add)
    _check_cases(scenario, add)
    _check_sources(op.get("sources", []), add)
    return scenario


def _steps(data: dict[str, Any], participants: dict[str, Participant], days: int,
           code: str, catalog: Catalog, add: Any) -> list[Step]:
    steps: list[Step] = []
    times: dict[str, float] = {}
    ids: dict[str, str] = {}
    counters: dict[str, int] = {}
    for s, story in enumerate(data["storylines"]):
        for k, step in enumerate(story["steps"]):
            where = f"/storylines/{s}/steps/{k}"
            sender = participants.get(step["from"])
            if sender is None:
                add(f"{where}/from", f"{step['from']!r} is not a participant")
                continue
            at = step["at"]
            if "day" in at:
                if at["day"] > days:
                    add(f"{where}/at/day", f"day {at['day']} is after the operation's last "
                        f"day ({days})")
                hh, mm = map(int, at["time"].split(":"))
                t = (at["day"] - 1) * 86400.0 + hh * 3600 + mm * 60
            elif at["after"] not in times:
                add(f"{where}/at/after", f"step {at['after']!r} is not an earlier step")
                continue
            else:
                t = times[at["after"]] + at["minutes"] * 60.0
            step_id = step.get("id") or f"{story['id']}-{k + 1}"
            if step_id in times:
                add(f"{where}/id", f"step id {step_id!r} is used twice")
            counters[sender.unit] = counters.get(sender.unit, 0) + 1
            message_id = f"{sender.unit}-S{counters[sender.unit]:03d}".upper()
            body = _substitute(copy.deepcopy(step["message"]), ids, f"{where}/message", add)
            message = envelope(code, sender, message_id, t, body, start_of=data)
            for p in message_problems(catalog, message):
                add(f"{where}/message{p.path}", p.message, p.keyword)
            times[step_id], ids[step_id] = t, message_id
            steps.append(Step(story["id"], step_id, t, sender.unit, message))
    steps.sort(key=lambda st: st.at)
    return steps


def envelope(code: str, sender: Participant, message_id: str, at: float,
             body: dict[str, Any], *, start_of: dict[str, Any]) -> dict[str, Any]:
    """The full message: envelope fields first (unless the body gives them), then the
    body."""
    t0 = dt.datetime.combine(dt.date.fromisoformat(start_of["operation"]["start"]), dt.time(),
                             tzinfo=dt.UTC)
    sent = (t0 + dt.timedelta(seconds=at)).strftime("%Y-%m-%dT%H:%M:%SZ")
    kind = body.pop("type")
    head = {"type": kind, "version": body.pop("version", 1), "id": body.pop("id", message_id),
            "operation": code, "sender": sender.party(), "sent_at": body.pop("sent_at", sent),
            "language": body.pop("language", "en"),
            "marking": body.pop("marking", {"tlp": "AMBER", "nominal": False})}
    return {**head, **body}


def _substitute(node: Any, ids: dict[str, str], where: str, add: Any) -> Any:
    if isinstance(node, dict):
        return {k: _substitute(v, ids, f"{where}/{k}", add) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, ids, f"{where}/{i}", add) for i, v in enumerate(node)]
    if isinstance(node, str) and (m := _REF.match(node)):
        if m.group(1) not in ids:
            add(where, f"{node!r} does not name an earlier step")
            return "UNRESOLVED"
        return ids[m.group(1)]
    return node


#: what a file on one machine looks like (a reader elsewhere cannot follow it)
_LOCAL = re.compile(r"(^|\s)(/|~/|[A-Za-z]:\\)|file:|/work/|/home/|/tmp/")


def _check_sources(sources: list[dict[str, Any]], add: Any) -> None:
    """Sources a reader can follow: a publisher and a title, and no path to a file on
    the machine the scenario was written on."""
    for i, source in enumerate(sources):
        for key, value in source.items():
            if key != "url" and isinstance(value, str) and _LOCAL.search(value):
                add(f"/operation/sources/{i}/{key}", f"{value!r} names a file on one "
                    f"machine: cite the source as a reader can find it (publisher, title, "
                    f"date, url)")


def _check_cases(scenario: Scenario, add: Any) -> None:
    """Each documented case names a known participant or country, a storyline that
    exists, and is carried by the storylines' own seizure reports (else no replay could
    find it, whatever the generator adds)."""
    from client.replay.cases import check_cases
    from client.replay.tally import Tally

    story_ids = {st["id"] for st in scenario.storylines}
    countries = {p.country for p in scenario.participants.values()}
    ids: set[str] = set()
    for i, case in enumerate(scenario.cases):
        if case["id"] in ids:
            add(f"/cases/{i}/id", f"case {case['id']!r} is listed twice")
        ids.add(case["id"])
        if case.get("storyline") and case["storyline"] not in story_ids:
            add(f"/cases/{i}/storyline", f"no storyline {case['storyline']!r}")
        who = case["reported_by"]
        if who not in scenario.participants and who not in countries:
            add(f"/cases/{i}/reported_by", f"{who!r} is neither a participant nor the "
                f"country of one")
    tally = Tally(scenario.participants)
    for step in scenario.steps:
        tally.add(step.message, at=step.at)
    for i, found in enumerate(check_cases(scenario.cases, tally.live_reports())):
        if not found["ok"]:
            add(f"/cases/{i}", f"no storyline carries this case: {found['found']}")


def _check_results(scenario: Scenario, add: Any) -> None:
    from client.replay.tally import Tally, metric_problem

    tally = Tally(scenario.participants)
    for step in scenario.steps:
        tally.add(step.message, at=step.at)
    totals = tally.totals()
    for i, r in enumerate(scenario.results):
        problem = metric_problem(r["metric"])
        if problem is not None:
            add(f"/results/{i}/metric", f"{r['metric']!r} is not a metric the OCU can tally: "
                f"{problem} (see docs/scenarios.md)")
            continue
        have = totals.get(r["metric"], 0.0)
        if r["rule"] in ("exact", "at_most") and have > r["value"] + 1e-9:
            add(f"/results/{i}/value", f"cannot be reached: the storylines alone give "
                f"{have:g} for {r['metric']}, more than the published {r['value']:g}")
    units = [p for p in scenario.participants.values() if p.role == "unit"]
    for i, r in enumerate(scenario.results):
        if r["metric"] == "countries" and r["rule"] in ("exact", "at_least", "about"):
            n = len({p.country for p in units})
            low = r["value"] * (1 - r.get("tolerance", 0)) if r["rule"] == "about" else r["value"]
            high = (r["value"] * (1 + r.get("tolerance", 0)) if r["rule"] == "about"
                    else r["value"] if r["rule"] == "exact" else float("inf"))
            if not low - 1e-9 <= n <= high + 1e-9:
                add(f"/results/{i}/value", f"cannot be reached: the participants' units come "
                    f"from {n} countries")
        if r["metric"] == "agencies" and r["rule"] in ("exact", "at_least", "about"):
            n = len({(p.country, p.agency) for p in units})
            low = r["value"] * (1 - r.get("tolerance", 0)) if r["rule"] == "about" else r["value"]
            if n < low - 1e-9:
                add(f"/results/{i}/value", f"cannot be reached: the participants' units "
                    f"belong to {n} agencies")
        if r["metric"] == "messages":
            total = scenario.background["messages"]
            if total < len(scenario.steps):
                add("/background/messages", f"{total} messages is fewer than the storylines' "
                    f"{len(scenario.steps)} steps")


