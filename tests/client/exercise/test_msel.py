"""Inject lists (MSEL): times, import from CSV, XLSX and JSON, export to CSV, and every
problem of a bad sheet reported with its row, column and JSON path, nothing half-loaded."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import Workbook

from client.exercise.injects import Setting
from client.exercise.model import CONTROL, Action, Inject
from client.exercise.msel import COLUMNS, MselProblem, dump_csv, load_msel, read_msel, table
from client.exercise.times import format_offset, parse_offset, parse_time
from client.replay.scenario import Scenario, load, resolve
from protocol.errors import ScenarioError

SAMPLE = Path(__file__).resolve().parents[3] / "seeds" / "exercises"
SAMPLE_CSV = SAMPLE / "cocair-v-tabletop.msel.csv"
START = dt.datetime(2015, 12, 8, 6, 0, tzinfo=dt.UTC)
SEATS = frozenset({"TG-JAITF-LFW", "INTERPOL-DESK"})
HOUR = 3600.0


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return load(resolve("cocair-v"))


@pytest.fixture(scope="module")
def setting(scenario: Scenario) -> Setting:
    return Setting(scenario, START, 12 * HOUR, SEATS)


@pytest.fixture(scope="module")
def sample(setting: Setting) -> list[Inject]:
    return load_msel(SAMPLE_CSV, setting)


def _rows() -> list[list[str]]:
    import csv

    with SAMPLE_CSV.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def _write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    import csv

    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return path


def _problems(path: Path, setting: Setting) -> list[MselProblem]:
    injects, problems = read_msel(path, setting)
    assert problems
    assert injects == []
    return problems


def _warning_row(**change: str) -> list[str]:
    """The sample's warning to Lomé (inject 2) as a sheet row, with ``change`` applied."""
    row = dict(zip(COLUMNS, next(r for r in _rows() if r[0] == "2"), strict=True))
    row.update(change)
    return [row[c] for c in COLUMNS]


# --- times ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("D+2 H+3 M+45", 2 * 86400 + 3 * 3600 + 45 * 60),
    ("H+1", 3600),
    ("D+1 M+30", 86400 + 1800),
    ("m+5", 300),
    ("D+0", 0),
    ("  H+2  M+1 ", 7260),
])
def test_parse_offset_reads_relative_times(text: str, seconds: float) -> None:
    """Relative times count days, hours and minutes, each part optional."""
    assert parse_offset(text) == seconds


@pytest.mark.parametrize("text", ["", "H+1 D+2", "2h", "D-1", "H+", "tomorrow"])
def test_parse_offset_rejects_anything_else(text: str) -> None:
    """Parts out of order, other units or words are refused, naming the text."""
    with pytest.raises(ValueError, match="is not a relative time"):
        parse_offset(text)


@given(st.integers(min_value=0, max_value=60 * 86400))
def test_format_offset_reads_back_to_the_same_seconds(seconds: int) -> None:
    """What format_offset writes, parse_offset reads back to the same whole seconds."""
    assert parse_offset(format_offset(seconds)) == seconds


@pytest.mark.parametrize("text", ["2015-12-08T10:00:00Z", "2015-12-08 10:00",
                                  "2015-12-08T11:00:00+01:00", "2015-12-08t10:00z"])
def test_parse_time_converts_absolute_times_against_the_start(text: str) -> None:
    """An RFC 3339 time or `YYYY-MM-DD HH:MM` (UTC) is counted from the exercise's start."""
    assert parse_time(text, START) == 4 * HOUR


# --- import -----------------------------------------------------------------------------


