"""Exercise files: the sample loads, its CSV is what the code exports, and a bad file is
refused before anything runs with every problem at its line (or row and column) and path."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from client.exercise.exercise_file import EXERCISES_DIR, Exercise, load, main
from client.exercise.model import CONTROL, Action
from client.exercise.msel import MselProblem, dump_csv
from client.messages.catalog import SCHEMA_DIR
from client.replay.scenario import SEEDS_DIR, ScenarioProblem
from protocol.errors import ScenarioError

SAMPLE = EXERCISES_DIR / "cocair-v-tabletop.yaml"
SAMPLE_CSV = EXERCISES_DIR / "cocair-v-tabletop.msel.csv"
HOUR = 3600.0


@pytest.fixture(scope="module")
def sample() -> Exercise:
    return load(SAMPLE)


def _broken(tmp_path: Path, change: Callable[[dict[str, Any]], Any],
            name: str = "broken.yaml") -> Path:
    """The sample with ``change`` applied to its data, written out as YAML."""
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    change(data)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False),
                    encoding="utf-8")
    return path


def _problems(path: Path) -> list[Any]:
    with pytest.raises(ScenarioError) as info:
        load(path)
    return list(info.value.problems)


def test_exercise_sample_loads(sample: Exercise) -> None:
    """The COCAIR V tabletop loads with two seats and injects of every kind the issue
    asks for, each with expectations."""
    assert sample.scenario.code == "COCAIR-V"
    assert sample.seats == ("TG-JAITF-LFW", "INTERPOL-DESK")
    assert sample.when(0) == "2015-12-08T06:00:00Z"
    assert sample.end == 12 * HOUR
    assert 5 <= len(sample.injects) <= 8
    assert all(i.expectations for i in sample.injects)
    by_action = {(i.message["type"], e.action, e.within)
                 for i in sample.injects for e in i.expectations}
    assert ("warning", Action.FEEDBACK, 2 * HOUR) in by_action
    assert ("request_for_information", Action.RESPONSE, HOUR) in by_action
    assert ("warning", Action.SEIZURE_REPORT, 4 * HOUR) in by_action
    assert any(e.action is Action.MANUAL for i in sample.injects for e in i.expectations)
    assert any(i.sender == CONTROL for i in sample.injects)


def test_exercise_sample_csv_is_what_the_code_exports(sample: Exercise) -> None:
    """The sample's CSV inject list is exactly the export of its inline injects."""
    assert SAMPLE_CSV.read_text(encoding="utf-8") == dump_csv(sample.injects), (
        "regenerate with: python -m client.exercise.exercise_file "
        f"{SAMPLE} --csv {SAMPLE_CSV}")


def test_exercise_with_an_msel_file_loads_its_injects(tmp_path: Path, sample: Exercise) -> None:
    """An exercise that names the sample's CSV instead of inline injects has the same
    injects, the file found next to the exercise."""
    shutil.copy(SAMPLE_CSV, tmp_path / "list.csv")

    def change(d: dict[str, Any]) -> None:
        del d["injects"]
        d["msel"] = "list.csv"

    exercise = load(_broken(tmp_path, change, "from-csv.yaml"))
    assert exercise.injects == sample.injects
    assert exercise.msel == tmp_path / "list.csv"


def test_exercise_scenario_by_path_is_relative_to_the_file(tmp_path: Path,
                                                           sample: Exercise) -> None:
    """A scenario given as a path is looked up next to the exercise file."""
    (tmp_path / "ops").mkdir()
    shutil.copy(SEEDS_DIR / "cocair-v.yaml", tmp_path / "ops" / "cocair.yaml")
    exercise = load(_broken(tmp_path, lambda d: d.update(scenario="ops/cocair.yaml")))
    assert exercise.scenario.path == tmp_path / "ops" / "cocair.yaml"
    assert exercise.injects == sample.injects


def test_exercise_schema_rejects_a_bad_file_with_a_line_number(tmp_path: Path) -> None:
    """A field the schema does not know and a seat list that is not a list are refused
    with the line and path of each, before the scenario is even read."""
    text = SAMPLE.read_text(encoding="utf-8")
    text = text.replace("seats: [TG-JAITF-LFW, INTERPOL-DESK]",
                        "seats: TG-JAITF-LFW\nspeed: 3600")
    lines = text.splitlines()
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    problems = _problems(path)
    assert [(p.path, lines[p.line - 1].split(":")[0]) for p in problems] == [
        ("/seats", "seats"), ("/speed", "speed")]
    assert f"bad.yaml:{problems[1].line}: /speed: unknown field 'speed'" in str(problems[1])


def test_exercise_needs_injects_or_an_msel_file_not_both(tmp_path: Path) -> None:
    """An exercise with both inline injects and an MSEL file is refused, saying so."""
    [problem] = _problems(_broken(tmp_path, lambda d: d.update(msel="list.csv")))
    assert "either inline (injects) or as a file (msel)" in problem.message


