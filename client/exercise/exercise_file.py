"""Exercise files: a scenario in which people hold some seats. Load the YAML, check everything
before anything runs, and hand the engine a typed Exercise.

Checks, each problem with file, line and JSON path (an MSEL file's with row and column): the
exercise schema (schemas/exercise.schema.json); the scenario it names, loaded and checked as
a replay does; the start (inside the operation), the end (after the start); the seats
(participants); every inject, inline or from the MSEL file, as client/exercise/injects.py
checks them against this exercise's start, end and seats. Every problem is raised at once as
a ScenarioError. Pure apart from reading the files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from client.exercise.injects import Setting, build
from client.exercise.model import Inject
from client.exercise.msel import read_msel, write_csv
from client.exercise.times import format_offset, parse_time
from client.messages import default_catalog
from client.messages.catalog import Catalog
from client.messages.content import _Loader
from client.replay.scenario import Scenario, ScenarioProblem, resolve
from client.replay.scenario import load as load_scenario
from client.replay.yaml_nodes import lines as yaml_lines
from protocol.errors import ScenarioError

EXERCISES_DIR = Path(__file__).resolve().parents[2] / "seeds" / "exercises"


@dataclass(frozen=True, slots=True)
class Exercise:
    """A checked exercise. Inject and expectation times are virtual seconds after
    ``start``; ``end`` too."""

    path: Path
    name: str
    scenario: Scenario
    start: dt.datetime
    end: float
    seats: tuple[str, ...]
    injects: tuple[Inject, ...]
    description: str = ""
    msel: Path | None = None  # the inject list file, when the injects are not inline

    def when(self, seconds: float) -> str:
        """RFC 3339 time of a virtual offset."""
        return (self.start + dt.timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def load(path: Path, catalog: Catalog | None = None) -> Exercise:
    """Load and check an exercise file. Raises ScenarioError listing every problem
    (ScenarioProblem for the exercise and scenario files, MselProblem for an MSEL file)."""
    catalog = catalog or default_catalog()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_Loader)  # a SafeLoader that keeps times as text
        lines = yaml_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = ScenarioProblem(str(path), mark.line + 1 if mark else None, "",
                                  f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
        raise ScenarioError(str(problem), problems=[problem]) from None
    check = _Check(path, lines)
    validator = catalog.document_validator("exercise.schema.json")
    if not validator.is_valid(data):
        for error in validator.iter_errors(data):
            for p in catalog.phrase(error):
                check.add(p.path, _plain(p.message))
        check.raise_if_any()
    exercise = check.exercise(data, catalog)
    check.raise_if_any()
    assert exercise is not None
    return exercise


def _plain(message: str) -> str:
    """jsonschema-rs says a oneOf failed in its own words; say what it means here."""
    if "oneOf" in message:
        return "give the injects either inline (injects) or as a file (msel), one of the two"
    return message


class _Check:
    def __init__(self, path: Path, lines: dict[str, int]) -> None:
        self.path, self.lines = path, lines
        self.found: list[ScenarioProblem] = []
        self.others: list[Any] = []  # the scenario's and the MSEL file's own problems

    def add(self, pointer: str, message: str) -> None:
        line, probe = self.lines.get(pointer), pointer
        while line is None and probe:
            probe = probe.rsplit("/", 1)[0]
            line = self.lines.get(probe)
        self.found.append(ScenarioProblem(str(self.path), line, pointer, message))

    def raise_if_any(self) -> None:
        if self.found or self.others:
            problems = sorted(self.found, key=lambda p: (p.line or 0, p.path)) + self.others
            raise ScenarioError(f"{self.path}: {len(problems)} problem(s):\n  "
                                + "\n  ".join(map(str, problems)), problems=problems)

    def exercise(self, data: dict[str, Any], catalog: Catalog) -> Exercise | None:
        scenario = self.scenario(data["scenario"], catalog)
        if scenario is None:
            return None
        start = self.start(data.get("start"), scenario)
        end = self.end(data["end"], start)
        seats = self.seats(data["seats"], scenario)
        setting = Setting(scenario, start, end, frozenset(seats), catalog)
        msel = None
        if "msel" in data:
            msel = self.relative(data["msel"])
            injects, problems = read_msel(msel, setting)
            self.others.extend(problems)
        else:
            injects = build(data["injects"], setting, lambda i, pointer, message: self.add(
                f"/injects/{i}{pointer}", message))
        return Exercise(self.path, data["name"], scenario, start, end or 0.0, tuple(seats),
                        tuple(injects), data.get("description", ""), msel)

    def relative(self, name: str) -> Path:
        p = Path(name)
        return p if p.is_absolute() else self.path.parent / p

    def scenario(self, name: str, catalog: Catalog) -> Scenario | None:
        try:
            if "/" in name or name.endswith((".yaml", ".yml")):
                path = self.relative(name)
            else:
                path = resolve(name)
            return load_scenario(path, catalog)
        except ScenarioError as exc:
            if exc.problems:
                self.add("/scenario", f"the scenario {name!r} is not valid: "
                         f"{len(exc.problems)} problem(s), listed after this")
                self.others.extend(exc.problems)
            else:
                self.add("/scenario", exc.message)
            return None

    def start(self, value: str | None, scenario: Scenario) -> dt.datetime:
        if value is None:
            return scenario.t0
        start = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        last = scenario.t0 + dt.timedelta(days=scenario.days)
        if not scenario.t0 <= start < last:
            self.add("/start", f"{value} is outside the operation {scenario.code} "
                     f"({scenario.start} to {scenario.end})")
        return start

    def end(self, value: str, start: dt.datetime) -> float | None:
        try:
            end = parse_time(value, start)
        except ValueError as exc:
            self.add("/end", str(exc))
            return None
        if end <= 0:
            self.add("/end", f"{value} is not after the exercise's start "
                     f"({start.strftime('%Y-%m-%dT%H:%M:%SZ')})")
            return None
        return end

    def seats(self, units: list[str], scenario: Scenario) -> list[str]:
        for k, unit in enumerate(units):
            if unit not in scenario.participants:
                self.add(f"/seats/{k}", f"{unit!r} is not a participant of {scenario.code}")
        return units


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m client.exercise.exercise_file EXERCISE [--csv OUT]``: check an exercise
    (exit 1 with its problems), and write its injects as a CSV inject list."""
    parser = argparse.ArgumentParser(prog="exercise_file", description=__doc__)
    parser.add_argument("exercise", type=Path)
    parser.add_argument("--csv", type=Path, help="write the injects to this CSV file")
    args = parser.parse_args(argv)
    try:
        exercise = load(args.exercise)
    except ScenarioError as exc:
        print(exc.message, file=sys.stderr)
        return 1
    print(f"{exercise.path}: ok ({len(exercise.seats)} seats, {len(exercise.injects)} "
          f"injects, ends at {format_offset(exercise.end)})")
    if args.csv:
        write_csv(exercise.injects, args.csv)
        print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