def test_msel_csv_imports_the_sample(sample: list[Inject]) -> None:
    """The sample sheet gives its six injects, continuation rows adding expectations."""
    assert [i.number for i in sample] == ["1", "2", "3", "4", "5", "6"]
    assert sample[1].message["type"] == "warning"
    assert sample[1].at == 30 * 60
    assert sample[0].sender == CONTROL
    assert sample[0].to == ("TG-JAITF-LFW", "INTERPOL-DESK")
    tip = sample[3]
    assert [(e.id, e.action, e.within) for e in tip.expectations] == [
        ("4.1", Action.SEIZURE_REPORT, 4 * HOUR), ("4.2", Action.REQUEST, 5 * HOUR),
        ("4.3", Action.FEEDBACK, 5 * HOUR)]
    assert tip.expectations[1].target == "INTERPOL-DESK"
    assert tip.expectations[0].score == 3


def test_msel_csv_round_trip_gives_the_same_injects(tmp_path: Path, setting: Setting,
                                                    sample: list[Inject]) -> None:
    """Exporting injects to CSV and importing the file gives the same injects."""
    path = tmp_path / "again.csv"
    path.write_text(dump_csv(sample), encoding="utf-8")
    assert load_msel(path, setting) == sample


def test_msel_csv_with_semicolons_imports(tmp_path: Path, setting: Setting,
                                          sample: list[Inject]) -> None:
    """A sheet saved with ';' between cells (spreadsheets in comma-decimal locales) reads
    the same."""
    path = _write_csv(tmp_path / "semi.csv", _rows(), delimiter=";")
    assert load_msel(path, setting) == sample


def test_msel_xlsx_imports_a_workbook(tmp_path: Path, setting: Setting,
                                      sample: list[Inject]) -> None:
    """A workbook with the directors' own headers, numbers typed as numbers and a time
    typed as a date imports to the same injects."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "MSEL"
    rows = table(sample)
    rows[0] = [c.replace("_", " ").capitalize() for c in rows[0]]
    rows[0][COLUMNS.index("notes")] = "Evaluator notes"
    for row in rows:
        sheet.append(row)
    sheet["A2"] = 1  # typed as a number
    sheet["B4"] = dt.datetime(2015, 12, 8, 6, 30)  # inject 2 at 06:30, typed as a date
    path = tmp_path / "msel.xlsx"
    book.save(path)
    assert load_msel(path, setting) == sample


def test_msel_json_imports_a_list_of_injects(tmp_path: Path, setting: Setting,
                                             sample: list[Inject]) -> None:
    """A JSON list of injects, content as objects and expectations nested, imports to the
    same injects."""
    data: list[dict[str, Any]] = []
    for i in sample:
        data.append({
            "number": int(i.number), "time": format_offset(i.at), "sender": i.sender,
            "to": list(i.to), "type": i.message["type"],
            "content": {k: v for k, v in i.message.items() if k != "type"},
            "expected_action": i.expected_action, "notes": i.notes,
            "expectations": [{"seat": e.seat, "action": e.action.value,
                              "within": format_offset(e.within), "target": e.target,
                              "score": e.score, "description": e.description}
                             for e in i.expectations]})
    path = tmp_path / "msel.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_msel(path, setting) == sample


def test_msel_reads_hyphenated_type_names(tmp_path: Path, setting: Setting) -> None:
    """A type written as its schema file names it (`request-for-information`) is the
    catalog's `request_for_information`."""
    rows = [r for r in _rows() if r[0] in ("number", "3")]
    rows[1][COLUMNS.index("type")] = "Request-For-Information"
    [inject] = load_msel(_write_csv(tmp_path / "t.csv", rows), setting)
    assert inject.message["type"] == "request_for_information"


def test_msel_absolute_time_counts_from_the_start(tmp_path: Path, setting: Setting) -> None:
    """An inject timed `2015-12-08 08:15` in an exercise starting at 06:00 goes at H+2 M+15."""
    rows = [list(COLUMNS), _warning_row(time="2015-12-08 08:15")]
    [inject] = load_msel(_write_csv(tmp_path / "t.csv", rows), setting)
    assert inject.at == 2 * HOUR + 15 * 60


# --- problems ---------------------------------------------------------------------------