def test_exercise_inline_inject_problem_has_line_and_path(tmp_path: Path) -> None:
    """A bad message in an inline inject is reported at its line with the path through
    the inject into the message."""
    text = SAMPLE.read_text(encoding="utf-8").replace("severity: warning", "severity: loud")
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    [problem] = _problems(path)
    assert isinstance(problem, ScenarioProblem)
    assert problem.path == "/injects/4/content/severity"
    assert problem.line is not None
    assert text.splitlines()[problem.line - 1].strip() == "severity: loud"


def test_exercise_msel_file_problems_have_row_and_column(tmp_path: Path) -> None:
    """Problems of the MSEL file an exercise names come with the sheet's row and column,
    after the exercise file's own."""
    rows = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()
    rows[1] = rows[1].replace(",M+5,EXCON,", ",M+5,NOBODY,")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")

    def change(d: dict[str, Any]) -> None:
        del d["injects"]
        d.update(msel="list.csv", seats=["TG-JAITF-LFW", "INTERPOL-DESK", "XX"])

    problems = _problems(_broken(tmp_path, change))
    assert [type(p) for p in problems] == [ScenarioProblem, MselProblem]
    assert problems[0].path == "/seats/2"
    assert (problems[1].row, problems[1].column) == (2, "sender")


def test_exercise_seats_decide_who_injects_and_who_is_evaluated(tmp_path: Path) -> None:
    """With the desk no longer a seat, expectations on it are refused; a seat cannot be
    an inject's sender."""
    def change(d: dict[str, Any]) -> None:
        d["seats"] = ["TG-JAITF-LFW", "GH-JAITF-ACC"]

    problems = _problems(_broken(tmp_path, change))
    assert {p.path for p in problems} == {
        "/injects/0/expectations/1/seat", "/injects/2/sender",
        "/injects/2/expectations/0/seat", "/injects/4/expectations/0/seat",
        "/injects/5/expectations/0/seat"}


def test_exercise_end_must_come_after_every_inject(tmp_path: Path) -> None:
    """Injects timed after the exercise's end are refused, each at its time."""
    problems = _problems(_broken(tmp_path, lambda d: d.update(end="H+6 M+30")))
    assert [p.path for p in problems] == ["/injects/5/time"]
    assert "after the exercise's end (H+6 M+30)" in problems[0].message


def test_exercise_start_must_be_inside_the_operation(tmp_path: Path) -> None:
    """A start outside the operation's days is refused at /start."""
    [problem] = _problems(_broken(tmp_path, lambda d: d.update(start="2016-01-10T06:00:00Z")))
    assert problem.path == "/start"
    assert "outside the operation COCAIR-V" in problem.message


def test_exercise_unknown_scenario_is_reported(tmp_path: Path) -> None:
    """A scenario name that seeds/ does not hold is refused at /scenario, listing the
    known ones."""
    [problem] = _problems(_broken(tmp_path, lambda d: d.update(scenario="cocair-vi")))
    assert problem.path == "/scenario"
    assert "cocair-v" in problem.message


def test_exercise_invalid_scenario_brings_its_problems(tmp_path: Path) -> None:
    """A scenario file with problems makes the exercise invalid, its own problems listed
    after the exercise's."""
    data = yaml.safe_load((SEEDS_DIR / "cocair-v.yaml").read_text(encoding="utf-8"))
    data["participants"][1]["country"] = "XX"
    (tmp_path / "ops.yaml").write_text(yaml.safe_dump(data, allow_unicode=True),
                                       encoding="utf-8")
    problems = _problems(_broken(tmp_path, lambda d: d.update(scenario="ops.yaml")))
    assert problems[0].path == "/scenario"
    assert problems[1].file == str(tmp_path / "ops.yaml")
    assert problems[1].path == "/participants/1/country"


def test_exercise_schema_actions_are_the_models() -> None:
    """The schema's list of expectation actions is the model's Action enum."""
    schema = json.loads((SCHEMA_DIR / "exercise.schema.json").read_text(encoding="utf-8"))
    actions = schema["$defs"]["expectation_fields"]["properties"]["action"]["enum"]
    assert actions == [a.value for a in Action]


def test_exercise_file_main_checks_and_writes_the_csv(tmp_path: Path, capsys: Any) -> None:
    """`python -m client.exercise.exercise_file` checks a file and writes its CSV."""
    out = tmp_path / "out.csv"
    assert main([str(SAMPLE), "--csv", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == SAMPLE_CSV.read_text(encoding="utf-8")
    assert "ok (2 seats, 6 injects" in capsys.readouterr().out
    assert main([str(_broken(tmp_path, lambda d: d.update(end="soon")))]) == 1
    assert "/end: 'soon' is not a relative time" in capsys.readouterr().err