def test_msel_bad_row_names_its_row_and_column(tmp_path: Path, setting: Setting) -> None:
    """A sender that is not a participant is reported at its row and column."""
    rows = _rows()
    row = next(k for k, r in enumerate(rows) if r[0] == "3")
    rows[row][COLUMNS.index("sender")] = "GH-NOBODY"
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.row, problem.column, problem.cell) == (row + 1, "sender", f"C{row + 1}")
    assert "'GH-NOBODY' is not a participant of COCAIR-V" in problem.message
    assert f"row {row + 1}, column sender (C{row + 1})" in str(problem)


def test_msel_bad_message_names_its_json_path(tmp_path: Path, setting: Setting) -> None:
    """A message that fails its schema is reported in the content column with the JSON
    path inside the message."""
    content = json.loads(_warning_row()[COLUMNS.index("content")])
    content["subject"]["kind"] = "boat"
    rows = [list(COLUMNS), _warning_row(content=json.dumps(content))]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.row, problem.column, problem.path) == (2, "content", "/subject/kind")
    assert '"boat" is not one of' in problem.message


def test_msel_nominal_data_must_be_marked(tmp_path: Path, setting: Setting) -> None:
    """The checks beyond the schema run too: a message naming a person but not marked
    nominal is refused at /marking/nominal."""
    content = json.loads(_warning_row()[COLUMNS.index("content")])
    del content["marking"]
    rows = [list(COLUMNS), _warning_row(content=json.dumps(content))]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.column, problem.path) == ("content", "/marking/nominal")


def test_msel_reports_every_problem_and_loads_nothing(tmp_path: Path,
                                                      setting: Setting) -> None:
    """Problems in several rows and columns are all reported at once, and not one inject
    is loaded, the good rows included."""
    rows = _rows()
    rows[1][COLUMNS.index("time")] = "soon"
    rows[3][COLUMNS.index("to")] = "TG-JAITF-LFW; XX-NOBODY"
    rows[3][COLUMNS.index("within")] = "H+0"
    rows[-1][COLUMNS.index("action")] = "telepathy"
    path = _write_csv(tmp_path / "bad.csv", rows)
    problems = _problems(path, setting)
    assert [(p.row, p.column) for p in problems] == [
        (2, "time"), (4, "to"), (4, "within"), (len(rows), "action")]
    with pytest.raises(ScenarioError) as info:
        load_msel(path, setting)
    assert info.value.problems == problems
    assert "4 problem(s)" in info.value.message


def test_msel_invalid_json_content_names_where_in_the_cell(tmp_path: Path,
                                                           setting: Setting) -> None:
    """Content that is not JSON is reported with the line and column inside the cell."""
    rows = [list(COLUMNS), _warning_row(content='{"subject": {"kind": "passenger",}}')]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert problem.column == "content"
    assert "not valid JSON: line 1, column 34" in problem.message


def test_msel_envelope_fields_in_content_are_refused(tmp_path: Path,
                                                     setting: Setting) -> None:
    """An id or sending time in the content is refused: the engine sets them when the
    inject goes."""
    content = json.loads(_warning_row()[COLUMNS.index("content")])
    content.update(id="W-1", sent_at="2015-12-08T06:30:00Z")
    rows = [list(COLUMNS), _warning_row(content=json.dumps(content))]
    problems = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert [p.path for p in problems] == ["/id", "/sent_at"]


def test_msel_type_column_and_content_type_must_agree(tmp_path: Path,
                                                      setting: Setting) -> None:
    """A content whose own type differs from the type column is refused at /type."""
    content = json.loads(_warning_row()[COLUMNS.index("content")])
    content["type"] = "alert"
    rows = [list(COLUMNS), _warning_row(content=json.dumps(content))]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.column, problem.path) == ("content", "/type")


def test_msel_unknown_type_lists_the_catalog_types(tmp_path: Path, setting: Setting) -> None:
    """A type the catalog does not know is refused, naming the known ones."""
    rows = [list(COLUMNS), _warning_row(type="tip-off")]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert problem.column == "type"
    assert "seizure_report" in problem.message


def test_msel_time_before_start_or_after_end_is_refused(tmp_path: Path,
                                                        setting: Setting) -> None:
    """An absolute time before the exercise starts, or a relative one after it ends, is
    refused in the time column."""
    rows = [list(COLUMNS), _warning_row(time="2015-12-08 05:00"),
            _warning_row(number="2b", time="H+13")]
    problems = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert [(p.row, p.column) for p in problems] == [(2, "time"), (3, "time")]
    assert "before the exercise's start" in problems[0].message
    assert "after the exercise's end (H+12)" in problems[1].message


def test_msel_duplicate_number_is_refused(tmp_path: Path, setting: Setting) -> None:
    """Two injects with one number: the second is reported."""
    rows = [list(COLUMNS), _warning_row(), _warning_row()]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.row, problem.column) == (3, "number")


def test_msel_expectation_must_be_on_a_seat(tmp_path: Path, setting: Setting) -> None:
    """An expectation on a unit the agents play is refused: only people are evaluated."""
    rows = [list(COLUMNS), _warning_row(seat="OCU-WCO")]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert problem.column == "seat"
    assert "not a seat of this exercise" in problem.message


def test_msel_expectation_action_must_fit_the_inject(tmp_path: Path, setting: Setting) -> None:
    """A feedback expected after an alert could never be met (feedback answers warnings):
    refused at the action."""
    rows = [r for r in _rows() if r[0] in ("number", "5")]
    rows[1][COLUMNS.index("action")] = "feedback"
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert problem.column == "action"
    assert "answers a warning" in problem.message


def test_msel_target_only_for_requests(tmp_path: Path, setting: Setting) -> None:
    """A target on an expectation that is not a request is refused."""
    rows = [list(COLUMNS), _warning_row(target="INTERPOL-DESK")]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert problem.column == "target"


def test_msel_continuation_row_fills_only_expectation_columns(tmp_path: Path,
                                                              setting: Setting) -> None:
    """A row without a number that also fills a message column is refused there."""
    extra = [""] * len(COLUMNS)
    extra[COLUMNS.index("type")] = "warning"
    extra[COLUMNS.index("seat")] = "TG-JAITF-LFW"
    extra[COLUMNS.index("action")] = "seizure_report"
    extra[COLUMNS.index("within")] = "H+3"
    rows = [list(COLUMNS), _warning_row(), extra]
    [problem] = _problems(_write_csv(tmp_path / "bad.csv", rows), setting)
    assert (problem.row, problem.column) == (3, "type")


def test_msel_unknown_and_missing_columns_are_reported_on_the_header(
        tmp_path: Path, setting: Setting) -> None:
    """An unknown header and a missing required column are reported on row 1."""
    header = [("Remarks" if c == "notes" else c) for c in COLUMNS if c != "content"]
    problems = _problems(_write_csv(tmp_path / "bad.csv", [header]), setting)
    assert [(p.row, p.column) for p in problems] == [(1, "Remarks"), (1, "")]
    assert "missing column 'content'" in problems[1].message


def test_msel_json_problem_names_inject_and_field(tmp_path: Path, setting: Setting) -> None:
    """In a JSON list, a problem names the inject's position and its field."""
    data = [{"number": "1", "time": "H+1", "sender": "OCU-WCO", "type": "alert",
             "content": {"subject": "x", "severity": "loud", "body": "y"},
             "expectations": [{"seat": "TG-JAITF-LFW", "action": "manual", "within": "0"}]}]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    problems = _problems(path, setting)
    assert [(p.row, p.column, p.path) for p in problems] == [
        (1, "expectations/0/within", ""), (1, "content", "/severity")]


def test_msel_unreadable_workbook_is_one_problem(tmp_path: Path, setting: Setting) -> None:
    """A file named .xlsx that is not a workbook is one problem, not an exception."""
    path = tmp_path / "msel.xlsx"
    path.write_text("number,time\n", encoding="utf-8")
    [problem] = _problems(path, setting)
    assert "cannot read as an XLSX workbook" in problem.message
